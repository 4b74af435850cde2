"""The shard executor of ``enhance`` and ``tag``: in this process or a Ray Data actor pool, by placement."""

from __future__ import annotations

from typing import Any

from batchsep.distributed import runtime


def enhance_executor(
    *,
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    gpu: bool = False,
) -> Any:
    """The shard executor of enhance and tag, by :func:`~batchsep.distributed.runtime.placement` as
    :func:`~batchsep.distributed.runtime.make_runner`: one worker in
    this process, a Ray Data actor pool, or the one of the two that fits the work
    (:class:`~batchsep.pipeline.runner.AutoExecutor`). Its own module so that
    ``runtime`` does not import ``data`` (which imports ``runtime``); ray is imported only for a pool."""
    from batchsep.pipeline.enhance.worker import serial_executor

    where = runtime.placement(local=local, workers=workers, address=address)
    if where == "here":
        return serial_executor

    def pool() -> Any:
        from batchsep.distributed.data import RayDataExecutor

        return RayDataExecutor(workers=workers, address=address, num_gpus=1.0 if gpu else 0.0)

    if where == "ray":
        return pool()
    from batchsep.pipeline.runner import AutoExecutor

    return AutoExecutor(serial_executor, pool, runtime.ray_running)
