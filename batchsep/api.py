"""The Python API: one function per CLI command, each a thin wrapper choosing the runner.

>>> import batchsep                               # doctest: +SKIP
>>> summary = batchsep.scan("data/", "runs/r1")   # embedded local Ray
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchsep.pipeline import scan as _scan


def scan(
    in_uri: str,
    out_uri: str,
    *,
    workers: int | None = None,
    address: str | None = None,
    local: bool = False,
    shard_size: int = 32,
    on_progress: Callable[[int, float], None] | None = None,
) -> _scan.ScanSummary:
    """Scan ``in_uri`` into ``out_uri/manifest.parquet``, sharded over Ray (or serially with ``local``).

    Input and output are checked before Ray starts, so a bad URI fails fast with a StorageError.
    """
    from batchsep.distributed.runtime import make_runner

    runner = make_runner(workers=workers, address=address, serial=local)
    return _scan.scan(
        in_uri, out_uri, runner=runner, shard_size=shard_size, on_progress=on_progress
    )


def enhance(
    in_uri: str,
    out_uri: str,
    *,
    model: str = "default",
    workers: int | None = None,
    address: str | None = None,
    local: bool = False,
    gpu: bool = False,
    sr: str = "keep",
    fmt: str = "wav",
    resume: bool = True,
    shard_size: int = 8,
    on_progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Enhance every audio file under ``in_uri`` into ``out_uri`` with ``model`` (``default``: shipped).

    Output keeps relative paths (suffix ``.wav``/``.flac``), the input's sample rate (``sr="keep"``) or
    ``sr="16000"``; ``results/part-*.parquet`` holds one row per file; re-running skips done files
    (``resume=False`` starts over). ``gpu=True`` puts the model on a GPU per actor.
    """
    from batchsep.pipeline import enhance as _enh

    options = _enh.EnhanceOptions(out_sr="keep" if sr == "keep" else int(sr), fmt=fmt)  # type: ignore[arg-type]
    if local:
        executor: Any = _enh.serial_executor
    else:
        from batchsep.distributed.data import RayDataExecutor

        executor = RayDataExecutor(workers=workers, address=address, num_gpus=1.0 if gpu else 0.0)
    return _enh.enhance(
        in_uri,
        out_uri,
        model=model,
        executor=executor,
        options=options,
        device="cuda" if gpu else "cpu",
        num_threads=None if gpu else 1,
        resume=resume,
        shard_size=shard_size,
        on_progress=on_progress,
    )
