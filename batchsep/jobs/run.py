"""Run job specs: every stage in order in this process, or as a Ray Job on a cluster (Ray Jobs API).

:func:`run_spec` calls the ``batchsep.api`` function of each stage of a validated
:class:`~batchsep.jobs.spec.JobSpec` (stages start an embedded local Ray, or connect to ``address`` /
``$RAY_ADDRESS``). :func:`submit` uploads a spec to a cluster's Jobs API (``http://HEAD:8265``) with the
entrypoint ``batchsep run SPEC``; :func:`status`, :func:`logs`, :func:`follow_logs`, :func:`cancel` and
:func:`wait` wrap :class:`ray.job_submission.JobSubmissionClient`.

Credentials never travel with a job: the runtime environment holds the spec, the spec's non-secret
``env`` and how to install batchsep, nothing from the submitter's environment. Object-storage
credentials come from the cluster's own environment (see ``cluster/README.md``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from batchsep.distributed.jobs_client import (
    cancel,
    describe_state,
    exit_code,
    follow_logs,
    logs,
    status,
    wait,
)
from batchsep.errors import BatchsepError
from batchsep.jobs import spec as jobspec
from batchsep.jobs.spec import JobSpec, StageSpec
from batchsep.jobs.stages import call_kwargs, stage_functions
from batchsep.jobs.submit import load_runtime_env, prepare_submission, submit

__all__ = [  # the CLI's ``batchsep run/submit/status/logs/cancel`` call these through this module
    "StageOutcome",
    "apply_env",
    "cancel",
    "describe_state",
    "exit_code",
    "failed_items",
    "follow_logs",
    "load_runtime_env",
    "logs",
    "prepare_submission",
    "run_spec",
    "status",
    "submit",
    "summarize",
    "wait",
]


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
    progress: Callable[[StageSpec], Mapping[str, Any]] | None = None,
) -> list[StageOutcome]:
    """Run every stage of ``spec`` in order by calling ``batchsep.api.<stage>(**params)``.

    Parameters
    ----------
    spec : JobSpec
        A validated spec (:func:`batchsep.jobs.spec.load_spec`).
    address : str, optional
        Ray address for every stage that takes one; overrides ``spec.ray.address``. ``None`` and no
        ``ray.address``: ``$RAY_ADDRESS`` (set inside a Ray Job), else an embedded local Ray.
    on_stage_start, on_stage_done : callable, optional
        Called before and after each stage (progress reporting).
    progress : callable, optional
        ``progress(stage)`` gives the stage's progress callbacks (``on_start``, ``on_progress``), passed to
        the stage functions that take them.

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
    from batchsep.distributed.runtime import check_address

    check_address(address or spec.ray.address)  # before the first stage
    apply_env(spec)
    functions = stage_functions()
    outcomes = []
    for stage in spec.stages:
        if on_stage_start:
            on_stage_start(stage)
        kwargs = call_kwargs(stage, address=address or spec.ray.address)
        if progress is not None:
            import inspect

            takes = inspect.signature(functions[stage.stage]).parameters
            if "on_start" in takes:  # a phase without its total would be no progress
                extra = progress(stage)
                kwargs.update({k: v for k, v in extra.items() if k in takes and k not in kwargs})
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
