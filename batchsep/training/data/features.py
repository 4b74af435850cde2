"""Stream feature shards (local or S3) as training batches: a torch ``IterableDataset``.

:class:`FeatureDataset` reads ``<features>/<split>/part-*.parquet`` written by ``batchsep features`` row
group by row group, groups utterances of similar length (length bucketing), optionally takes a random
fixed-length crop of each, and yields batch dicts::

    {"noisy_mag": float32 [B, F, T], "clean_mag": float32 [B, F, T], "lengths": int64 [B], ...}

(``T`` is the longest item of the batch, shorter items are zero-padded; ``lengths`` are their valid frames).
``index_columns`` adds integer labels read from a string column of the shards (e.g. ``"speaker_idx"`` from
``speaker`` for the per-speaker source vectors of SCE): int64 ``[B]``, ``-1`` for a value outside the map.

Sharding: readers are the DataLoader workers of every rank (``rank``/``world_size``, e.g. Ray Train's). With
at least as many shards as readers each reader reads whole shards; otherwise every reader reads every shard
and keeps one row in ``n_readers``. Every rank yields the same number of batches (computed from the shard
footers), so distributed training steps stay in lockstep. All randomness (shard order, bucketing, crops)
derives from ``(seed, epoch)``; call :meth:`FeatureDataset.set_epoch` before each epoch.

Use it with ``DataLoader(ds, batch_size=None, num_workers=N)`` (the dataset batches itself).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import IterableDataset, get_worker_info

from batchsep.errors import ParameterError, StorageError
from batchsep.io import parquet, storage

DEFAULT_COLUMNS = ("noisy_mag", "clean_mag")


@dataclass(frozen=True)
class ShardInfo:
    uri: str
    num_rows: int
    num_ok: int


def list_shards(uri: str) -> list[ShardInfo]:
    """The committed shards of a split folder, sorted, with their row counts (footers only)."""
    out = []
    for e in storage.list_files(uri, suffixes=[".parquet"]):
        if "/" in e.rel_path or not e.rel_path.startswith("part-"):
            continue
        try:
            with parquet.open_file(e.uri) as (pf, _size):
                meta = pf.schema_arrow.metadata or {}
                n = pf.metadata.num_rows
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"cannot read feature shard {e.uri}: {err}") from err
        out.append(ShardInfo(e.uri, n, int(meta.get(b"batchsep.num_ok", n))))
    return out


def frames_column(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray | None]:
    """Rows of a ``list<fixed_size_list<float32, F>>`` column as ``[T, F]`` float32 views (None = null)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: list[np.ndarray | None] = []
    for chunk in chunks:
        n_bins = chunk.type.value_type.list_size
        flat = chunk.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, n_bins)
        offsets = chunk.offsets.to_numpy()
        base = offsets[0]  # flatten() starts at the chunk's first offset (sliced chunks too)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        for i in range(len(chunk)):
            out.append(flat[offsets[i] - base : offsets[i + 1] - base] if valid[i] else None)
    return out


