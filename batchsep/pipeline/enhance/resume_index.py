"""The commit record read window by window, and OUT's files as a set of hashes: what a resume plans with,
in memory bounded by the window, not by the size of the record.

A resume compares three sorted-or-sortable things: the input listing (sorted by relative path, in memory
as Arrow), the commit record (Parquet files, rows in about the order they were committed) and the files
under OUT. :class:`RecordWindows` cuts the key space of relative paths into ranges (:func:`window_cuts`:
about :data:`WINDOW_ROWS` listing and record rows each) and reads, for one range, only the record's rows
whose relative path lies in it, row group by row group: each row group's ``rel_path`` statistics (min, max
in the Parquet footer) say which ranges it can hold rows of. A run commits its shards in listing order, so
the row groups of a record are each a narrow range and a window reads a few of them; a record in another
order stays correct, only slower (a row group whose range spans many windows is read for each, a few
kept decoded). All rows of one file fall in the same window, so duplicates are found window by window.

:class:`OutputSet` is OUT's one listing kept as one 64-bit hash of each file's URI (8 bytes a file,
sorted): a missing output is a committed ``ok`` row whose output's hash is not in it. (Two URIs with the
same hash would hide a missing output: ~n²/2⁶⁵, under one in a million for 5 million files.)
"""

from __future__ import annotations

import contextlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batchsep.errors import StorageError
from batchsep.io import parquet, schemas, storage
from batchsep.pipeline.enhance import record

WINDOW_ROWS = 16_384
"""Listing rows plus record rows planned at once (about; a window holds whole row groups' worth)."""
CACHED_GROUPS = 4
"""Decoded row groups kept while the windows they span are planned (a group spanning many is re-read)."""
OPEN_FILES = 8
"""Record files kept open while a resume is planned (footers parsed once; a record is read in file order)."""


@dataclass(frozen=True)
class Group:
    """One row group of a record file: where it lies and the range of relative paths it holds."""

    uri: str
    order: int  # the file's place in name order
    index: int  # row group number in the file
    first_row: int  # the file's row number of its first row
    rows: int
    lo: str | None  # min and max rel_path (None: unknown, read for every window)
    hi: str | None


def _groups(order: int, uri: str, pf: pq.ParquetFile) -> list[Group]:
    """The row groups of record file ``uri`` (open as ``pf``) with their ``rel_path`` range, from its
    footer."""
    meta = pf.metadata
    names = [meta.schema.column(j).name for j in range(meta.num_columns)]
    col = names.index("rel_path") if "rel_path" in names else -1
    out, first = [], 0
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        lo = hi = None
        stats = rg.column(col).statistics if col >= 0 else None
        if stats is not None and stats.has_min_max:
            lo, hi = stats.min, stats.max
            if isinstance(lo, bytes) or isinstance(hi, bytes):  # not a string column
                lo = hi = None
        out.append(Group(uri, order, i, first, rg.num_rows, lo, hi))
        first += rg.num_rows
    return out


class RecordWindows:
    """``out_uri``'s commit record, read by ranges of relative paths (see the module's docstring). A
    context manager: it keeps up to :data:`OPEN_FILES` record files open (their footers parsed once)."""

    def __init__(self, out_uri: str) -> None:
        self.files = record.record_files(out_uri)
        self._open: OrderedDict[str, tuple[contextlib.ExitStack, pq.ParquetFile]] = OrderedDict()
        self._cache: dict[tuple[int, int], pa.Table] = {}
        self.groups_read = 0  # row groups decoded (a measure of how well the record's order suits)
        try:
            self.groups = [g for order, uri in enumerate(self.files)
                           for g in _groups(order, uri, self._file(uri))]  # fmt: skip
        except BaseException:
            self.close()
            raise
        self.rows = sum(g.rows for g in self.groups)

    def __enter__(self) -> RecordWindows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the record files kept open."""
        while self._open:
            _uri, (stack, _pf) = self._open.popitem()
            stack.close()

    def _file(self, uri: str) -> pq.ParquetFile:
        """Record file ``uri`` open (the most recently used :data:`OPEN_FILES` stay open)."""
        held = self._open.get(uri)
        if held is not None:
            self._open.move_to_end(uri)
            return held[1]
        while len(self._open) >= OPEN_FILES:
            _old, (stack, _pf) = self._open.popitem(last=False)
            stack.close()
        stack = contextlib.ExitStack()
        try:
            pf, _size = stack.enter_context(parquet.open_file(uri))
        except (OSError, pa.ArrowException) as e:
            stack.close()
            raise StorageError(f"cannot read Parquet {uri}: {e}") from e
        self._open[uri] = (stack, pf)
        return pf

    def _read(self, g: Group) -> pa.Table:
        key = (g.order, g.index)
        table = self._cache.get(key)
        if table is not None:
            return table
        pf = self._file(g.uri)
        have = set(pf.schema_arrow.names)
        try:
            raw = pf.read_row_group(g.index, columns=[c for c in record.INDEX_COLUMNS if c in have])
        except (OSError, pa.ArrowException) as e:
            raise StorageError(f"cannot read Parquet {g.uri}: {e}") from e
        self.groups_read += 1
        table = record.index_table(raw, g.uri, g.order, g.first_row)
        if len(self._cache) < CACHED_GROUPS:
            self._cache[key] = table
        return table

    def rows_between(self, lo: str | None, hi: str | None) -> pa.Table:
        """The index rows (:func:`~batchsep.pipeline.enhance.record.index_table`) whose relative path
        is ``>= lo`` and ``< hi`` (None: unbounded), in the record's order (file, then row)."""
        # a group that ends before this range is not needed by a later one either (ranges ascend)
        for key in [k for k, t in self._cache.items() if _ends_before(t, lo)]:
            del self._cache[key]
        parts = []
        for g in self.groups:
            if g.rows == 0 or (lo is not None and g.hi is not None and g.hi < lo):
                continue
            if hi is not None and g.lo is not None and g.lo >= hi:
                continue
            table = self._read(g)
            rel = table.column("rel_path")
            keep = None
            if lo is not None and not (g.lo is not None and g.lo >= lo):
                keep = pc.greater_equal(rel, lo)
            if hi is not None and not (g.hi is not None and g.hi < hi):
                below = pc.less(rel, hi)
                keep = below if keep is None else pc.and_(keep, below)
            parts.append(table if keep is None else table.filter(pc.fill_null(keep, False)))
        if not parts:
            return record.empty_index()
        return pa.concat_tables(parts, promote_options="permissive")


