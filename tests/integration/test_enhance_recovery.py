"""Enhance recovers from cluster failures that Ray Data's own retries do not absorb.

Every model actor of the first pool dies while it starts (its constructor raises; a node lost while its
actors start looks the same to Ray Data), with Ray Data's budget of such deaths set to 0 so that the pool's
execution fails with ``ActorDiedError``: the executor must run the unfinished shards again on a new pool,
and every file must be committed exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from parts_helpers import read_parts

from batchsep.io.checkpoint import write_checkpoint
from batchsep.models import build_model, serialize

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def dying_first_pool(base: type, marker: str) -> type:
    """The Ray Data actor class, whose instances die while starting until ``marker`` exists
    (a closure, so that Ray pickles it by value)."""

    class DiesWhileStarting(base):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            if not os.path.exists(marker):
                raise RuntimeError("simulated death while starting")
            super().__init__(**kwargs)

    return DiesWhileStarting


def test_unfinished_shards_run_again_after_the_pool_fails(tmp_path: Path, monkeypatch, ray_local):
    from batchsep.distributed import data as data_mod
    from batchsep.pipeline.enhance.driver import enhance

    torch.manual_seed(0)
    model = str(tmp_path / "model")
    write_checkpoint(model, serialize(build_model("lstm", {"n_layers": 1, "hidden": 8})))
    rels = []
    for i in range(6):
        rel = f"d{i % 2}/f{i}.wav"
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(4000) / 16000
        sf.write(tmp_path / "in" / rel, (0.1 * np.sin(2 * np.pi * (300 + 50 * i) * t)), 16000)
        rels.append(rel)
    marker = str(tmp_path / "second-pool")
    real_run = data_mod.RayDataExecutor._run
    runs = []

    def counting_run(self: Any, worker_kwargs: dict[str, Any], tasks: Any) -> Any:
        runs.append(len(tasks))
        if len(runs) == 2:  # the retry: its actors start normally
            Path(marker).touch()
        return real_run(self, worker_kwargs, tasks)

    monkeypatch.setattr(data_mod, "ACTOR_INIT_DEATHS", 0)
    monkeypatch.setattr(
        data_mod, "_ShardBatchWorker", dying_first_pool(data_mod._ShardBatchWorker, marker)
    )
    monkeypatch.setattr(data_mod.RayDataExecutor, "_run", counting_run)
    out = tmp_path / "out"
    summary = enhance(
        str(tmp_path / "in"), str(out), model=model, executor=data_mod.RayDataExecutor(workers=2),
        shard_size=2,
    )  # fmt: skip
    assert runs == [3, 3], "the failed pool's shards must run again, once"
    assert summary.files_ok == 6 and summary.files_failed == 0
    rows = read_parts(str(out / "results")).to_pylist()
    assert sorted(r["rel_path"] for r in rows) == sorted(rels)  # exactly once
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.wav")) == sorted(rels)


def test_actor_init_deaths_setting_respects_the_environment(monkeypatch):
    """batchsep raises Ray Data's actor-start budget to ACTOR_INIT_DEATHS unless the user set
    RAY_DATA_MAX_CONSECUTIVE_ACTOR_INIT_DEATHS."""
    import ray.data

    from batchsep.distributed import data as data_mod

    ctx = ray.data.DataContext.get_current()
    monkeypatch.setattr(ctx, "max_consecutive_actor_init_deaths", 3)
    monkeypatch.setenv("RAY_DATA_MAX_CONSECUTIVE_ACTOR_INIT_DEATHS", "3")
    data_mod._configure_ray_data()
    assert ctx.max_consecutive_actor_init_deaths == 3
    monkeypatch.delenv("RAY_DATA_MAX_CONSECUTIVE_ACTOR_INIT_DEATHS")
    data_mod._configure_ray_data()
    assert ctx.max_consecutive_actor_init_deaths == data_mod.ACTOR_INIT_DEATHS