class FeatureDataset(IterableDataset):
    """Batches of magnitude features streamed from Parquet shards.

    Parameters
    ----------
    uri : str
        The features folder (``RUN/features``) — then ``split`` picks the sub-folder — or a folder of
        shards (``split=None``).
    split : str or None
        ``"train"``, ``"valid"``, ``"test"`` (``"all"`` for log-mel), or None.
    batch_size : int
    columns : sequence of str
        Feature columns to yield (each ``[B, F, T]`` float32), e.g. add ``"noise_mag"`` or
        ``"psa_target"`` when the shards have them.
    crop_frames : int, optional
        Random crop of this many frames from longer items (training); None keeps whole utterances.
    shuffle : bool
        Shuffle shard order, bucket order and crops (training); False gives a fixed order.
    seed : int
    bucket_batches : int
        Batches per length bucket: this many batches' worth of rows are sorted by length and cut into
        batches (larger: less padding, less randomness).
    drop_last : bool
        Drop each reader's last incomplete batch.
    rank, world_size : int
        This process's rank among distributed trainers (Ray Train: ``get_context().get_world_rank()``).
    with_ids : bool
        Add ``"ids"``: the list of ``mixture_id`` (or ``rel_path``) of the batch.
    index_columns : mapping, optional
        ``{key: (column, {value: index})}``: yield ``key`` as int64 ``[B]``, the index of each row's
        ``column`` value (``-1`` when the value is null or not in the map).
    """

    def __init__(
        self,
        uri: str,
        *,
        split: str | None = "train",
        batch_size: int = 16,
        columns: Sequence[str] = DEFAULT_COLUMNS,
        crop_frames: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        bucket_batches: int = 16,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        with_ids: bool = False,
        index_columns: Mapping[str, tuple[str, Mapping[str, int]]] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or bucket_batches < 1:
            raise ParameterError(
                f"batch_size={batch_size}, bucket_batches={bucket_batches} must be >= 1"
            )
        if crop_frames is not None and crop_frames < 1:
            raise ParameterError(f"crop_frames={crop_frames} must be >= 1 (or None)")
        if not 0 <= rank < world_size:
            raise ParameterError(f"rank={rank} must be in [0, world_size={world_size})")
        self.uri = storage.join(uri, split) if split else uri
        self.batch_size, self.columns = batch_size, tuple(columns)
        self.crop_frames, self.shuffle, self.seed = crop_frames, shuffle, seed
        self.bucket_batches, self.drop_last = bucket_batches, drop_last
        self.rank, self.world_size, self.with_ids = rank, world_size, with_ids
        self.index_columns = {k: (c, dict(m)) for k, (c, m) in (index_columns or {}).items()}
        clash = sorted(set(self.index_columns) & {*self.columns, "lengths", "ids"})
        if clash:
            raise ParameterError(f"index_columns keys {clash} must differ from the feature columns")
        self.epoch = 0
        self._shards: list[ShardInfo] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (same for every rank and worker)."""
        self.epoch = int(epoch)

    def shards(self) -> list[ShardInfo]:
        if self._shards is None:
            self._shards = list_shards(self.uri)
            if not self._shards:
                raise StorageError(f"no feature shards (part-*.parquet) under {self.uri}")
        return self._shards

    def _plan(self, n_workers: int) -> list[tuple[list[ShardInfo], int | None, int]]:
        """Per reader (rank-major): its shards, its row filter (``g % n == r`` or None), its batch cap."""
        shards = self.shards()
        n_readers = self.world_size * n_workers
        order = np.arange(len(shards))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 0]).permutation(len(shards))
        ordered = [shards[i] for i in order]
        total_ok = sum(s.num_ok for s in shards)
        plans = []
        for r in range(n_readers):
            if len(shards) >= n_readers:
                mine = ordered[r::n_readers]
                rows, filt = sum(s.num_ok for s in mine), None
            else:
                mine, filt = ordered, r
                rows = len(range(r, total_ok, n_readers))
            full, rest = divmod(rows, self.batch_size)
            plans.append((mine, filt, full + (0 if self.drop_last or not rest else 1)))
        per_rank = [
            sum(p[2] for p in plans[k * n_workers : (k + 1) * n_workers])
            for k in range(self.world_size)
        ]
        budget = min(per_rank)
        capped = []
        for k in range(self.world_size):  # every rank yields `budget` batches
            left = budget
            for mine, filt, n in plans[k * n_workers : (k + 1) * n_workers]:
                capped.append((mine, filt, min(n, left)))
                left -= min(n, left)
        return capped

    def num_batches(self, num_workers: int = 1) -> int:
        """Batches this rank yields per epoch with ``num_workers`` DataLoader workers."""
        plans = self._plan(max(1, num_workers))
        w = max(1, num_workers)
        return sum(p[2] for p in plans[self.rank * w : (self.rank + 1) * w])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        reader = self.rank * n_workers + worker
        shards, filt, cap = self._plan(n_workers)[reader]
        n_readers = self.world_size * n_workers
        rng = np.random.default_rng([self.seed, self.epoch, 1 + reader])
        pool: list[tuple[str, int, list[np.ndarray]]] = []
        emitted = 0
        for item in self._rows(shards, filt, n_readers):
            pool.append(item)
            if len(pool) >= self.batch_size * self.bucket_batches:
                for batch in self._bucket(pool, rng, final=False):
                    if emitted == cap:
                        return
                    emitted += 1
                    yield batch
        for batch in self._bucket(pool, rng, final=True):
            if emitted == cap:
                return
            emitted += 1
            yield batch

    def _rows(
        self, shards: list[ShardInfo], filt: int | None, n_readers: int
    ) -> Iterator[tuple[str, int, list[np.ndarray]]]:
        g = 0  # ordinal of ok rows over the shards, for row-level sharding
        for shard in shards:
            try:
                with parquet.open_file(shard.uri) as (pf, _size):
                    id_col = "mixture_id" if "mixture_id" in pf.schema_arrow.names else "rel_path"
                    label_cols = sorted({c for c, _ in self.index_columns.values()})
                    for i in range(pf.num_row_groups):
                        t = pf.read_row_group(
                            i, columns=[id_col, "status", *self.columns, *label_cols]
                        )
                        ok = [s == "ok" for s in t.column("status").to_pylist()]
                        feats = [frames_column(t.column(c)) for c in self.columns]
                        labels = {
                            key: [m.get(str(v), -1) if v is not None else -1
                                  for v in t.column(c).to_pylist()]
                            for key, (c, m) in self.index_columns.items()
                        }  # fmt: skip
                        for j, row_id in enumerate(t.column(id_col).to_pylist()):
                            if not ok[j]:
                                continue
                            g += 1
                            if filt is not None and (g - 1) % n_readers != filt:
                                continue
                            arrays: list[Any] = [col[j] for col in feats]
                            arrays += [labels[key][j] for key in self.index_columns]
                            yield row_id, arrays[0].shape[0], arrays  # type: ignore[union-attr,misc]
            except (OSError, pa.ArrowException, KeyError) as e:
                raise StorageError(f"cannot read feature shard {shard.uri}: {e}") from e

    def _bucket(self, pool: list, rng: np.random.Generator, *, final: bool) -> Iterator[dict]:
        """Sort the pool by length, cut it into batches, yield them in random order; keep the rest."""
        keys = rng.random(len(pool)) if self.shuffle else np.arange(len(pool))
        order = sorted(range(len(pool)), key=lambda i: (pool[i][1], keys[i]))
        items = [pool[i] for i in order]
        n_full = len(items) // self.batch_size
        batches = [items[k * self.batch_size : (k + 1) * self.batch_size] for k in range(n_full)]
        rest = items[n_full * self.batch_size :]
        pool.clear()
        if final:
            if rest and not self.drop_last:
                batches.append(rest)
        else:
            pool.extend(rest)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        for b in batches:
            yield self._collate(b, rng)

    def _collate(self, items: list, rng: np.random.Generator) -> dict[str, Any]:
        starts, lengths = [], []
        for _, n, _ in items:
            c = self.crop_frames
            if c is not None and n > c:
                starts.append(int(rng.integers(0, n - c + 1)) if self.shuffle else 0)
                lengths.append(c)
            else:
                starts.append(0)
                lengths.append(n)
        T = max(lengths)
        out: dict[str, Any] = {}
        for k, name in enumerate(self.columns):
            n_bins = items[0][2][k].shape[1]
            buf = np.zeros((len(items), n_bins, T), dtype=np.float32)
            for b, (_, _, arrays) in enumerate(items):
                buf[b, :, : lengths[b]] = arrays[k][starts[b] : starts[b] + lengths[b]].T
            out[name] = torch.from_numpy(buf)
        out["lengths"] = torch.tensor(lengths, dtype=torch.int64)
        for k, key in enumerate(self.index_columns, start=len(self.columns)):
            out[key] = torch.tensor([arrays[k] for _, _, arrays in items], dtype=torch.int64)
        if self.with_ids:
            out["ids"] = [i for i, _, _ in items]
        return out
