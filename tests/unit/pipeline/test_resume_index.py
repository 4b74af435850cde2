"""A resume planned window by window (batchsep.pipeline.enhance.resume_index, plan.plan_resume): every listed
input and every record row in exactly one window whatever the record's order, the same plan whatever the
window, row groups read only where their range of paths meets the window, rows removed streamed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from parts_helpers import read_parts

from batchsep.io import parquet, schemas
from batchsep.pipeline.enhance import record, resume_index
from batchsep.pipeline.enhance.plan import plan_resume
from batchsep.pipeline.scan.driver import LISTING

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _row(out: Path, rel: str, *, at: int = 1, status: str = "ok", size: int = 10) -> dict:
    return {
        "input_uri": f"/in/{rel}", "rel_path": rel, "output_uri": str(out / rel), "status": status,
        "error": None if status == "ok" else f"bad {rel}", "duration_s": 2.0, "t_total_s": 0.5,
        "shard": at, "run_id": "r", "committed_at": T0 + timedelta(seconds=at),
        "input_size": size, "input_mtime_ns": 5,
    }  # fmt: skip


def _write(out: Path, name: str, rows: list[dict], row_group_size: int | None = None) -> None:
    table = schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS)
    (out / "results").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "results" / name, row_group_size=row_group_size)


def _listing(rels: list[str], size: int = 10) -> pa.Table:
    rels = sorted(rels)
    return pa.table(
        [[f"/in/{r}" for r in rels], rels, [size] * len(rels), [5] * len(rels)], schema=LISTING
    )


def _rels(n: int) -> list[str]:
    return [f"d{i // 7}/f{i:04d}.wav" for i in range(n)]


def test_windows_hold_every_row_once_whatever_the_record_order(tmp_path):
    rels = _rels(60)
    shuffled = [*rels[:50], "zz/gone.wav", "a/gone.wav"]  # two rows of inputs no longer listed
    random.Random(0).shuffle(shuffled)
    _write(tmp_path, "results-000000.parquet", [_row(tmp_path, r) for r in shuffled], 5)
    _write(tmp_path, "part-x-00001.parquet", [_row(tmp_path, r, at=2) for r in rels[50:55]])
    listing = _listing(rels)
    reader = resume_index.RecordWindows(str(tmp_path))
    assert reader.rows == 57 and len(reader.groups) == 12
    seen_listing, seen_record = [], []
    for start, end, rows in resume_index.windows(listing, reader, window=8):
        here = listing.column("rel_path").slice(start, end - start).to_pylist()
        seen_listing += here
        got = rows.column("rel_path").to_pylist()
        seen_record += got
        assert all(r in here for r in got if "gone" not in r)  # a row lies in its input's window
    assert seen_listing == sorted(rels)
    assert sorted(seen_record) == sorted(shuffled + rels[50:55])


def test_sorted_record_reads_each_row_group_about_once(tmp_path):
    rels = sorted(_rels(400))
    _write(tmp_path, "results-000000.parquet", [_row(tmp_path, r) for r in rels], 20)
    reader = resume_index.RecordWindows(str(tmp_path))
    n_windows = sum(1 for _ in resume_index.windows(_listing(rels), reader, window=50))
    assert n_windows >= 8
    # a window reads only the groups its range meets: each group once, a few twice (at the cuts)
    assert reader.groups_read <= len(reader.groups) + n_windows


def _setup_resume(out: Path) -> pa.Table:
    """A record with every case a resume handles: duplicates, a missing output, a changed input, a gone
    input, failed rows; returns the listing."""
    rels = _rels(40)
    rows = [_row(out, r, status="error" if i % 9 == 0 else "ok") for i, r in enumerate(rels[:30])]
    rows.append(_row(out, "d9/gone.wav"))
    random.Random(1).shuffle(rows)
    _write(out, "results-000000.parquet", rows, 4)
    _write(out, "part-y-00003.parquet", [_row(out, rels[3], at=9), _row(out, rels[4], at=9)])
    for r in rows:
        if r["status"] == "ok":
            Path(r["output_uri"]).parent.mkdir(parents=True, exist_ok=True)
            Path(r["output_uri"]).write_bytes(b"x")
    Path(out / rels[7]).unlink()  # a lost output
    listing = _listing(rels)
    sizes = listing.column("size").to_pylist()
    sizes[11] = 99  # a changed input
    return listing.set_column(2, "size", pa.array(sizes, pa.int64()))


@pytest.mark.parametrize("retry_failed", [False, True])
def test_same_plan_whatever_the_window(tmp_path, retry_failed):
    plans, records = [], []
    for window in (2, 5, 1_000_000):
        out = tmp_path / f"w{window}"
        listing = _setup_resume(out)
        p = plan_resume(
            str(out), listing, retry_failed=retry_failed, prune_missing=True, window=window
        )
        plans.append(
            (
                p.todo.to_pylist(), p.next_shard, p.outputs_missing, p.inputs_changed,
                p.inputs_gone, p.failed_retried, p.rows_repaired, p.files_ok, p.files_failed,
                round(p.hours, 9), p.processing_s, p.errors,
            )
        )  # fmt: skip
        table = read_parts(str(out / "results"))
        records.append(sorted(table.column("rel_path").to_pylist()))
    assert plans[0] == plans[1] == plans[2]
    todo, _next, missing, changed, gone, retried, repaired, ok, failed, *_ = plans[0]
    assert (missing, changed, gone, repaired) == (1, 1, 1, 2)
    assert retried == (4 if retry_failed else 0)
    assert ok == 30 - 4 - 2 and failed == (0 if retry_failed else 4)
    assert sum(todo) == 10 + 2 + retried  # never done, the lost output, the changed input, retried
    assert records[0] == records[1] == records[2]
    assert (
        len(records[0]) == len(set(records[0])) == 30 - 2 - retried
    )  # each file once, gone pruned


def test_rows_removed_streamed_across_batches(tmp_path):
    """RowDrops.apply rewrites a file a batch at a time: row numbers hold across batches."""
    _write(tmp_path, "results-000000.parquet", [_row(tmp_path, r) for r in _rels(10)], 3)
    uri = str(tmp_path / "results" / "results-000000.parquet")
    record._rewrite_without(uri, np.array([0, 4, 5, 9]), batch_rows=3)
    kept = parquet.read_table(uri).column("rel_path").to_pylist()
    assert kept == [r for i, r in enumerate(_rels(10)) if i not in (0, 4, 5, 9)]
    record._rewrite_without(uri, np.arange(6))  # every row: the file goes
    assert not Path(uri).exists()


def test_output_set_finds_missing_outputs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(b"x")
    outputs = resume_index.OutputSet(str(tmp_path))
    index = pa.table(
        {
            "status": ["ok", "ok", "error", "ok"],
            "output_uri": [str(tmp_path / "a/x.wav"), str(tmp_path / "a/y.wav"), None,
                           str(tmp_path / "a/x.wav") + "/"],
        }
    )  # fmt: skip
    assert outputs.missing_mask(index).to_pylist() == [False, True, False, False]