def _ends_before(table: pa.Table, lo: str | None) -> bool:
    if lo is None or table.num_rows == 0:
        return lo is not None
    top = pc.max(table.column("rel_path")).as_py()
    return top is not None and top < lo


def window_cuts(rels: pa.ChunkedArray | pa.Array, groups: list[Group], window: int) -> list[str]:
    """Relative paths that cut the key space into ranges of about ``window`` rows each: the sorted
    listing's ``rels`` and the record's row groups (by their first path) both count."""
    n = len(rels)
    step = max(1, window // 4)
    weights: list[tuple[str, int]] = [
        (rels[i].as_py(), min(step, n - i)) for i in range(0, n, step)
    ]
    weights += [(g.lo, g.rows) for g in groups if g.lo is not None and g.rows]
    weights.sort()
    cuts: list[str] = []
    acc = 0
    for key, w in weights:
        if acc and acc + w > window and (not cuts or key > cuts[-1]):
            cuts.append(key)
            acc = 0
        acc += w
    return cuts


def listing_position(rels: pa.ChunkedArray | pa.Array, key: str) -> int:
    """The first row of the sorted ``rels`` whose path is ``>= key`` (a binary search)."""
    lo, hi = 0, len(rels)
    while lo < hi:
        mid = (lo + hi) // 2
        if rels[mid].as_py() < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def windows(
    listing: pa.Table, reader: RecordWindows, window: int = WINDOW_ROWS
) -> Iterator[tuple[int, int, pa.Table]]:
    """The listing cut into consecutive ranges, each with the record's rows in its range: ``(start,
    end, index rows)`` for listing rows ``start:end``; every listing row and every record row is in
    exactly one."""
    rels = listing.column("rel_path")
    cuts = window_cuts(rels, reader.groups, window)
    bounds: list[str | None] = [None, *cuts, None]
    start = 0
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        end = listing.num_rows if hi is None else listing_position(rels, hi)
        yield start, end, reader.rows_between(lo, hi)
        start = end


class OutputSet:
    """The files under ``out_uri`` (one listing, pages on S3) as a sorted array of 64-bit hashes of their
    URIs (Python's string hash: the same within this process)."""

    def __init__(self, out_uri: str) -> None:
        hashes = array("q")
        for e in storage.iter_files(out_uri, sizes=False):
            hashes.append(hash(e.uri))
        self.hashes = (
            np.unique(np.frombuffer(hashes, dtype=np.int64)) if hashes else np.zeros(0, np.int64)
        )
        self.files = len(hashes)
        del hashes

    def __contains__(self, uri: str) -> bool:
        return bool(self._has(np.array([hash(uri)], np.int64))[0])

    def _has(self, h: np.ndarray) -> np.ndarray:
        if self.hashes.size == 0:
            return np.zeros(h.shape, bool)
        pos = np.minimum(np.searchsorted(self.hashes, h), self.hashes.size - 1)
        return self.hashes[pos] == h

    def missing_mask(self, index: pa.Table) -> pa.Array:
        """Rows of ``index`` done (``ok``, an output named) whose output is not among the files: as
        written, or normalized (a URI recorded with a trailing slash)."""
        status = index.column("status").to_pylist()
        uris = index.column("output_uri").to_pylist()
        check = [
            i
            for i, (s, u) in enumerate(zip(status, uris, strict=True))
            if s == schemas.STATUS_OK and u
        ]
        absent = np.zeros(index.num_rows, bool)
        if check:
            found = self._has(np.fromiter((hash(uris[i]) for i in check), np.int64, len(check)))
            for i, f in zip(check, found.tolist(), strict=True):
                absent[i] = not f and storage.normalize(uris[i]) not in self
        return pa.array(absent)
