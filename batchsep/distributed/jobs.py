"""Run job specs: every stage in order in this process, or as a Ray Job on a cluster (Ray Jobs API).

:func:`run_spec` calls the ``batchsep.api`` function of each stage of a validated
:class:`~batchsep.jobspec.JobSpec` (stages start an embedded local Ray, or connect to ``address`` /
``$RAY_ADDRESS``). :func:`submit` uploads a spec to a cluster's Jobs API (``http://HEAD:8265``) with the
entrypoint ``batchsep run SPEC``; :func:`status`, :func:`logs`, :func:`follow_logs`, :func:`cancel` and
:func:`wait` wrap :class:`ray.job_submission.JobSubmissionClient`.

Credentials never travel with a job: the runtime environment holds the spec, the spec's non-secret
``env`` and how to install batchsep, nothing from the submitter's environment. Object-storage
credentials come from the cluster's own environment (see ``cluster/README.md``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import batchsep
from batchsep import jobspec
from batchsep.errors import BatchsepError, ConfigError, ParameterError
from batchsep.jobspec import JobSpec, StageSpec
from batchsep.jobspec_credentials import check_no_credentials
from batchsep.jobspec_stages import call_kwargs, stage_functions

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
Install = Literal["pip", "wheel", "none"]
WORKING_DIR_VAR = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"


@dataclass
class StageOutcome:
    """What one stage returned, how long it took, and how many of its items failed."""

    stage: StageSpec
    result: Any
    seconds: float
    failed: int = 0


def _fields(result: Any) -> dict[str, Any] | None:
    if is_dataclass(result) and not isinstance(result, type):
        return {f.name: getattr(result, f.name) for f in fields(result)}
    return dict(result) if isinstance(result, Mapping) else None


def failed_items(result: Any) -> int:
    """Items a stage result reports as failed: the sum of its int ``failed`` / ``*_failed`` fields
    (``files_failed``, ``mixtures_failed``, ``rows_failed``, ...); 0 when it has none."""
    items = _fields(result) or {}
    return sum(
        v
        for k, v in items.items()
        if (k == "failed" or str(k).endswith("_failed"))
        and isinstance(v, int)
        and not isinstance(v, bool)
    )


def _scalar(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else jobspec.describe(v)


def summarize(result: Any) -> str:
    """A one-line ``key=value`` summary of a stage result (a dataclass, a mapping or anything);
    lists show their length, small mappings of scalars are shown inline."""
    items = _fields(result)
    if items is None:
        return jobspec.describe(result, limit=200)
    parts = []
    for k, v in items.items():
        if (
            isinstance(v, dict)
            and len(v) <= 6
            and not any(isinstance(x, list | dict) for x in v.values())
        ):
            parts.append(f"{k}={{{', '.join(f'{a}: {_scalar(b)}' for a, b in v.items())}}}")
        elif isinstance(v, list | tuple | dict):
            parts.append(f"{k}: {len(v)}")
        else:
            parts.append(f"{k}={_scalar(v)}")
    return " ".join(parts)


def apply_env(spec: JobSpec) -> None:
    """Export the spec's ``env`` in this process (before Ray starts, so workers inherit it)."""
    for k, v in spec.env.items():
        os.environ[k] = v


def run_spec(
    spec: JobSpec,
    *,
    address: str | None = None,
    on_stage_start: Callable[[StageSpec], None] | None = None,
    on_stage_done: Callable[[StageOutcome], None] | None = None,
) -> list[StageOutcome]:
    """Run every stage of ``spec`` in order by calling ``batchsep.api.<stage>(**params)``.

    Parameters
    ----------
    spec : JobSpec
        A validated spec (:func:`batchsep.jobspec.load_spec`).
    address : str, optional
        Ray address for every stage that takes one; overrides ``spec.ray.address``. ``None`` and no
        ``ray.address``: ``$RAY_ADDRESS`` (set inside a Ray Job), else an embedded local Ray.
    on_stage_start, on_stage_done : callable, optional
        Called before and after each stage (progress reporting).

    Returns
    -------
    list of StageOutcome
        One per stage, in order.

    Raises
    ------
    BatchsepError
        The first stage error (bad input URI, output not writable, ...), its message prefixed with the
        stage; later stages do not run. Failed *files* do not raise: they are counted in the outcome.
    """
    apply_env(spec)
    functions = stage_functions()
    outcomes = []
    for stage in spec.stages:
        if on_stage_start:
            on_stage_start(stage)
        kwargs = call_kwargs(stage, address=address or spec.ray.address)
        t0 = time.perf_counter()
        try:
            result = functions[stage.stage](**kwargs)
        except BatchsepError as e:
            raise type(e)(f"{stage.label}: {e}") from e
        outcome = StageOutcome(stage, result, time.perf_counter() - t0, failed_items(result))
        outcomes.append(outcome)
        if on_stage_done:
            on_stage_done(outcome)
    return outcomes


