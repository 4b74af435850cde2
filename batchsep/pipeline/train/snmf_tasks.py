"""SNMF dictionary learning as runner tasks: frames sampled per shard, then one fit task.

Each shard's frames are sampled by one task; a last task fits the dictionaries and scores the validation
split (:func:`learn_snmf`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from batchsep.errors import StorageError
from batchsep.io import parquet, storage
from batchsep.models.base import serialize
from batchsep.pipeline.runner import Runner
from batchsep.pipeline.train.batches import has_shards, id_rows, train_subset
from batchsep.pipeline.train.data import DataOptions, feature_transform, log_line
from batchsep.training.data.features import FeatureDataset, frames_column, list_shards


@dataclass(frozen=True)
class FrameTask:
    """Sample up to ``quota`` frames of clean and of noisy/noise magnitudes from one shard."""

    uri: str
    keep: frozenset[str] | None
    quota: int
    other: str
    seed: int


def sample_frames(task: FrameTask) -> tuple[np.ndarray, np.ndarray]:
    """``(clean [F, n], other [F, n])`` float32 frames of one shard (a Ray task's unit of work)."""
    names = parquet.read_schema(task.uri).names
    id_col = "mixture_id" if "mixture_id" in names else "rel_path"
    if task.other not in names:
        raise StorageError(f"{task.uri} has no {task.other!r} column (compute features with it)")
    t = parquet.read_table(task.uri, columns=[id_col, "status", "clean_mag", task.other])
    rows = [
        j
        for j, (i, s) in enumerate(
            zip(t.column(id_col).to_pylist(), t.column("status").to_pylist())
        )
        if s == "ok" and (task.keep is None or str(i) in task.keep)
    ]
    cols = [frames_column(t.column(c)) for c in ("clean_mag", task.other)]
    clean, other = (np.concatenate([c[j] for j in rows]) for c in cols)  # type: ignore[misc]
    rng = np.random.default_rng(task.seed)
    pick = np.sort(rng.choice(clean.shape[0], size=min(task.quota, clean.shape[0]), replace=False))
    return np.ascontiguousarray(clean[pick].T), np.ascontiguousarray(other[pick].T)


@dataclass(frozen=True)
class SnmfFitTask:
    config: dict[str, Any]
    speech: np.ndarray
    noise: np.ndarray
    valid_uri: str | None
    batch_size: int
    device: str
    verbose: bool = False


SNMF_PROGRESS_LINES = 10
"""Progress lines per dictionary during an SNMF fit (minutes on a large frame budget)."""


def fit_snmf_task(task: SnmfFitTask) -> dict[str, Any]:
    """Fit the dictionaries, score the validation split (MSA), return the payload and the logs."""
    from batchsep.models.snmf import SnmfEnhancer

    model = SnmfEnhancer(SnmfEnhancer.config_class.from_dict(task.config)).to(task.device)  # type: ignore[arg-type]
    n_iter, t0 = model.config.n_iter_fit, time.perf_counter()
    every = max(1, math.ceil(n_iter / SNMF_PROGRESS_LINES))

    def progress(dictionary: str, i: int, objective: float) -> None:
        if i % every == 0 or i == n_iter:
            log_line(
                task.verbose,
                f"[train snmf] {dictionary} dictionary: iteration {i}/{n_iter}, objective "
                f"{objective:.6g} ({time.perf_counter() - t0:.0f} s)",
            )

    # copies: arrays from Ray's object store are read-only, which torch.from_numpy warns about
    objectives = model.fit_dictionaries(
        torch.tensor(task.speech, device=task.device),
        torch.tensor(task.noise, device=task.device),
        on_iter=progress,
    )
    losses: list[float] = []
    if task.valid_uri is not None:
        ds = FeatureDataset(task.valid_uri, split=None, batch_size=task.batch_size, shuffle=False)
        for batch in ds:
            batch = {k: v.to(task.device) for k, v in batch.items()}
            loss, _ = model.training_loss(batch)
            losses.append(float(loss))
    return {
        "payload": serialize(model),
        "objective": {k: v.tolist() for k, v in objectives.items()},
        "valid_loss": float(np.mean(losses)) if losses else None,
    }


def learn_snmf(
    features_uri: str,
    config: Any,
    data: DataOptions,
    *,
    runner: Runner,
    device: str = "cpu",
    verbose: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Learn SNMF dictionaries from the train split: frames per shard as tasks, then one fit task.

    Returns
    -------
    (SnmfEnhancer, dict)
        The fitted model and ``metrics.json`` content (objectives, valid loss, data description).
    """
    from batchsep.models.base import deserialize

    _, info = feature_transform(features_uri, data)
    shards = list_shards(storage.join(features_uri, "train"))
    keep = train_subset(features_uri, data.train_fraction, data.seed)
    counts = [
        s.num_ok if keep is None else sum(ok and i in keep for i, ok in id_rows(s)) for s in shards
    ]
    total = sum(counts)
    other = "noisy_mag" if data.snmf_noise_from == "noisy" else "noise_mag"
    tasks = [
        FrameTask(
            s.uri, keep, math.ceil(data.snmf_frames * n / total), other, data.seed * 100003 + k
        )
        for k, (s, n) in enumerate(zip(shards, counts))
        if n > 0
    ]
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = dict(
        runner.map_unordered(sample_frames, tasks)
    )
    speech = np.concatenate([parts[k][0] for k in sorted(parts)], axis=1)
    noise = np.concatenate([parts[k][1] for k in sorted(parts)], axis=1)
    valid_uri = storage.join(features_uri, "valid")
    fit_task = SnmfFitTask(
        config.to_dict(), speech, noise, valid_uri if has_shards(valid_uri) else None,
        data.batch_size, device, verbose,
    )  # fmt: skip
    _, out = next(iter(runner.map_unordered(fit_snmf_task, [fit_task])))
    model = deserialize(out["payload"])
    info = {
        "best_valid_loss": out["valid_loss"],
        "objective": out["objective"],
        "snmf_frames": int(speech.shape[1]),
        "snmf_noise_from": data.snmf_noise_from,
        "config": config.to_dict(),
        "data": {**info, "features_uri": features_uri},
    }
    return model, info
