"""Ray wiring of the train stage: DDP on Ray Train's ``TorchTrainer``; SNMF learning as Ray tasks.

:class:`RayTrainExecutor` is a fit executor for :func:`batchsep.pipeline.train.driver.train`: every Ray Train
worker runs the Ray-free :func:`~batchsep.pipeline.train.driver.run_worker` on its rank's share of the feature
shards, with ``ray.train.torch.prepare_model`` as ``wrap`` (DistributedDataParallel; gloo on CPU, nccl on
GPU) and an all-reduce of the epoch's losses, so that every rank takes the same early-stopping decision.
Rank 0 writes the outputs to the model URI; the driver reads ``metrics.json`` back. SNMF dictionary
learning is not DDP: it runs through a :class:`~batchsep.distributed.runtime.RayRunner` (tasks).
"""

from __future__ import annotations

import tempfile
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from batchsep.distributed.runtime import RayRunner, init
from batchsep.errors import BatchsepError
from batchsep.io import checkpoint
from batchsep.pipeline.runner import Runner
from batchsep.pipeline.train.driver import TrainJob, run_worker

if TYPE_CHECKING:
    from batchsep.pipeline.train.emotion_worker import EmotionTrainJob


def all_reduce_mean(metrics: dict[str, float]) -> dict[str, float]:
    """Mean of each epoch metric over all workers (keys missing on a worker are averaged without it)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(metrics)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, dict(metrics))
    keys = sorted({k for m in gathered for k in m})
    return {k: float(np.mean([m[k] for m in gathered if k in m])) for k in keys}


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    torch.set_num_threads(int(config["threads"]))
    ctx = ray.train.get_context()
    run_worker(
        config["job"],
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        device=ray.train.torch.get_device(),
        wrap=ray.train.torch.prepare_model,
        reduce_metrics=all_reduce_mean,
    )


def _root_cause(err: BaseException) -> BaseException:
    """The first batchsep error in an exception chain (Ray wraps worker errors), else ``err``."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, BatchsepError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return err


class RayTrainExecutor:
    """The :class:`~batchsep.pipeline.runner.FitExecutor` on Ray: runs a :class:`TrainJob` (or an
    ``EmotionTrainJob``) on ``workers`` Ray Train workers (DDP); returns ``metrics.json``.

    Parameters
    ----------
    workers : int
        Number of DDP workers (each reserves 1 CPU, and 1 GPU with ``gpu``).
    gpu : bool
        nccl on one GPU per worker instead of gloo on CPU.
    address : str, optional
        Ray cluster address (default: embedded local Ray, ``workers`` CPUs).
    threads : int
        torch threads per worker on CPU.
    """

    def __init__(
        self, *, workers: int = 1, gpu: bool = False, address: str | None = None, threads: int = 1
    ) -> None:
        if workers < 1:
            raise BatchsepError(f"workers={workers} must be >= 1")
        self.workers, self.gpu, self.address, self.threads = workers, gpu, address, threads

    def __call__(self, job: TrainJob | EmotionTrainJob, /) -> dict[str, Any]:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        init(self.address, num_cpus=self.workers)
        trainer = TorchTrainer(
            _train_loop_per_worker,
            train_loop_config={"job": job, "threads": self.threads},
            scaling_config=ScalingConfig(num_workers=self.workers, use_gpu=self.gpu),
            torch_config=TorchConfig(backend="nccl" if self.gpu else "gloo"),
            run_config=RunConfig(
                name=f"batchsep-train-{job.model}-{uuid.uuid4().hex[:8]}",
                storage_path=tempfile.gettempdir() + "/batchsep-ray-train",
            ),
        )
        try:
            trainer.fit()
        except Exception as e:  # Ray wraps the worker's error: surface the batchsep one
            cause = _root_cause(e)
            if isinstance(cause, BatchsepError):
                raise cause from e
            raise BatchsepError(f"Ray Train failed for {job.out_uri}: {e}") from e
        metrics = checkpoint.read_metrics(job.out_uri)
        if metrics is None:
            raise BatchsepError(f"training finished but {job.out_uri}/metrics.json is missing")
        return metrics


def snmf_runner(
    *, workers: int | None = None, address: str | None = None, gpu: bool = False
) -> Runner:
    """The :class:`~batchsep.pipeline.runner.Runner` of SNMF dictionary learning on Ray: a
    :class:`~batchsep.distributed.runtime.RayRunner` (frame sampling per shard, then the fit, as tasks)."""
    return RayRunner(
        address=address,
        cluster_cpus=workers,
        max_in_flight=2 * workers if workers else None,
        num_gpus=1 if gpu else 0,
    )


__all__ = ["RayTrainExecutor", "all_reduce_mean", "snmf_runner"]