def _client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    if not address.startswith(("http://", "https://")):
        raise ParameterError(
            f"address={address!r} must be the Jobs API URL of the head's dashboard, "
            "e.g. http://HEAD:8265"
        )
    try:
        return JobSubmissionClient(address)
    except Exception as e:  # ConnectionError, AuthenticationError, version errors, ...
        raise BatchsepError(f"cannot reach the Ray Jobs API at {address}: {e}") from None


def _call(address: str, job_id: str, what: Callable[[Any], Any]) -> Any:
    client = _client(address)
    try:
        return what(client)
    except RuntimeError as e:
        if "does not exist" in str(e) or "404" in str(e):
            raise ParameterError(f"no job {job_id!r} on {address}") from None
        raise BatchsepError(f"Jobs API at {address}: {e}") from None
    except Exception as e:
        raise BatchsepError(f"Jobs API at {address}: {type(e).__name__}: {e}") from None


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
    install: Install = "pip",
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
    this checkout, shipped in the working dir; ``"none"``: the cluster's Python already has batchsep),
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
    install: Install = "pip",
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
        client = _client(address)
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


@dataclass
class JobState:
    """A job's state as the Jobs API reports it."""

    job_id: str
    status: str
    message: str = ""
    exit_code: int | None = None
    entrypoint: str = ""
    start_time: float | None = None
    end_time: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def status(job_id: str, *, address: str) -> JobState:
    """The job's status, message, driver exit code and metadata.

    Raises
    ------
    ParameterError
        No such job. BatchsepError: the Jobs API cannot be reached.
    """
    info = _call(address, job_id, lambda c: c.get_job_info(job_id))
    st = getattr(info.status, "value", str(info.status))
    return JobState(
        job_id=job_id,
        status=str(st),
        message=info.message or "",
        exit_code=info.driver_exit_code,
        entrypoint=info.entrypoint or "",
        start_time=info.start_time / 1000 if info.start_time else None,
        end_time=info.end_time / 1000 if info.end_time else None,
        metadata=dict(info.metadata or {}),
    )


def logs(job_id: str, *, address: str) -> str:
    """Everything the job's driver has printed so far."""
    return str(_call(address, job_id, lambda c: c.get_job_logs(job_id)))


def follow_logs(job_id: str, *, address: str, write: Callable[[str], None]) -> None:
    """Stream the job's logs to ``write`` until the job ends."""

    async def tail(client: Any) -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    _call(address, job_id, lambda c: asyncio.run(tail(c)))


def cancel(job_id: str, *, address: str) -> bool:
    """Ask the job to stop; ``True`` if it was running, ``False`` if it had already ended."""
    return bool(_call(address, job_id, lambda c: c.stop_job(job_id)))


def wait(
    job_id: str,
    *,
    address: str,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    write: Callable[[str], None] | None = None,
) -> JobState:
    """Wait until the job reaches a terminal state (streaming its logs to ``write`` when given).

    Raises
    ------
    BatchsepError
        ``timeout_s`` passed first (the job keeps running).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if write is not None:
        try:
            follow_logs(job_id, address=address, write=write)
        except BatchsepError as e:  # the log stream broke: fall back to polling
            write(f"[batchsep] log stream ended early ({e}); polling the status\n")
    while True:
        state = status(job_id, address=address)
        if state.terminal:
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise BatchsepError(f"job {job_id} still {state.status} after {timeout_s} s")
        time.sleep(poll_s)


def exit_code(state: JobState) -> int:
    """The CLI exit status for a finished job: 0 succeeded, the driver's own 1/2/3, else 3."""
    if state.status == "SUCCEEDED":
        return 0
    if state.status == "FAILED" and state.exit_code in (1, 2, 3):
        return int(state.exit_code)
    return 3


def describe_state(state: JobState) -> str:
    """Human-readable lines about a job (no environment, so no credentials)."""
    lines = [f"job {state.job_id}: {state.status}"]
    if state.message:
        lines.append(f"  message: {state.message}")
    if state.exit_code is not None:
        lines.append(f"  driver exit code: {state.exit_code}")
    if state.start_time:
        end = state.end_time or time.time()
        lines.append(f"  running time: {end - state.start_time:.1f} s")
    if state.metadata:
        lines.append(f"  metadata: {json.dumps(state.metadata, sort_keys=True)}")
    return "\n".join(lines)
