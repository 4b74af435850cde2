"""Batch sources of training: the fixed train subset of a train fraction, and per-rank datasets.

A train fraction below 1 selects a fixed, seeded subset of the train mixtures (the same subset every
epoch, nested: the 10 % subset is inside the 50 % one); :class:`SubsetFeatureDataset` streams only those
rows and keeps :class:`~batchsep.training.data.features.FeatureDataset`'s guarantee that every rank yields the same
number of batches.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from batchsep.io import parquet, storage
from batchsep.training.data.features import DEFAULT_COLUMNS, FeatureDataset, ShardInfo, list_shards

if TYPE_CHECKING:
    from batchsep.pipeline.train.types import DataOptions


def id_rows(shard: ShardInfo) -> list[tuple[str, bool]]:
    names = parquet.read_schema(shard.uri).names
    id_col = "mixture_id" if "mixture_id" in names else "rel_path"
    t = parquet.read_table(shard.uri, columns=[id_col, "status"])
    return [
        (str(i), s == "ok")
        for i, s in zip(t.column(id_col).to_pylist(), t.column("status").to_pylist())
    ]


def train_subset(features_uri: str, fraction: float, seed: int) -> frozenset[str] | None:
    """Ids of the train mixtures a ``fraction`` run uses (None for all); nested across fractions."""
    if fraction >= 1.0:
        return None
    ids = sorted(
        i for s in list_shards(storage.join(features_uri, "train")) for i, ok in id_rows(s) if ok
    )
    order = np.random.default_rng([seed, 7]).permutation(len(ids))
    n = max(1, math.ceil(fraction * len(ids)))
    return frozenset(ids[i] for i in order[:n])


class SubsetFeatureDataset(FeatureDataset):
    """:class:`FeatureDataset` over the rows whose id is in ``keep`` (batch counts stay per-rank equal)."""

    def __init__(self, uri: str, *, keep: frozenset[str], **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.keep = keep

    def shards(self) -> list[ShardInfo]:
        if self._shards is None:
            counted = []
            for s in super().shards():
                n_kept = sum(ok and i in self.keep for i, ok in id_rows(s))
                counted.append(ShardInfo(s.uri, s.num_rows, n_kept))
            self._shards = counted
        return self._shards

    def _rows(self, shards, filt, n_readers):  # type: ignore[no-untyped-def]
        g = 0
        for item in super()._rows(shards, None, 1):
            if item[0] not in self.keep:
                continue
            g += 1
            if filt is None or (g - 1) % n_readers == filt:
                yield item


def has_shards(uri: str) -> bool:
    return storage.exists(uri) and bool(list_shards(uri))


def make_sources(
    features_uri: str, data: DataOptions, *, rank: int = 0, world_size: int = 1
) -> tuple[Any, Any]:
    """``(train_batches(epoch), valid_batches() or None)`` for :func:`batchsep.training.loop.fit`.

    Training batches are this rank's share; every rank validates on the whole validation split (the
    same loss on every rank and in a serial run, and no rank is left without a batch).
    """
    keep = train_subset(features_uri, data.train_fraction, data.seed)
    common: dict[str, Any] = {
        "batch_size": data.batch_size,
        "seed": data.seed,
        "columns": (*DEFAULT_COLUMNS, *data.extra_columns),
        "index_columns": {
            key: (col, {v: i for i, v in enumerate(values)})
            for key, col, values in data.index_columns
        },
    }
    kw = dict(
        common, rank=rank, world_size=world_size, crop_frames=data.crop_frames, shuffle=True,
        bucket_batches=data.bucket_batches,
    )  # fmt: skip
    train_ds = (
        FeatureDataset(features_uri, split="train", **kw)
        if keep is None
        else SubsetFeatureDataset(features_uri, split="train", keep=keep, **kw)
    )

    def train_batches(epoch: int) -> FeatureDataset:
        train_ds.set_epoch(epoch)
        return train_ds

    if not has_shards(storage.join(features_uri, "valid")):
        return train_batches, None
    valid_ds = FeatureDataset(
        features_uri, split="valid", crop_frames=None, shuffle=False, **common
    )
    return train_batches, lambda: valid_ds
