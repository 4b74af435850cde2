"""Inputs are identified by content (size and modification time), not only by name: replaced, added and
deleted inputs between runs give the right outputs and counts. Real audio, real processes."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from batchsep.io import parquet, schemas, storage
from batchsep.pipeline.enhance.driver import enhance
from batchsep.pipeline.enhance.outfolder import committed_rows

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture
def noisy(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "pairs" / "voicebank_demand" / "noisy").glob("*.flac"))
    assert len(files) >= 6
    return files


def _run(root: Path, out: Path, model_uri: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "batchsep.cli.main", "enhance", str(root), str(out),
        "--model", model_uri, "--local", "--no-emotion", *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _raw_rows(out: Path) -> list[dict]:
    return [
        r
        for p in sorted((out / "results").glob("part-*.parquet"))
        for r in pq.read_table(p).to_pylist()
    ]


def test_replaced_added_and_deleted_inputs(noisy, tmp_path, model_uri):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    for f in noisy[:4]:  # a.flac .. d.flac
        shutil.copy(f, root / f"{'abcd'[noisy.index(f)]}.flac")
    r = _run(root, out, model_uri)
    assert r.returncode == 0, r.stderr
    assert "enhanced 4 files: 4 ok, 0 failed (0 already done)" in r.stdout
    first = {x["rel_path"]: x for x in committed_rows(str(out))}
    # b replaced by other audio (another length), e added, d deleted
    shutil.copy(noisy[4], root / "b.flac")
    shutil.copy(noisy[5], root / "e.flac")
    (root / "d.flac").unlink()
    r = _run(root, out, model_uri)
    assert r.returncode == 0, r.stderr
    assert (
        "enhanced 4 files: 4 ok, 0 failed (2 already done)" in r.stdout
    )  # a, b, c, e: d not counted
    assert "1 file changed since an earlier run: done again" in r.stdout
    assert "1 input no longer present: their rows kept, not counted above" in r.stdout
    # the output of b is the new input's
    assert sf.info(out / "b.wav").frames == sf.info(noisy[4]).frames != sf.info(noisy[1]).frames
    assert sf.info(out / "e.wav").frames == sf.info(noisy[5]).frames
    rows = {x["rel_path"]: x for x in committed_rows(str(out))}
    assert sorted(rows) == ["a.flac", "b.flac", "c.flac", "d.flac", "e.flac"]  # d's row kept
    assert rows["b.flac"]["input_size"] == (root / "b.flac").stat().st_size
    assert rows["b.flac"]["input_mtime_ns"] == (root / "b.flac").stat().st_mtime_ns
    assert rows["b.flac"]["duration_s"] == pytest.approx(sf.info(noisy[4]).duration)
    assert rows["a.flac"]["committed_at"] == first["a.flac"]["committed_at"]  # not redone
    assert rows["d.flac"] == first["d.flac"] and (out / "d.wav").exists()
    assert sorted(x["rel_path"] for x in _raw_rows(out)) == sorted(rows)  # one row per file on disk
    # nothing changed: nothing done; d still reported
    r = _run(root, out, model_uri)
    assert r.returncode == 0, r.stderr
    assert "enhanced 4 files: 4 ok, 0 failed (4 already done)" in r.stdout
    assert "this run: nothing new" in r.stdout and "changed since" not in r.stdout
    assert "1 input no longer present" in r.stdout
    # --prune-missing: d's row and output go
    r = _run(root, out, model_uri, "--prune-missing")
    assert r.returncode == 0, r.stderr
    assert "1 input no longer present: their rows and outputs removed (--prune-missing)" in r.stdout
    assert sorted(x["rel_path"] for x in committed_rows(str(out))) == [
        "a.flac",
        "b.flac",
        "c.flac",
        "e.flac",
    ]
    assert not (out / "d.wav").exists()
    r = _run(root, out, model_uri)
    assert r.returncode == 0 and "no longer present" not in r.stdout
    assert not [p for p in out.rglob("*") if p.name.startswith(storage.TMP_PREFIX)]


def test_same_size_new_time_is_redone_and_rows_from_before_are_kept(noisy, tmp_path, model_uri):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    for f in noisy[:3]:
        shutil.copy(f, root / f.name)
    s = enhance(str(root), str(out), model=model_uri)
    assert s.files_ok == 3
    # rewritten in place with the same bytes but a new time (a re-export): redone, as it may differ
    p = root / noisy[0].name
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    s = enhance(str(root), str(out), model=model_uri)
    assert (s.inputs_changed, s.files_run, s.files_ok, s.files_skipped) == (1, 1, 3, 2)
    # rows written before inputs were identified: no size or time, so taken as unchanged (an upgrade
    # does not redo a whole corpus)
    results = str(out / "results")
    rows = [
        {**r, "input_size": None, "input_mtime_ns": None, "run_id": None, "committed_at": None}
        for r in committed_rows(str(out))
    ]
    for part in (out / "results").glob("part-*.parquet"):
        part.unlink()
    parquet.write_table(
        parquet.part_uri(results, 0), schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS)
    )
    for f in root.iterdir():
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10_000_000_000))
    s = enhance(str(root), str(out), model=model_uri)
    assert (s.inputs_changed, s.files_run, s.files_ok, s.files_skipped) == (0, 0, 3, 3)


def test_input_replaced_by_a_broken_file_gets_an_error_row_and_no_stale_output(
    noisy, tmp_path, model_uri
):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    for f in noisy[:2]:
        shutil.copy(f, root / f.name)
    assert enhance(str(root), str(out), model=model_uri).files_ok == 2
    broken = root / noisy[0].name
    broken.write_bytes(noisy[0].read_bytes()[:300])
    s = enhance(str(root), str(out), model=model_uri)
    assert (s.inputs_changed, s.files_ok, s.files_failed) == (1, 1, 1)
    rows = {r["rel_path"]: r for r in committed_rows(str(out))}
    assert rows[noisy[0].name]["status"] == "error"
    # the old output was of other audio: it is not left next to an error row
    assert not (out / (noisy[0].stem + ".wav")).exists()
    assert (out / (noisy[1].stem + ".wav")).exists()


def test_changed_and_deleted_objects_on_s3(noisy, model_uri, s3_env):
    """On S3 an object's identity is its size and LastModified (pyarrow exposes no ETag)."""
    src, out = f"{s3_env}/in", f"{s3_env}/out"
    for f in noisy[:3]:
        storage.write_bytes(f"{src}/{f.name}", f.read_bytes())
    s = enhance(src, out, model=model_uri)
    assert s.files_ok == 3
    rows = {r["rel_path"]: r for r in committed_rows(out)}
    assert rows[noisy[0].name]["input_size"] == noisy[0].stat().st_size
    assert rows[noisy[0].name]["input_mtime_ns"] is not None
    storage.write_bytes(f"{src}/{noisy[0].name}", noisy[4].read_bytes())  # replaced: other audio
    storage.delete(f"{src}/{noisy[2].name}")
    s = enhance(src, out, model=model_uri)
    assert (s.inputs_changed, s.inputs_gone, s.files_run, s.files_ok) == (1, 1, 1, 2)
    y, _sr = sf.read(io.BytesIO(storage.read_bytes(f"{out}/{noisy[0].stem}.wav")))
    assert len(y) == sf.info(noisy[4]).frames
    s = enhance(src, out, model=model_uri, prune_missing=True)
    assert (s.inputs_gone, s.files_run, s.files_ok) == (1, 0, 2)
    assert not storage.exists(f"{out}/{noisy[2].stem}.wav")
    assert sorted(r["rel_path"] for r in committed_rows(out)) == sorted(f.name for f in noisy[:2])
