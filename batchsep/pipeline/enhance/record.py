"""The commit record of an enhance output folder, read and edited as Arrow columns (bounded memory).

The record is every ``results/part-*.parquet`` (one per committed shard) and ``results/results-*.parquet``
(parts compacted by :func:`compact`). A resume reads only the few columns it plans with
(:data:`INDEX_COLUMNS`), as *index* rows (:func:`index_table`), and only a window of them at a time
(:mod:`batchsep.pipeline.enhance.resume_index`): a few dozen bytes per file of the window, not a Python
dict per row. Each index row knows where it lies (``_file``: the file's URI, ``_row``: its row number
there), so removing rows (a file to do again, a superseded duplicate) rewrites only the files that hold
them (:class:`RowDrops`: each file once, streamed).

Compaction is crash-safe and idempotent: the merged file is written atomically under a new name, and only
then are its sources deleted. A crash between the two leaves each row twice with the same ``committed_at``;
the newer file by name (``results-*`` after ``part-*``, a later ``results-*`` after an earlier one) then
holds the newest row, and the next run removes the others (the rule of :mod:`batchsep.pipeline.enhance.outfolder`).
Every file is always complete, so pandas, duckdb and Ray Data can read the folder at any moment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchsep.errors import StorageError
from batchsep.io import parquet, storage

RESULTS_DIR = "results"
RECORD_PREFIXES = parquet.PART_PREFIXES
"""Names of the record's files under ``results/``: shard parts, and compacted files."""
COMPACTED_TEMPLATE = "results-{:06d}.parquet"

INDEX_COLUMNS = {
    "rel_path": pa.string(),
    "status": pa.string(),
    "output_uri": pa.string(),
    "error": pa.string(),
    "duration_s": pa.float64(),
    "t_total_s": pa.float64(),
    "shard": pa.int32(),
    "committed_at": pa.timestamp("us", tz="UTC"),
    "input_size": pa.int64(),
    "input_mtime_ns": pa.int64(),
}
"""What a resume plans with (a record written before a column existed reads it as null)."""

FILE_KEY, ROW_KEY, ORDER_KEY, KEY = "_file", "_row", "_order", "_key"
"""Index columns: the record file holding the row, its row number there, the file's place in name order,
and a key unique to the row (``_order << 32 | _row``)."""

COMPACT_PARTS = 256
"""Parts committed by a run before it merges them into one ``results-*`` file (256 × 32 files ≈ 8 000
rows each): a crash leaves at most this many parts for the next run to read."""
COMPACT_TARGET_ROWS = 1_000_000
"""Compacted files under this many rows are merged again at the end of a run (≤ 1 file per 10 000 files)."""


def record_files(out_uri: str) -> list[str]:
    """URIs of the record's files (parts and compacted files), in name order; none when there is none."""
    return [uri for uri, _name in _record_names(out_uri)]


def _record_names(out_uri: str) -> list[tuple[str, str]]:
    folder = storage.join(out_uri, RESULTS_DIR)
    if not storage.exists(folder):
        return []
    return [
        (e.uri, e.rel_path)
        for e in storage.list_files(folder, suffixes=[".parquet"])
        if "/" not in e.rel_path and e.rel_path.startswith(RECORD_PREFIXES)
    ]


