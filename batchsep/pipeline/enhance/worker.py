"""Enhance shards: the task, the Ray-free worker that loads the models once, the serial executor.

The executor protocol is :class:`batchsep.pipeline.runner.ShardExecutor` (``ShardExecutor[ShardTask]``).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from batchsep.errors import BatchsepError, ParameterError
from batchsep.io import schemas, storage
from batchsep.pipeline.enhance.enhancer import MaskEnhancer, load_enhancer
from batchsep.pipeline.enhance.file import (
    RUN_FATAL,
    EnhanceOptions,
    enhance_file,
    fail_row,
    run_fatal,
)
from batchsep.pipeline.enhance.tag import EmotionTagger


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: a shard id and its files ``(input uri, rel_path, output uri)``."""

    shard: int
    files: tuple[tuple[str, str, str], ...]


class EnhanceWorker:
    """Loads the model once; ``worker(task)`` enhances a shard and returns its result rows.

    Ray-free: Ray Data holds one per actor; the serial executor holds one in-process.
    """

    def __init__(
        self,
        model_uri: str | None,
        options: dict[str, Any],
        *,
        device: str = "cpu",
        num_threads: int | None = None,
        emotion_uri: str | None = None,
        defer_writes: bool = True,
    ) -> None:
        if num_threads:
            torch.set_num_threads(num_threads)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ParameterError(
                "device='cuda' requested but no CUDA device is visible to this worker"
            )
        self.options = EnhanceOptions(**options)
        self.enhancer: MaskEnhancer | Any = None  # or a zoo model's StreamingEnhancer
        self.model_name: str | None = None
        self.model_sha: str | None = None
        if model_uri is not None:
            self.enhancer, self.model_name, self.model_sha = load_enhancer(
                model_uri, device=device, input_level_db=self.options.input_level_db,
                num_threads=num_threads,
            )  # fmt: skip
        self.tagger = EmotionTagger(emotion_uri, device=device) if emotion_uri else None
        self.host = f"{socket.gethostname()}:{os.getpid()}"
        # the next file's work overlaps the last one's fsync or upload (off: each waits, for comparison)
        self.deferred = storage.DeferredWrites() if defer_writes else None
        self.stopped_by: dict[str, Any] | None = None
        """The row of the first failure that fails every further file (``RUN_FATAL``): from then on, this
        worker tries no file (the driver stops the job at that shard; a pool's other shards in flight
        must not fill the disk the driver commits to)."""

    def __call__(self, task: ShardTask) -> list[dict[str, Any]]:
        """One row per file of ``task``, never an exception: a file's failure is its error row.

        After a failure that fails every further file too (see
        :data:`~batchsep.pipeline.enhance.file.RUN_FATAL`: the output's storage is full, the object store
        refuses the writes), the rest of the shard, and of later shards, is not tried: their rows say so,
        marked the same way (see ``stopped_by``).
        """
        rows = []
        stop = self.stopped_by
        for uri, rel, out in task.files:
            target = out if self.enhancer is not None else None
            base = {"input_uri": uri, "output_uri": target, "status": schemas.STATUS_OK}
            if stop is not None:
                reason = f"not tried: {stop['rel_path']} failed before it ({stop['error']})"
                row = fail_row(base, BatchsepError(reason), fatal=stop[RUN_FATAL])
            else:
                try:
                    row = enhance_file(
                        uri, target, self.enhancer, self.options, tagger=self.tagger,
                        deferred=self.deferred,
                    )  # fmt: skip
                except Exception as e:  # enhance_file makes failures rows; a bug here must not
                    row = fail_row(base, BatchsepError(f"{type(e).__name__}: {e}"))
                if row.get(RUN_FATAL):
                    stop = self.stopped_by = row
            row.update(
                rel_path=rel,
                shard=task.shard,
                model_name=self.model_name,
                model_sha256=self.model_sha,
                emotion_model_sha256=self.tagger.model_sha if self.tagger else None,
                worker=self.host,
            )
            rows.append(row)
        failed = self.deferred.wait() if self.deferred else {}  # outputs published before rows
        for row in rows:
            if row["status"] == schemas.STATUS_OK and row["output_uri"] in failed:
                err = failed[row["output_uri"]]
                fail_row(row, err, fatal=run_fatal(err, output=True))
                if row.get(RUN_FATAL) and self.stopped_by is None:
                    self.stopped_by = row
        return rows


def serial_executor(
    worker_kwargs: dict[str, Any], tasks: Sequence[ShardTask]
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The :class:`~batchsep.pipeline.runner.ShardExecutor` of this process: every shard through one
    ``EnhanceWorker(**worker_kwargs)`` (tests, ``--local``, small jobs)."""
    if not tasks:
        return
    worker = EnhanceWorker(**worker_kwargs)
    for task in tasks:
        yield task.shard, worker(task)


def task_to_json(task: ShardTask) -> str:
    return json.dumps(asdict(task))


def task_from_json(text: str) -> ShardTask:
    d = json.loads(text)
    return ShardTask(int(d["shard"]), tuple(tuple(f) for f in d["files"]))  # type: ignore[misc]
