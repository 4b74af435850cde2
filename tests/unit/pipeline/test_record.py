"""The commit record's index and compaction (batchsep.pipeline.enhance.record): newest row per file, rows removed
from the right files, compaction idempotent and crash-safe, readable by pandas at every step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from batchsep.io import parquet, schemas
from batchsep.pipeline.enhance import record
from batchsep.pipeline.enhance.outfolder import committed_rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _row(rel: str, *, at: int, status: str = "ok", shard: int = 0) -> dict:
    return {
        "input_uri": f"/in/{rel}", "rel_path": rel, "output_uri": f"/out/{rel}", "status": status,
        "error": None if status == "ok" else "bad", "duration_s": 1.0, "t_total_s": 0.1,
        "shard": shard, "run_id": "r", "committed_at": T0 + timedelta(seconds=at),
    }  # fmt: skip


def _part(out: Path, name: str, rows: list[dict]) -> None:
    parquet.write_table(
        str(out / "results" / name), schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS)
    )


def _names(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "results").iterdir())


def test_newest_row_per_file_and_superseded(tmp_path):
    _part(tmp_path, "part-a-00000.parquet", [_row("x.wav", at=1), _row("y.wav", at=1)])
    _part(tmp_path, "part-b-00001.parquet", [_row("x.wav", at=2, status="error")])
    newest, old = record.read_index(str(tmp_path))
    got = dict(zip(newest.column("rel_path").to_pylist(), newest.column("status").to_pylist()))
    assert got == {"x.wav": "error", "y.wav": "ok"}
    assert old.column("rel_path").to_pylist() == ["x.wav"]
    assert record.drop_rows(old) == 1
    assert [r["rel_path"] for r in pa.Table.to_pylist(parquet.read_table(str(tmp_path / "results" / "part-a-00000.parquet")))] == ["y.wav"]  # fmt: skip
    newest, old = record.read_index(str(tmp_path))
    assert (newest.num_rows, old.num_rows) == (2, 0)


def test_rows_without_a_commit_time_are_older(tmp_path):
    legacy = {**_row("x.wav", at=0), "committed_at": None, "status": "error"}
    _part(tmp_path, "part-00007.parquet", [legacy])
    _part(tmp_path, "part-a-00000.parquet", [_row("x.wav", at=0)])
    newest, old = record.read_index(str(tmp_path))
    assert newest.column("status").to_pylist() == ["ok"]
    assert old.column("status").to_pylist() == ["error"]


def test_compaction_merges_parts_and_is_idempotent(tmp_path):
    rows = [_row(f"f{i:03d}.wav", at=i, shard=i // 4) for i in range(40)]
    for k in range(10):
        _part(tmp_path, f"part-r-{k:05d}.parquet", rows[4 * k : 4 * k + 4])
    before = committed_rows(str(tmp_path))
    assert record.compact(str(tmp_path)) == 10
    assert _names(tmp_path) == ["results-000000.parquet"]
    assert committed_rows(str(tmp_path)) == before
    assert record.compact(str(tmp_path)) == 0  # nothing left to merge: a no-op
    assert _names(tmp_path) == ["results-000000.parquet"]
    # readable as a dataset by pandas (and so duckdb, Ray Data) with one row per file
    df = pd.read_parquet(tmp_path / "results")
    assert len(df) == 40 and df["rel_path"].is_unique
    # a later run's parts, then compaction again: the small compacted file is merged with them
    _part(tmp_path, "part-s-00000.parquet", [_row("f000.wav", at=100, status="error")])
    assert record.compact(str(tmp_path)) == 2
    assert _names(tmp_path) == ["results-000001.parquet"]
    newest, old = record.read_index(str(tmp_path))
    assert (
        newest.num_rows == 40 and old.num_rows == 1
    )  # the older row of f000 until a run repairs it
    assert newest.filter(pa.compute.equal(newest.column("rel_path"), "f000.wav")).column(
        "status"
    ).to_pylist() == ["error"]


def test_crash_between_write_and_delete_leaves_duplicates_the_newest_wins(tmp_path, monkeypatch):
    rows = [_row(f"f{i}.wav", at=i) for i in range(6)]
    for k in range(3):
        _part(tmp_path, f"part-r-{k:05d}.parquet", rows[2 * k : 2 * k + 2])

    def crash(_uris):
        raise KeyboardInterrupt  # killed after the compacted file was written, before the deletes

    monkeypatch.setattr(record.storage, "delete_many", crash)
    with pytest.raises(KeyboardInterrupt):
        record.compact(str(tmp_path))
    monkeypatch.undo()
    assert len(_names(tmp_path)) == 4  # three parts and the compacted file, every file complete
    newest, old = record.read_index(str(tmp_path))
    assert newest.num_rows == 6 and old.num_rows == 6
    assert set(pa.compute.cast(newest.column(record.FILE_KEY), pa.string()).to_pylist()) == {
        str(tmp_path / "results" / "results-000000.parquet")
    }
    record.drop_rows(old)  # what the next run does first (repair): each file once again
    assert _names(tmp_path) == ["results-000000.parquet"]
    assert sorted(r["rel_path"] for r in committed_rows(str(tmp_path))) == [
        f"f{i}.wav" for i in range(6)
    ]


def test_parts_only_leaves_compacted_files(tmp_path):
    _part(tmp_path, "results-000003.parquet", [_row("a.wav", at=0)])
    for k in range(3):
        _part(tmp_path, f"part-r-{k:05d}.parquet", [_row(f"b{k}.wav", at=k)])
    assert record.compact(str(tmp_path), parts_only=True, min_files=3) == 3
    assert _names(tmp_path) == ["results-000003.parquet", "results-000004.parquet"]
    assert record.compact_at_end(str(tmp_path)) == 2  # compacted before: merged at the end of a run
    assert _names(tmp_path) == ["results-000005.parquet"]


def test_small_record_keeps_its_parts(tmp_path):
    for k in range(3):
        _part(tmp_path, f"part-r-{k:05d}.parquet", [_row(f"b{k}.wav", at=k)])
    assert record.compact_at_end(str(tmp_path)) == 0
    assert len(_names(tmp_path)) == 3


def test_old_parts_without_new_columns_read_as_null(tmp_path):
    table = pa.table({"input_uri": ["/in/a.wav"], "rel_path": ["a.wav"], "status": ["ok"],
                      "output_uri": ["/out/a.wav"], "shard": [0]})  # fmt: skip
    parquet.write_table(str(tmp_path / "results" / "part-00000.parquet"), table)
    newest, _ = record.read_index(str(tmp_path))
    assert newest.column("committed_at").to_pylist() == [None]
    assert newest.column("input_size").to_pylist() == [None]
