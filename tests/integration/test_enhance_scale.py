"""Issue #22 on a small corpus: the record compacted as a run goes, resumes that read it back, duplicates
repaired, every file exactly once; a manifest as input (locally and on S3) lists nothing."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from batchsep.errors import ParameterError
from batchsep.io import parquet, storage
from batchsep.pipeline.enhance import plan as enhance_plan
from batchsep.pipeline.enhance import record
from batchsep.pipeline.enhance.driver import enhance
from batchsep.pipeline.enhance.outfolder import committed_rows
from batchsep.pipeline.scan.driver import InputFilter, scan

N = 30


def _wav(seed: int, seconds: float = 0.1) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000,
             format="WAV", subtype="PCM_16")  # fmt: skip
    return buf.getvalue()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for i in range(N):
        folder = root / f"d{i // 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:03d}.wav").write_bytes(_wav(i))
    (root / "d0" / "f000.flac").write_bytes(_wav(99))  # a name clash across a window: f000.wav.wav
    return root


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything a big run does, at the size of this corpus: several dispatch batches, listing windows,
    compactions during the run and at its end."""
    monkeypatch.setattr(enhance_plan, "DISPATCH_FILES", 7)
    monkeypatch.setattr(enhance_plan, "LISTING_WINDOW", 4)
    monkeypatch.setattr(record, "COMPACT_PARTS", 4)
    monkeypatch.setattr(record, "COMPACT_MIN_FILES", 3)


def _forbid_listing(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """Enhance from a manifest must not list its input (OUT's one listing, on a resume, is fine)."""
    real = storage.iter_files

    def guarded(uri: str, **kwargs):
        assert not storage.normalize(uri).startswith(storage.normalize(prefix)), f"listed {uri}"
        return real(uri, **kwargs)

    monkeypatch.setattr(storage, "iter_files", guarded)
    monkeypatch.setattr(storage, "list_files", lambda uri, **kw: list(guarded(uri)))


def _rels(out: Path) -> list[str]:
    return sorted(r["rel_path"] for r in committed_rows(str(out)))


def _raw_rel_paths(out: Path) -> list[str]:
    return sorted(
        pq.read_table(out / "results", columns=["rel_path"]).column("rel_path").to_pylist()
    )


def _all_inputs(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_compaction_resume_and_duplicates_every_file_once(
    corpus, tmp_path, model_uri, small_batches
):
    out = tmp_path / "out"
    s = enhance(str(corpus), str(out), model=model_uri, shard_size=2)
    assert (s.files_ok, s.files_run, s.files_failed) == (N + 1, N + 1, 0)
    names = sorted(p.name for p in (out / "results").iterdir())
    # parts merged every 4 during the run (results-000000, -1, ...), all of them at its end
    assert len(names) == 1 and names[0].startswith("results-") and names[0] > "results-000002"
    assert _raw_rel_paths(out) == _all_inputs(corpus)  # every file exactly once, on disk too
    outputs = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    assert "d0/f000.wav.wav" in outputs and "d0/f000.flac.wav" in outputs
    assert len(outputs) == N + 1

    # a no-op resume reads the compacted record: nothing is done, nothing rewritten
    mtime = (out / "results" / names[0]).stat().st_mtime_ns
    s = enhance(str(corpus), str(out), model=model_uri, shard_size=2)
    assert (s.files_run, s.files_skipped, s.files_ok) == (0, N + 1, N + 1)
    assert (out / "results" / names[0]).stat().st_mtime_ns == mtime

    # duplicates (a compaction killed before it deleted its sources) and a lost output
    shutil.copy(out / "results" / names[0], out / "results" / "part-x-00000.parquet")
    (out / "d1" / "f012.wav").unlink()
    s = enhance(str(corpus), str(out), model=model_uri, shard_size=2)
    assert (s.rows_repaired, s.outputs_missing, s.files_run, s.files_ok) == (N + 1, 1, 1, N + 1)
    assert _raw_rel_paths(out) == _all_inputs(corpus)
    assert (out / "d1" / "f012.wav").exists()


def test_manifest_as_input_lists_nothing(corpus, tmp_path, model_uri, monkeypatch):
    run = tmp_path / "run"
    scan(str(corpus), str(run))
    manifest = str(run / "manifest.parquet")

    _forbid_listing(monkeypatch, str(corpus))
    out = tmp_path / "out"
    where = InputFilter(glob="d1/*", min_duration_s=0.05)
    s = enhance(manifest, str(out), model=model_uri, where=where)
    assert s.files_ok == 10
    assert _rels(out) == [f"d1/f{i:03d}.wav" for i in range(10, 20)]
    with pytest.raises(ParameterError, match="duration"):
        enhance(str(corpus), str(tmp_path / "o2"), model=model_uri, where=where)
    # any Parquet with a uri column: paths below the URIs' common folder
    listing = tmp_path / "list.parquet"
    pq.write_table(pa.table({"uri": [str(corpus / "d2" / "f021.wav"), str(corpus / "d2" / "f022.wav")]}),
                   listing)  # fmt: skip
    s = enhance(str(listing), str(tmp_path / "o3"), model=model_uri)
    assert _rels(tmp_path / "o3") == ["f021.wav", "f022.wav"]
    with pytest.raises(ParameterError, match="'uri' column"):
        pq.write_table(pa.table({"path": ["x"]}), tmp_path / "bad.parquet")
        enhance(str(tmp_path / "bad.parquet"), str(tmp_path / "o4"), model=model_uri)


@pytest.mark.s3
def test_manifest_as_input_on_s3(corpus, s3_env, model_uri, monkeypatch):
    for p in sorted(corpus.rglob("*.wav"))[:6]:
        storage.write_bytes(f"{s3_env}/in/{p.relative_to(corpus)}", p.read_bytes())
    scan(f"{s3_env}/in", f"{s3_env}/run")
    _forbid_listing(monkeypatch, f"{s3_env}/in")
    s = enhance(f"{s3_env}/run/manifest.parquet", f"{s3_env}/out", model=model_uri, shard_size=2)
    assert s.files_ok == 6
    rows = committed_rows(f"{s3_env}/out")
    assert all(r["output_uri"].startswith(f"{s3_env}/out/") for r in rows)
    assert all(r["input_size"] and r["input_size"] > 0 for r in rows)
    s = enhance(f"{s3_env}/run/manifest.parquet", f"{s3_env}/out", model=model_uri)
    assert (s.files_run, s.files_ok) == (0, 6)
    assert parquet.read_parts(f"{s3_env}/out/results").num_rows == 6


@pytest.mark.heavy
def test_scale_bench_200k_files(tmp_path):
    """Issue #22's criteria, with bench/scale.py (minutes): from 20 000 to 200 000 files the driver's peak
    grows by < 100 MB, a no-op resume of 200 000 takes <= 10 s, at most 1 results file per 10 000 files."""
    import json
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[2] / "bench" / "scale.py"

    def run(n: int) -> dict[str, dict]:
        cmd = [sys.executable, str(bench), "--files", str(n), "--executor", "copy",
               "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / f"out{n}")]  # fmt: skip
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600)
        rows = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
        return {r["phase"]: r for r in rows}

    small, big = run(20_000), run(200_000)
    assert big["full"]["files"] == 200_000 and big["full"]["failed"] == 0
    assert big["full"]["peak_rss_mb"] - small["full"]["peak_rss_mb"] < 100
    assert big["resume"]["files_run"] == 0 and big["resume"]["wall_s"] <= 10
    assert big["resume"]["result_files"] <= 20
