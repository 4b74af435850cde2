"""Planning an enhance run in bounded memory: the resume read from the commit record window by window,
and the shards formed from the input listing as they are dispatched.

The driver holds the input listing as one Arrow table (:data:`~batchsep.pipeline.scan.driver.LISTING`)
and a bit per input (to do or done). A resume reads the commit record (:mod:`batchsep.pipeline.enhance.record`)
one window of relative paths at a time (:mod:`batchsep.pipeline.enhance.resume_index`), with OUT's one
listing held as 8 bytes a file. Python objects per file exist only for the files of the batch of shards
being dispatched (:data:`DISPATCH_FILES`): their tasks (input, relative path, output); their listed
identity (for the commit stamp) stays an Arrow table per shard until the shard is committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batchsep.io import schemas, storage
from batchsep.io.storage import FileEntry
from batchsep.pipeline.enhance import record, resume_index
from batchsep.pipeline.enhance.outfolder import output_rel_paths
from batchsep.pipeline.enhance.worker import ShardTask

DISPATCH_FILES = 100_000
"""Files handed to the executor at once: one Ray Data job each (its actors start once per batch, ~4 s)."""
LISTING_WINDOW = 8_192
"""Listing rows turned into Python objects at once while planning."""


@dataclass
class Resume:
    """What a resume found in the commit record (see :func:`plan_resume`)."""

    todo: pa.Array  # one bool per listing row: not done yet
    next_shard: int = 0
    outputs_missing: int = 0
    inputs_changed: int = 0
    inputs_gone: int = 0
    failed_retried: int = 0
    rows_repaired: int = 0
    files_ok: int = 0
    files_failed: int = 0
    hours: float = 0.0
    processing_s: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_todo(self) -> int:
        return int(pc.sum(self.todo).as_py() or 0)


def plan_resume(
    out_uri: str,
    listing: pa.Table,
    *,
    retry_failed: bool,
    prune_missing: bool,
    check_outputs: bool = True,
    window: int | None = None,
) -> Resume:
    """Read ``out_uri``'s commit record and decide what a run does: the files to do, and the totals of the
    rows kept of inputs still there. Rows are removed from the record (and outputs deleted) as
    :mod:`batchsep.pipeline.enhance.outfolder` describes: duplicates, missing outputs (one listing of ``out_uri``;
    ``check_outputs=False`` trusts the record), changed inputs, gone inputs with ``prune_missing``, failed
    rows with ``retry_failed``.

    The record is read window by window (:mod:`batchsep.pipeline.enhance.resume_index`: about ``window``
    rows at a time, :data:`~batchsep.pipeline.enhance.resume_index.WINDOW_ROWS` by default): what is held
    besides one window is a bit per listed input, OUT's listing as 8 bytes a file, and the row numbers of
    the rows to remove (removed at the end, each record file rewritten once)."""
    with resume_index.RecordWindows(out_uri) as reader:
        resume = Resume(todo=pa.array([], pa.bool_()))
        if reader.rows == 0:
            resume.todo = pa.array(np.ones(listing.num_rows, bool))
            return resume
        outputs = resume_index.OutputSet(out_uri) if check_outputs else None
        drops = record.RowDrops()
        todo: list[pa.Array] = []
        top = -1
        for start, end, rows in resume_index.windows(
            listing, reader, window or resume_index.WINDOW_ROWS
        ):
            here = listing.slice(start, end - start)
            shards = pc.max(rows.column("shard")).as_py() if rows.num_rows else None
            top = max(top, shards if shards is not None else -1)
            kept = _plan_window(
                resume, drops, out_uri, rows, here, outputs, retry_failed, prune_missing
            )
            todo.append(
                pc.invert(pc.is_in(here.column("rel_path"), value_set=kept.column("rel_path")))
            )
            del rows, kept
    drops.apply()  # the files closed: each rewritten once
    resume.next_shard = top + 1
    resume.todo = pa.concat_arrays([t.combine_chunks() if isinstance(t, pa.ChunkedArray) else t
                                    for t in todo]) if todo else pa.array([], pa.bool_())  # fmt: skip
    resume.errors.sort()
    return resume


def _plan_window(
    resume: Resume,
    drops: record.RowDrops,
    out_uri: str,
    rows: pa.Table,
    listed: pa.Table,
    outputs: resume_index.OutputSet | None,
    retry_failed: bool,
    prune_missing: bool,
) -> pa.Table:
    """:func:`plan_resume` on the record's ``rows`` of one window of the listing (``listed``): the counts
    added to ``resume``, the rows to remove added to ``drops``; returns the rows kept."""
    index, superseded = record.split_newest(rows)
    resume.rows_repaired += drops.add(superseded)
    del superseded
    rels = listed.column("rel_path")
    if index.num_rows:
        if outputs is not None:
            index, n = _forget(drops, index, outputs.missing_mask(index))
            resume.outputs_missing += n
        changed = record.changed_inputs_mask(index, listed)
        record.delete_outputs(
            out_uri, index.filter(changed)
        )  # another input's: the new one replaces it
        index, n = _forget(drops, index, changed)
        resume.inputs_changed += n
        present = pc.is_in(index.column("rel_path"), value_set=rels)
        gone = index.num_rows - int(pc.sum(present).as_py() or 0)
        resume.inputs_gone += gone
        if prune_missing and gone:
            missing = pc.invert(present)
            record.delete_outputs(out_uri, index.filter(missing))
            index, _n = _forget(drops, index, missing)
        if retry_failed:
            present = pc.is_in(index.column("rel_path"), value_set=rels)
            failed = pc.and_(pc.not_equal(index.column("status"), schemas.STATUS_OK), present)
            index, n = _forget(drops, index, failed)
            resume.failed_retried += n
    _count(resume, index.filter(pc.is_in(index.column("rel_path"), value_set=rels)))
    return index


def _forget(
    drops: record.RowDrops, index: pa.Table, mask: pa.Array | pa.ChunkedArray
) -> tuple[pa.Table, int]:
    """``index`` without the rows where ``mask`` holds, those noted in ``drops`` for removal from the
    record: their files are no longer done, so the run does them again, each once."""
    mask = pc.fill_null(mask, False)
    n = drops.add(index.filter(mask))
    return (index.filter(pc.invert(mask)) if n else index), n


def _count(resume: Resume, rows: pa.Table) -> None:
    """Add the totals of the committed ``rows`` (as :meth:`EnhanceSummary.count`)."""
    ok = pc.equal(rows.column("status"), schemas.STATUS_OK)
    good, bad = rows.filter(ok), rows.filter(pc.invert(ok))
    resume.files_ok += good.num_rows
    resume.files_failed += bad.num_rows
    resume.hours += (
        float(pc.sum(pc.fill_null(good.column("duration_s"), 0.0)).as_py() or 0.0) / 3600.0
    )
    resume.processing_s += float(pc.sum(pc.fill_null(good.column("t_total_s"), 0.0)).as_py() or 0.0)
    resume.errors += list(
        zip(bad.column("rel_path").to_pylist(), bad.column("error").to_pylist(), strict=True)
    )


@dataclass
class Batch:
    """Shards dispatched together, and what committing them needs: each shard's files as listed (their
    size and modification time for the commit stamp), as an Arrow table until the shard is committed."""

    tasks: list[ShardTask]
    listed: dict[int, pa.Table]
    _by_shard: dict[int, ShardTask] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_shard = {t.shard: t for t in self.tasks}

    @property
    def files(self) -> int:
        return sum(len(t.files) for t in self.tasks)

    def task(self, shard: int) -> ShardTask:
        return self._by_shard[shard]

    def entries(self, shard: int) -> dict[str, FileEntry]:
        """The listed identity of shard ``shard``'s files, by relative path (once: it is then dropped)."""
        table = self.listed.pop(shard, None)
        if table is None:
            return {}
        return {
            rel: FileEntry(uri, rel, size, mtime)
            for uri, rel, size, mtime in zip(*(table.column(c).to_pylist() for c in
                                               ("uri", "rel_path", "size", "mtime_ns")), strict=True)
        }  # fmt: skip


