"""Ray Data wiring for the enhance stage: shards stream through an actor pool that loads the model once.

Each actor holds one :class:`~batchsep.pipeline.enhance.worker.EnhanceWorker` (Ray-free). Decode,
model and encode run inside the actor, in bounded memory: raw audio never travels through the object
store (a one-hour file would be hundreds of MB), only shard descriptions in and result rows out. Ray
Data restarts dead actors and retries their batches, so a killed worker delays a shard but never
loses it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import numpy as np
import ray

from batchsep.distributed.runtime import init
from batchsep.errors import BatchsepError
from batchsep.pipeline.enhance.worker import EnhanceWorker, ShardTask, task_from_json, task_to_json

logger = logging.getLogger(__name__)


class WorkerInitError(BatchsepError):
    """A pool actor could not build its EnhanceWorker (a model that is not what its role needs, a
    device it cannot see, ...): every actor would fail the same way, so the job fails with this."""


INIT_ERROR = "worker_init_error"
"""Key of the one row a batch yields when its actor could not start (see :class:`_ShardBatchWorker`)."""


class _ShardBatchWorker:
    """Adapts EnhanceWorker to Ray Data batches: ``{"task": [json]}`` → one row per file.

    A constructor that raises must not kill the actor: Ray Data replaces an actor that dies while it
    starts (``ACTOR_INIT_DEATHS`` times in a row) and :class:`RayDataExecutor` runs the job again on an
    actor death (``SYSTEM_FAILURE_ATTEMPTS``), so one bad model meant minutes of restarts ending in an
    ``ActorDiedError``. The error is kept and each batch answers it as one ``INIT_ERROR`` row instead
    of result rows: the driver raises :class:`WorkerInitError` with the original message at the first
    one (an exception raised here would reach the driver as Ray Data's ``UserCodeException``, which
    keeps only the remote traceback's text) and commits nothing for that batch. Once started, a call
    never raises either: :class:`EnhanceWorker` answers every file with a row, a failed one included
    (a full disk, a library's assertion), marked when it should stop the job (``RUN_FATAL``).
    """

    def __init__(self, worker_kwargs: dict[str, Any]) -> None:
        self.worker: EnhanceWorker | None = None
        self.init_error = ""
        try:
            self.worker = EnhanceWorker(**worker_kwargs)
        except Exception as e:  # answered by __call__, with its message
            self.init_error = f"enhance worker could not start: {type(e).__name__}: {e}"
            logger.error(self.init_error, exc_info=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        if self.worker is None:
            return {"row": [_json_row({INIT_ERROR: self.init_error})], "shard": [-1]}
        rows: list[dict[str, Any]] = []
        for text in batch["task"]:
            rows.extend(self.worker(task_from_json(str(text))))
        return {"row": [_json_row(r) for r in rows], "shard": [r["shard"] for r in rows]}


def _json_row(row: dict[str, Any]) -> str:
    import json

    return json.dumps(row, default=float)


ACTOR_INIT_DEATHS = 16
"""Actors of the pool that may die in a row before they are ready (their node died, say) and be
replaced; Ray Data's default (0) fails the whole job when a node is lost while an actor starts on it.
``RAY_DATA_MAX_CONSECUTIVE_ACTOR_INIT_DEATHS`` in the environment overrides it."""


SYSTEM_FAILURE_ATTEMPTS = 4
"""Runs of an enhance job's unfinished shards after a cluster failure (see RayDataExecutor.__call__)."""
RETRY_DELAY_S = 5.0
"""Wait before the first re-run, doubled for each next one (5, 10, 20 s): until the cluster has noticed a
dead node, new actors are still placed on it and cancelled at once (dozens a second)."""
SYSTEM_FAILURES = (
    ray.exceptions.RayActorError,  # ActorDiedError, ActorUnavailableError
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,  # OwnerDiedError
    ray.exceptions.WorkerCrashedError,
)
"""Failures of the cluster, not of the code: worth running the unfinished shards again."""


def _configure_ray_data() -> None:
    """Our own progress bar and summary replace Ray Data's per-operator logging; an actor lost while
    starting is replaced (see ``ACTOR_INIT_DEATHS``)."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if "RAY_DATA_MAX_CONSECUTIVE_ACTOR_INIT_DEATHS" not in os.environ:  # a user's setting wins
        ctx.max_consecutive_actor_init_deaths = ACTOR_INIT_DEATHS
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # "Progress bars disabled. To enable, set ...": we disabled them on purpose (ours replace them).
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


class RayDataExecutor:
    """Runs enhance shards on Ray Data with ``workers`` actors (``num_gpus`` each when on GPU)."""

    def __init__(
        self,
        *,
        workers: int | None = None,
        address: str | None = None,
        num_gpus: float = 0.0,
        num_cpus: float = 1.0,
    ) -> None:
        self.workers, self.address = workers, address
        self.num_gpus, self.num_cpus = num_gpus, num_cpus

    def __call__(
        self, worker_kwargs: dict[str, Any], tasks: Sequence[ShardTask]
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(shard, rows)`` as shards complete. When the cluster loses more than Ray Data's own
        retries absorb (a node dies while its actors start, say), the shards not yet yielded run again
        on a new pool, up to ``SYSTEM_FAILURE_ATTEMPTS`` times, after a growing delay
        (``RETRY_DELAY_S``); shards are only committed by the caller once yielded, so nothing is done
        twice."""
        remaining, done = list(tasks), set()
        for attempt in range(1, SYSTEM_FAILURE_ATTEMPTS + 1):
            run = self._run(worker_kwargs, remaining)
            try:
                for shard, rows in run:
                    done.add(shard)
                    yield shard, rows
                return
            except SYSTEM_FAILURES as e:
                remaining = [t for t in remaining if t.shard not in done]
                if attempt == SYSTEM_FAILURE_ATTEMPTS or not remaining:
                    raise
                delay = RETRY_DELAY_S * 2 ** (attempt - 1)
                logger.warning(
                    "enhance: %s (%s); running the %d unfinished shard(s) again in %.0f s "
                    "(attempt %d of %d)", type(e).__name__, str(e).splitlines()[0], len(remaining),
                    delay, attempt + 1, SYSTEM_FAILURE_ATTEMPTS,
                )  # fmt: skip
                time.sleep(delay)
            finally:  # the caller stopped early (closed this generator), or a failure: stop the pool now
                run.close()

    def _run(
        self, worker_kwargs: dict[str, Any], tasks: Sequence[ShardTask]
    ) -> Generator[tuple[int, list[dict[str, Any]]], None, None]:
        if not tasks:
            return
        import json

        resources = init(self.address, num_cpus=self.workers)
        _configure_ray_data()
        n_actors = self.workers or max(1, int(resources.get("CPU", 1) // self.num_cpus))
        if self.num_gpus:
            n_actors = min(n_actors, max(1, int(resources.get("GPU", 0) // self.num_gpus)))
        n_actors = min(n_actors, len(tasks))
        expected = {t.shard: len(t.files) for t in tasks}
        items = ray.data.from_items(
            [{"task": task_to_json(t)} for t in tasks], override_num_blocks=len(tasks)
        )
        ds = items.map_batches(
            _ShardBatchWorker,
            fn_constructor_kwargs={"worker_kwargs": worker_kwargs},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
        )  # Ray Data's actor pools restart dead actors and retry their batches by default
        pending: dict[int, list[dict[str, Any]]] = {}
        row_iter = iter(ds.iter_rows())
        try:
            for item in row_iter:
                row = json.loads(item["row"])
                if INIT_ERROR in row:  # no rows of this batch or later ones are committed
                    raise WorkerInitError(row[INIT_ERROR])
                shard = int(row["shard"])
                rows = pending.setdefault(shard, [])
                rows.append(row)
                if len(rows) == expected[shard]:
                    yield shard, pending.pop(shard)
        finally:  # closed early (see __call__): Ray Data shuts its executor and the actor pool down
            close = getattr(row_iter, "close", None)
            if close is not None:
                close()
        if pending:  # cannot happen unless rows were lost: refuse to commit partial shards
            raise RuntimeError(f"incomplete shards from Ray Data: {sorted(pending)}")
