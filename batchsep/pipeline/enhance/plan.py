"""Planning an enhance run in bounded memory: the resume read from the commit record's index, and the shards
formed from the input listing as they are dispatched.

The driver holds the input listing as one Arrow table (:data:`~batchsep.pipeline.scan.driver.LISTING`), the index of
the commit record (:mod:`batchsep.pipeline.enhance.record`) while it plans, and a bit per input (to do or done).
Python objects per file exist only for the files of the batch of shards being dispatched
(:data:`DISPATCH_FILES`): their tasks (input, relative path, output); their listed identity (for the commit
stamp) stays an Arrow table per shard until the shard is committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from batchsep.io import schemas, storage
from batchsep.io.storage import FileEntry
from batchsep.pipeline.enhance import record
from batchsep.pipeline.enhance.outfolder import output_rel_paths
from batchsep.pipeline.enhance.worker import ShardTask

DISPATCH_FILES = 100_000
"""Files handed to the executor at once: one Ray Data job each (its actors start once per batch, ~4 s)."""
LISTING_WINDOW = 65_536
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
) -> Resume:
    """Read ``out_uri``'s commit record and decide what a run does: the files to do, and the totals of the
    rows kept of inputs still there. Rows are removed from the record (and outputs deleted) as
    :mod:`batchsep.pipeline.enhance.outfolder` describes: duplicates, missing outputs (one listing of ``out_uri``;
    ``check_outputs=False`` trusts the record), changed inputs, gone inputs with ``prune_missing``, failed
    rows with ``retry_failed``."""
    index, superseded = record.read_index(out_uri)
    resume = Resume(todo=pa.array([], pa.bool_()))
    resume.rows_repaired = record.drop_rows(superseded)
    del superseded
    rels = listing.column("rel_path")
    if index.num_rows:
        if check_outputs:
            index, resume.outputs_missing = record.forget(
                index, record.missing_outputs_mask(out_uri, index)
            )
        changed = record.changed_inputs_mask(index, listing)
        record.delete_outputs(
            out_uri, index.filter(changed)
        )  # another input's: the new one replaces it
        index, resume.inputs_changed = record.forget(index, changed)
        present = pc.is_in(index.column("rel_path"), value_set=rels)
        resume.inputs_gone = index.num_rows - int(pc.sum(present).as_py() or 0)
        if prune_missing and resume.inputs_gone:
            gone = pc.invert(present)
            record.delete_outputs(out_uri, index.filter(gone))
            index, _n = record.forget(index, gone)
        if retry_failed:
            present = pc.is_in(index.column("rel_path"), value_set=rels)
            failed = pc.and_(pc.not_equal(index.column("status"), schemas.STATUS_OK), present)
            index, resume.failed_retried = record.forget(index, failed)
    top = pc.max(index.column("shard")).as_py() if index.num_rows else None
    resume.next_shard = int(top) + 1 if top is not None else 0
    resume.todo = pc.invert(pc.is_in(rels, value_set=index.column("rel_path"))).combine_chunks()
    _count(resume, index.filter(pc.is_in(index.column("rel_path"), value_set=rels)))
    return resume


def _count(resume: Resume, rows: pa.Table) -> None:
    """The totals of the committed ``rows`` (as :meth:`EnhanceSummary.count`)."""
    ok = pc.equal(rows.column("status"), schemas.STATUS_OK)
    good, bad = rows.filter(ok), rows.filter(pc.invert(ok))
    resume.files_ok, resume.files_failed = good.num_rows, bad.num_rows
    resume.hours = (
        float(pc.sum(pc.fill_null(good.column("duration_s"), 0.0)).as_py() or 0.0) / 3600.0
    )
    resume.processing_s = float(pc.sum(pc.fill_null(good.column("t_total_s"), 0.0)).as_py() or 0.0)
    resume.errors = list(
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
        rows = pa.concat_tables(pending_rows).combine_chunks()
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