def _conform_index(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """``columns`` of ``table`` as :data:`INDEX_COLUMNS` types, those it lacks as nulls (a record older
    than the column)."""
    have = set(table.column_names)
    arrays = []
    for name in columns:
        typ = INDEX_COLUMNS[name]
        if name in have:
            column = table.column(name)
            arrays.append(column if column.type == typ else pc.cast(column, typ))
        else:
            arrays.append(pa.nulls(table.num_rows, typ))
    return pa.table(arrays, names=list(columns))


def index_table(raw: pa.Table, uri: str, order: int, first_row: int = 0) -> pa.Table:
    """Index rows of ``raw`` (rows ``first_row``, ``first_row + 1``, ... of record file ``uri``, the
    ``order``-th by name): :data:`INDEX_COLUMNS`, and ``_file``, ``_row``, ``_order``, ``_key``."""
    t = _conform_index(raw, list(INDEX_COLUMNS))
    n = t.num_rows
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    codes = pa.array(np.zeros(n, np.int32))
    t = t.append_column(FILE_KEY, pa.DictionaryArray.from_arrays(codes, pa.array([uri])))
    t = t.append_column(ROW_KEY, pa.array(rows.astype(np.int32)))
    t = t.append_column(ORDER_KEY, pa.array(np.full(n, order, np.int32)))
    return t.append_column(KEY, pa.array((np.int64(order) << 32) + rows))


def empty_index() -> pa.Table:
    """An index without rows (the columns of :func:`index_table`)."""
    return pa.table(
        {**{k: pa.array([], t) for k, t in INDEX_COLUMNS.items()},
         FILE_KEY: pa.array([], pa.dictionary(pa.int32(), pa.string())),
         ROW_KEY: pa.array([], pa.int32()), ORDER_KEY: pa.array([], pa.int32()),
         KEY: pa.array([], pa.int64())}
    )  # fmt: skip


def read_index(out_uri: str) -> tuple[pa.Table, pa.Table]:
    """The index of ``out_uri``'s whole record (see :func:`split_newest`). A resume reads it window by
    window instead (:mod:`batchsep.pipeline.enhance.resume_index`)."""
    tables = [
        index_table(parquet.read_columns(uri, list(INDEX_COLUMNS)), uri, order)
        for order, uri in enumerate(record_files(out_uri))
    ]
    if not tables:
        return empty_index(), empty_index()
    table = pa.concat_tables(tables, promote_options="permissive")  # one chunk per file: no copy
    del tables
    return split_newest(table)


def split_newest(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Index rows ``table`` split in the newest row of each file (in the record's order), and the
    older rows of files that have more than one (superseded)."""
    # the newest row of a file is the last of its group: by commit time (rows without one are older),
    # then the later file by name, then the later row of a file (see outfolder's rule); only the keys are
    # sorted, the index keeps the record's order (a duplicate-free record is returned as read)
    n = table.num_rows
    if n <= 1:
        return table, table.slice(0, 0)
    keys = pa.table(
        {
            "rel_path": table.column("rel_path"),
            "_has_at": pc.is_valid(table.column("committed_at")),
            "committed_at": table.column("committed_at"),
            ORDER_KEY: table.column(ORDER_KEY),
            ROW_KEY: table.column(ROW_KEY),
        }
    )
    order = pc.sort_indices(
        keys, sort_keys=[(name, "ascending", "at_start") for name in keys.column_names]
    )
    del keys
    rel = pc.take(table.column("rel_path"), order).combine_chunks()
    last = pa.concat_arrays([pc.not_equal(rel.slice(0, n - 1), rel.slice(1)), pa.array([True])])
    del rel
    if pc.all(last).as_py():
        return table, table.slice(0, 0)
    newest = np.zeros(n, dtype=bool)
    newest[order.to_numpy()[last.to_numpy(zero_copy_only=False)]] = True
    return table.filter(pa.array(newest)), table.filter(pa.array(~newest))


class RowDrops:
    """Rows to remove from the record's files, gathered while a resume is planned (a few bytes a row:
    row numbers by file), removed at once by :meth:`apply` (each file rewritten once)."""

    def __init__(self) -> None:
        self.by_file: dict[str, list[np.ndarray]] = {}
        self.rows = 0

    def add(self, rows: pa.Table) -> int:
        """Note index ``rows`` for removal; returns how many."""
        if rows.num_rows == 0:
            return 0
        files = rows.column(FILE_KEY)
        row_numbers = rows.column(ROW_KEY)
        for chunk_files, chunk_rows in zip(files.chunks, row_numbers.chunks, strict=True):
            codes = chunk_files.indices.to_numpy(zero_copy_only=False)
            numbers = chunk_rows.to_numpy(zero_copy_only=False)
            names = chunk_files.dictionary.to_pylist()
            for code in np.unique(codes):
                self.by_file.setdefault(names[code], []).append(numbers[codes == code])
        self.rows += rows.num_rows
        return rows.num_rows

    def apply(self) -> int:
        """Remove the rows noted: each file rewritten atomically without them, streamed (a row group
        at a time), deleted when nothing is left. Returns how many rows were removed."""
        for uri in sorted(self.by_file):
            _rewrite_without(uri, np.unique(np.concatenate(self.by_file[uri])))
        removed, self.by_file, self.rows = self.rows, {}, 0
        return removed


def _rewrite_without(uri: str, drop: np.ndarray, batch_rows: int = 65_536) -> None:
    """Rewrite Parquet file ``uri`` without its rows ``drop`` (sorted row numbers), atomically and a
    batch at a time; delete it when no row is left."""
    try:
        with parquet.open_file(uri) as (pf, _size):
            empty = drop.size >= pf.metadata.num_rows
            if not empty:
                with (
                    storage.atomic_writer(uri) as f,
                    pq.ParquetWriter(f, pf.schema_arrow, compression="zstd") as writer,
                ):
                    start = 0
                    for batch in pf.iter_batches(batch_size=batch_rows):
                        n = batch.num_rows
                        here = drop[(drop >= start) & (drop < start + n)] - start
                        keep = np.ones(n, bool)
                        keep[here] = False
                        if keep.any():
                            writer.write_table(
                                pa.Table.from_batches([batch]).filter(pa.array(keep))
                            )
                        start += n
    except (OSError, pa.ArrowException) as e:
        raise StorageError(f"cannot rewrite Parquet {uri}: {e}") from e
    if empty:
        storage.delete(uri)


def drop_rows(rows: pa.Table) -> int:
    """Remove ``rows`` (index rows: ``_file``, ``_row``) from their record files: each file rewritten
    atomically without them, deleted when empty. Returns how many rows were removed."""
    drops = RowDrops()
    drops.add(rows)
    return drops.apply()


_COMPACTED = re.compile(r"results-(\d+)\.parquet$")


def compact(out_uri: str, *, parts_only: bool = False, min_files: int = 2) -> int:
    """Merge the record's files into one ``results-NNNNNN.parquet`` (the next number), then delete them:
    every part, and (unless ``parts_only``) the compacted files under :data:`COMPACT_TARGET_ROWS` rows.
    Nothing happens with fewer than ``min_files`` to merge. Returns how many files were merged.

    Only the lease holder compacts (one writer). Rows are kept as they are, duplicates too (the newest
    wins when read; the driver repairs them), in name order, so the rule that ranks rows is unchanged.
    """
    names = _record_names(out_uri)
    merge, top = [], -1
    for uri, name in names:
        m = _COMPACTED.match(name)
        if m:
            top = max(top, int(m.group(1)))
            if parts_only or pq_rows(uri) >= COMPACT_TARGET_ROWS:
                continue
        merge.append(uri)
    if len(merge) < min_files:
        return 0
    target = storage.join(out_uri, RESULTS_DIR, COMPACTED_TEMPLATE.format(top + 1))
    parquet.merge_files(merge, target)  # atomic: complete or absent
    storage.delete_many(merge)  # a crash before the end leaves duplicates the next run removes
    return len(merge)


def compact_committed(out_uri: str, parts: Sequence[str], tables: Sequence[pa.Table]) -> None:
    """Merge ``parts`` (files of the record that hold ``tables``, as just committed by this run) into the
    next ``results-NNNNNN.parquet`` from the tables in memory, then delete them: :func:`compact` without
    reading back what the run wrote. Crash-safe as :func:`compact`."""
    if not parts:
        return
    top = max(
        (int(m.group(1)) for _u, n in _record_names(out_uri) if (m := _COMPACTED.match(n))),
        default=-1,
    )
    target = storage.join(out_uri, RESULTS_DIR, COMPACTED_TEMPLATE.format(top + 1))
    parquet.write_table(target, pa.concat_tables(tables, promote_options="permissive"))
    storage.delete_many(parts)


def pq_rows(uri: str) -> int:
    """Rows of one Parquet file (from its footer)."""
    return parquet.num_rows(uri)


# ---- planning a resume on the index (window by window: see resume_index)


def changed_inputs_mask(index: pa.Table, listing: pa.Table) -> pa.Array:
    """Rows whose input is listed with another size or modification time than the row recorded (a row
    without them, or an input whose time is unknown, counts as unchanged)."""
    joined = _join_listing(index, listing)
    size_differs = pc.and_(
        pc.and_(
            pc.is_valid(joined.column("input_size")), pc.greater_equal(joined.column("size"), 0)
        ),
        pc.not_equal(joined.column("input_size"), joined.column("size")),
    )
    mtime_differs = pc.not_equal(joined.column("input_mtime_ns"), joined.column("mtime_ns"))
    changed = pc.or_(pc.fill_null(size_differs, False), pc.fill_null(mtime_differs, False))
    keys = joined.column(KEY).filter(changed).combine_chunks()
    return pc.is_in(index.column(KEY), value_set=keys)


def _join_listing(index: pa.Table, listing: pa.Table) -> pa.Table:
    left = index.select(["rel_path", KEY, "input_size", "input_mtime_ns"])
    right = listing.select(["rel_path", "size", "mtime_ns"])
    return left.join(right, keys="rel_path", join_type="inner")


def delete_outputs(out_uri: str, rows: pa.Table) -> None:
    """Delete the outputs that index ``rows`` name under ``out_uri`` (a copied folder's rows may name
    another folder's: those are left alone)."""
    inside = storage.normalize(out_uri) + "/"
    storage.delete_many(
        u
        for u in rows.column("output_uri").to_pylist()
        if u and storage.normalize(u).startswith(inside)
    )


COMPACT_MIN_FILES = 64
"""A run's end compacts the record when it has this many files (a small job keeps its parts)."""


def compact_at_end(out_uri: str) -> int:
    """Compact the record at the end of a run (see :func:`compact`): when it has
    :data:`COMPACT_MIN_FILES` files or more, or was compacted before (its parts join the compacted
    rows). Returns how many files were merged."""
    names = [name for _uri, name in _record_names(out_uri)]
    if len(names) >= COMPACT_MIN_FILES or any(_COMPACTED.match(n) for n in names):
        return compact(out_uri)
    return 0
