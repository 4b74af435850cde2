"""The api's evaluation stages: evaluate and report (public as :mod:`batchsep.api`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchsep.api_params import _check


def evaluate(
    run_uri: str,
    *,
    references: str | None = None,
    metrics: Sequence[str] | None = None,
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    shard_size: int = 16,
) -> Any:
    """Score the enhance run ``run_uri`` into ``run_uri/metrics/part-*.parquet``.

    Against clean ``references`` (a mixtures run, a folder of clean files with the inputs' relative paths,
    or a pairs root: ``clean/`` beside ``noisy/``); sharded over Ray or run in this process (``local``).
    ``metrics`` None: sdr, si_sdr, pesq, stoi plus dnsmos when installed (``batchsep[zoo]``); a run
    without any reference gets dnsmos only (reference-free DNSMOS P.835/P.808).
    """
    _check("evaluate", workers=workers, shard_size=shard_size, metrics=metrics)
    from batchsep.distributed.runtime import make_runner
    from batchsep.pipeline.evaluate import driver as _ev

    runner = make_runner(workers=workers, address=address, local=local)
    return _ev.evaluate(
        run_uri, references=references, metrics=metrics, runner=runner, shard_size=shard_size
    )


def report(
    run_uris: Sequence[str], out_uri: str, *, names: Sequence[str] | None = None
) -> list[str]:
    """Aggregate evaluated runs into ``out_uri``: report.md, a self-contained index.html and PNG plots."""
    from batchsep.pipeline.report import driver as _rep

    return _rep.report(run_uris, out_uri, names=names)
