"""Submitting a job spec to a cluster: the runtime env, the batchsep install and the Jobs API call."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import batchsep
from batchsep.distributed.jobs_client import jobs_api_client
from batchsep.errors import BatchsepError, ConfigError, ParameterError
from batchsep.io.credentials import check_no_credentials
from batchsep.jobs import spec as jobspec
from batchsep.jobs.spec import JobSpec

Install = Literal["pip", "wheel", "none"]
WORKING_DIR_VAR = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"


def repo_root() -> Path | None:
    """The source checkout batchsep was imported from (``None`` when installed from a wheel)."""
    root = Path(batchsep.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def build_wheel(dest: str | Path) -> Path:
    """Build a batchsep wheel (no dependencies) from this checkout into ``dest``; return its path.

    The sources are copied to a temporary folder first, so the checkout gets no build artefacts.
    """
    root = repo_root()
    if root is None:
        raise ParameterError("--wheel needs a source checkout of batchsep; this one is installed")
    with tempfile.TemporaryDirectory(prefix="batchsep-wheel-") as src:
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, Path(src) / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(root / "batchsep", Path(src) / "batchsep", ignore=ignore)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        proc = subprocess.run([*cmd, "-w", str(dest), src], capture_output=True, text=True)
    wheels = sorted(Path(dest).glob("batchsep-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise BatchsepError(f"building the batchsep wheel failed: {proc.stderr.strip()[-2000:]}")
    return wheels[-1]


def default_install() -> Install:
    """How ``submit`` installs batchsep on the cluster when not told: a wheel of this checkout when batchsep
    runs from one (the code the user is running, whatever its version), else the cluster image's batchsep
    (``none``). Never ``pip install batchsep==VERSION``: no package index holds batchsep."""
    return "wheel" if repo_root() is not None else "none"


def load_runtime_env(value: str | None) -> dict[str, Any]:
    """A runtime env given as a JSON/YAML file or inline JSON; ``None`` gives ``{}``."""
    if not value:
        return {}
    import yaml

    try:
        is_file = Path(value).is_file()
    except OSError:  # inline JSON longer than a file name may be
        is_file = False
    text = Path(value).read_text() if is_file else value
    try:
        env = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise ConfigError(f"--runtime-env: neither a file nor valid JSON/YAML: {e}") from None
    if not isinstance(env, dict):
        raise ConfigError(f"--runtime-env must be a mapping (a file or JSON object), got {value!r}")
    return env


@dataclass
class Submission:
    """What :func:`prepare_submission` decided: entrypoint, runtime env, metadata, id, staging folder."""

    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    submission_id: str
    staging_dir: str | None = None
    files: list[str] = field(default_factory=list)


def prepare_submission(
    spec_path: str,
    *,
    install: Install | None = None,
    pip: list[str] | None = None,
    working_dir: str | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    submission_id: str | None = None,
    overrides: Sequence[str] = (),
) -> tuple[JobSpec, Submission]:
    """Validate the spec and build the job's entrypoint, runtime env and metadata (nothing is sent).

    The runtime env uploads ``working_dir`` (default: a fresh folder holding only the spec, so nothing
    else next to it, such as a ``.env`` file, leaves this machine), installs batchsep per ``install``
    (``"pip"``: ``pip`` requirements, default ``batchsep==<this version>``; ``"wheel"``: a wheel built from
    this checkout, shipped in the working dir; ``"none"``: the cluster's Python already has batchsep;
    ``None``: :func:`default_install`),
    and sets the spec's ``env``. ``runtime_env`` (from ``--runtime-env``) is the base; its ``env_vars``
    must not hold credentials either. ``overrides`` (``--set STAGE.PARAM=VALUE``) are checked here and
    passed on to ``batchsep run`` in the entrypoint.

    Raises
    ------
    ConfigError
        Invalid spec, or credentials in the runtime env.
    ParameterError
        The spec is not inside ``working_dir``, or ``--wheel`` without a source checkout.
    """
    install = install or default_install()
    spec_file = Path(spec_path).resolve()
    spec = jobspec.load_spec(str(spec_file), overrides=overrides)
    env = dict(runtime_env or {})
    env_vars = jobspec.check_env(env.pop("env_vars", None), where="--runtime-env env_vars")
    check_no_credentials([env, pip or []], "--runtime-env/--pip")
    working_dir = working_dir or env.pop("working_dir", None)
    if working_dir is not None and "://" in working_dir:
        raise ParameterError(f"working_dir={working_dir!r} must be a local folder holding the spec")
    staging = None
    if working_dir is not None:
        wd = Path(working_dir).resolve()
        if not spec_file.is_relative_to(wd):
            raise ParameterError(f"spec {spec_file} must be inside --working-dir {wd}")
        rel = str(spec_file.relative_to(wd))
    else:
        staging = tempfile.mkdtemp(prefix="batchsep-submit-")
        wd = Path(staging)
        rel = spec_file.name
        shutil.copyfile(spec_file, wd / rel)
    env["working_dir"] = str(wd)
    if install == "pip":
        env.setdefault("pip", pip or [f"batchsep=={batchsep.__version__}"])
    elif install == "wheel":
        if staging is None:
            staging = tempfile.mkdtemp(prefix="batchsep-submit-")
            shutil.copytree(wd, staging, dirs_exist_ok=True)
            env["working_dir"] = staging
        try:
            wheel = build_wheel(staging)
        except BatchsepError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        env.setdefault("pip", [f"{WORKING_DIR_VAR}/{wheel.name}"])
    # The driver's ray.init forwards AWS_*/BATCHSEP_* itself; without this, a key in both would be a
    # conflict that Ray refuses (it merges the job's and the driver's env per key when overriding).
    env["env_vars"] = {**env_vars, **spec.env, "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}
    sid = submission_id or f"batchsep-{spec.name}-{uuid.uuid4().hex[:8]}"
    metadata = {
        "batchsep_job": spec.name,
        "batchsep_spec": rel,
        "batchsep_version": batchsep.__version__,
    }
    sub = Submission(
        entrypoint=shlex.join(["batchsep", "run", rel, *(f"--set={o}" for o in overrides)]),
        runtime_env=env,
        metadata=metadata,
        submission_id=sid,
        staging_dir=staging,
        files=sorted(
            str(p.relative_to(env["working_dir"])) for p in Path(env["working_dir"]).rglob("*")
        ),
    )
    return spec, sub


def submit(
    spec_path: str,
    *,
    address: str,
    install: Install | None = None,
    pip: list[str] | None = None,
    working_dir: str | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    submission_id: str | None = None,
    overrides: Sequence[str] = (),
) -> str:
    """Submit ``spec_path`` as a Ray Job to ``address`` (``http://HEAD:8265``); return the job id.

    See :func:`prepare_submission` for the runtime env. The spec is validated here first, so a bad spec
    never reaches the cluster.

    Raises
    ------
    ConfigError, ParameterError
        Invalid spec or options.
    BatchsepError
        The Jobs API cannot be reached or refused the job.
    """
    _, sub = prepare_submission(
        spec_path,
        install=install,
        pip=pip,
        working_dir=working_dir,
        runtime_env=runtime_env,
        submission_id=submission_id,
        overrides=overrides,
    )
    try:
        client = jobs_api_client(address)
        try:
            return str(
                client.submit_job(
                    entrypoint=sub.entrypoint,
                    runtime_env=sub.runtime_env,
                    metadata=sub.metadata,
                    submission_id=sub.submission_id,
                )
            )
        except Exception as e:
            raise BatchsepError(f"Jobs API at {address} refused the job: {e}") from None
    finally:
        if sub.staging_dir:
            shutil.rmtree(sub.staging_dir, ignore_errors=True)
