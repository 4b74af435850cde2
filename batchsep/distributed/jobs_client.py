"""The Ray Jobs API client: a job's state, its logs, cancelling it and waiting for it to end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchsep.errors import BatchsepError, ParameterError

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def jobs_api_client(address: str) -> Any:
    """A Jobs API client for ``address`` (``http://HEAD:8265``), or an error naming the address."""

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
    client = jobs_api_client(address)
    try:
        return what(client)
    except RuntimeError as e:
        if "does not exist" in str(e) or "404" in str(e):
            raise ParameterError(f"no job {job_id!r} on {address}") from None
        raise BatchsepError(f"Jobs API at {address}: {e}") from None
    except Exception as e:
        raise BatchsepError(f"Jobs API at {address}: {type(e).__name__}: {e}") from None


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