def _name_key(rel: str) -> str:
    """Inputs whose outputs could share a name share this key (their folder and the name up to its first
    dot), and inputs of one key are consecutive in a listing sorted by path: output names are decided
    window by window (see :func:`~batchsep.pipeline.enhance.outfolder.output_rel_paths`)."""
    folder, _sep, name = rel.rpartition("/")
    return f"{folder}/{name.split('.', 1)[0]}"


def batches(
    listing: pa.Table,
    todo: pa.Array,
    out_uri: str,
    fmt: str,
    *,
    shard_size: int,
    first_shard: int,
    dispatch_files: int = DISPATCH_FILES,
    window: int = LISTING_WINDOW,
) -> Iterator[Batch]:
    """The files to do (``todo``) of the sorted ``listing``, in batches of shards of ``shard_size`` files
    (numbered from ``first_shard``) of about ``dispatch_files`` files, formed as they are asked for."""
    n = listing.num_rows
    rel_col = listing.column("rel_path")
    shard = first_shard
    pending: list[tuple[str, str, str]] = []
    pending_rows: list[pa.Table] = []

    def cut() -> Batch:
        nonlocal shard, pending, pending_rows
        rows = pa.concat_tables(pending_rows)  # slices of it: no copy
        tasks, listed = [], {}
        for k, start in enumerate(range(0, len(pending), shard_size)):
            tasks.append(ShardTask(shard + k, tuple(pending[start : start + shard_size])))
            listed[shard + k] = rows.slice(start, shard_size)
        shard += len(tasks)
        pending, pending_rows = [], []
        return Batch(tasks, listed)

    start = 0
    while start < n:
        end = min(start + window, n)
        while end < n and _name_key(rel_col[end - 1].as_py()) == _name_key(rel_col[end].as_py()):
            end += 1
        chunk = listing.slice(start, end - start)
        names = output_rel_paths(chunk.column("rel_path").to_pylist(), fmt)
        todo_rows = chunk.filter(todo.slice(start, end - start))
        rels = todo_rows.column("rel_path").to_pylist()
        uris = todo_rows.column("uri").to_pylist()
        pending.extend(
            (uri, rel, storage.join(out_uri, names[rel]))
            for uri, rel in zip(uris, rels, strict=True)
        )
        pending_rows.append(todo_rows)
        del names, rels, uris
        start = end
        if len(pending) >= dispatch_files:
            yield cut()
    if pending:
        yield cut()
