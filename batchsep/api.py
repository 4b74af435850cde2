"""The Python API: one function per CLI command, each a thin wrapper choosing the runner.

>>> import batchsep                               # doctest: +SKIP
>>> summary = batchsep.scan("data/", "runs/r1")   # embedded local Ray
"""

from __future__ import annotations

from collections.abc import Callable

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
