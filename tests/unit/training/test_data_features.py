"""FeatureDataset: exact values, bucketing, crops, worker/rank sharding, determinism (synthetic shards)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader

from batchsep.errors import ParameterError, StorageError
from batchsep.io import parquet, schemas
from batchsep.pipeline.features.driver import StftFeatures
from batchsep.pipeline.features.worker import _frames_array, feature_schema, shard_bytes
from batchsep.training.data.features import FeatureDataset, frames_column, list_shards

F = 257


def item(i: int, n_frames: int, offset: float = 0.0) -> np.ndarray:
    """[T, F]: value = i * 1000 + frame + bin / 1000 (+ offset) — every element identifies itself."""
    t = np.arange(n_frames)[:, None]
    f = np.arange(F)[None, :]
    return (i * 1000 + t + f / 1000 + offset).astype(np.float32)


def write_shards(folder: Path, lengths: list[int], per_shard: int, errors=()) -> dict[str, int]:
    """Shards of rows ``m{i}`` with ``lengths[i]`` frames (rows in ``errors`` have status error)."""
    cfg = StftFeatures(noise_mag=False)
    out: dict[str, int] = {}
    for k, start in enumerate(range(0, len(lengths), per_shard)):
        idx = list(range(start, min(start + per_shard, len(lengths))))
        ok = [i not in errors for i in idx]
        n_ok = sum(ok)
        schema = feature_schema(cfg, {"batchsep.num_ok": str(n_ok)})
        cols = {
            "mixture_id": [f"m{i:03d}" for i in idx],
            "split": ["train"] * len(idx),
            "index": idx,
            "n_frames": [lengths[i] if o else None for i, o in zip(idx, ok)],
            "status": ["ok" if o else "error" for o in ok],
            "error": [None if o else "bad" for o in ok],
        }
        arrays = []
        for f in schema:
            if f.name == "noisy_mag":
                arrays.append(
                    _frames_array([item(i, lengths[i]) if o else None for i, o in zip(idx, ok)], F)
                )
            elif f.name == "clean_mag":
                arrays.append(
                    _frames_array(
                        [item(i, lengths[i], 0.5) if o else None for i, o in zip(idx, ok)], F
                    )
                )
            else:
                arrays.append(pa.array(cols.get(f.name, [None] * len(idx)), f.type))
        data = shard_bytes(pa.Table.from_arrays(arrays, schema=schema))
        (folder / "train").mkdir(parents=True, exist_ok=True)
        Path(parquet.part_uri(str(folder / "train"), k)).write_bytes(data)
        out.update({f"m{i:03d}": lengths[i] for i, o in zip(idx, ok) if o})
    return out


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(5, 60, 40)]
    return tmp_path, write_shards(tmp_path, lengths, per_shard=7, errors={3, 17}), lengths


def collect(ds) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    out = {}
    for b in ds:
        for j, rid in enumerate(b["ids"]):
            assert rid not in out, f"duplicate row {rid}"
            out[rid] = (b["noisy_mag"][j].numpy(), b["clean_mag"][j].numpy(), int(b["lengths"][j]))
    return out


def test_every_ok_row_once_with_exact_values(shards):
    root, expected, _ = shards
    ds = FeatureDataset(str(root), split="train", batch_size=4, with_ids=True)
    got = collect(ds)
    assert set(got) == set(expected)  # error rows m003, m017 excluded
    for rid, (noisy, clean, n) in got.items():
        i = int(rid[1:])
        assert n == expected[rid]
        np.testing.assert_array_equal(noisy[:, :n], item(i, n).T)
        np.testing.assert_array_equal(clean[:, :n], item(i, n, 0.5).T)
        assert not noisy[:, n:].any()  # zero padding
    b = next(iter(ds))
    assert b["noisy_mag"].dtype == torch.float32 and b["lengths"].dtype == torch.int64
    assert b["noisy_mag"].shape[:2] == (4, F) and b["noisy_mag"].shape[2] == int(b["lengths"].max())
    assert ds.num_batches() == len(list(ds)) == 10  # 38 rows → 9 full + 1


def test_length_bucketing_reduces_padding(shards):
    root, _, _ = shards

    def padding(bucket_batches: int) -> float:
        ds = FeatureDataset(str(root), batch_size=4, bucket_batches=bucket_batches, seed=5)
        total = valid = 0
        for b in ds:
            total += b["lengths"].numel() * b["noisy_mag"].shape[-1]
            valid += int(b["lengths"].sum())
        return 1 - valid / total

    sorted_pad, random_pad = padding(16), padding(1)
    assert sorted_pad < 0.1 and random_pad > 3 * sorted_pad, (sorted_pad, random_pad)


def test_random_crops(shards):
    root, expected, _ = shards
    ds = FeatureDataset(str(root), batch_size=5, crop_frames=20, with_ids=True, seed=1)
    got = collect(ds)
    starts = set()
    for rid, (noisy, clean, n) in got.items():
        i, full = int(rid[1:]), expected[rid]
        assert n == min(20, full)
        start = round(float(noisy[0, 0]) - i * 1000)  # the frame index the crop starts at
        starts.add(start)
        np.testing.assert_array_equal(noisy[:, :n], item(i, full)[start : start + n].T)
        np.testing.assert_array_equal(clean[:, :n], item(i, full, 0.5)[start : start + n].T)
    assert len(starts) > 3
    assert all(b["noisy_mag"].shape[-1] <= 20 for b in ds)


def test_epochs_reshuffle_and_seed_reproduces(shards):
    root, _, _ = shards

    def order(seed: int, epoch: int) -> list[str]:
        ds = FeatureDataset(str(root), batch_size=4, with_ids=True, seed=seed)
        ds.set_epoch(epoch)
        return [i for b in ds for i in b["ids"]]

    assert order(0, 0) == order(0, 0)
    assert order(0, 1) != order(0, 0)
    assert sorted(order(0, 1)) == sorted(order(0, 0))
    fixed = FeatureDataset(str(root), batch_size=4, with_ids=True, shuffle=False)
    assert [i for b in fixed for i in b["ids"]] == [i for b in fixed for i in b["ids"]]


@pytest.mark.parametrize("per_shard", [7, 50])  # shard-level and row-level (1 shard < 4 readers)
def test_ranks_are_disjoint_and_in_lockstep(tmp_path, per_shard):
    lengths = [10 + (i * 7) % 23 for i in range(40)]
    expected = write_shards(tmp_path, lengths, per_shard=per_shard)
    seen: list[str] = []
    counts = []
    for rank in range(2):
        ds = FeatureDataset(
            str(tmp_path), batch_size=3, rank=rank, world_size=2, with_ids=True, seed=2
        )
        ids = [b["ids"] for b in DataLoader(ds, batch_size=None, num_workers=2)]
        counts.append(len(ids))
        assert ds.num_batches(num_workers=2) == len(ids)
        seen += [i for b in ids for i in b]
    assert counts[0] == counts[1]  # same number of steps on every rank
    assert len(seen) == len(set(seen))  # no row twice
    assert set(seen) <= set(expected) and len(seen) >= len(expected) - 2 * 3 * 2


def test_dataloader_workers_cover_everything_once(shards):
    root, expected, _ = shards
    ds = FeatureDataset(str(root), batch_size=4, with_ids=True)
    got = [i for b in DataLoader(ds, batch_size=None, num_workers=2) for i in b["ids"]]
    assert sorted(got) == sorted(expected)


def test_frames_column_handles_slices_and_nulls():
    arrays = [item(0, 3), None, item(2, 5)]
    col = _frames_array(arrays, F)
    out = frames_column(col.slice(1, 2))
    assert out[0] is None
    np.testing.assert_array_equal(out[1], item(2, 5))


def test_errors(tmp_path, shards):
    root, _, _ = shards
    with pytest.raises(ParameterError, match="batch_size=0"):
        FeatureDataset(str(root), batch_size=0)
    with pytest.raises(ParameterError, match=r"rank=2 must be in \[0, world_size=2\)"):
        FeatureDataset(str(root), rank=2, world_size=2)
    with pytest.raises(StorageError, match="no feature shards"):
        (tmp_path / "empty").mkdir()
        list(FeatureDataset(str(tmp_path), split="empty"))
    assert len(list_shards(str(root / "train"))) == 6
    assert schemas.STATUS_OK == "ok"
