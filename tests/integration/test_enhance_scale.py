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
from parts_helpers import read_parts

from batchsep.errors import ParameterError
from batchsep.io import listing, storage
from batchsep.pipeline.enhance import plan as enhance_plan
from batchsep.pipeline.enhance import record
from batchsep.pipeline.enhance.driver import enhance
from batchsep.pipeline.enhance.outfolder import committed_rows
from batchsep.pipeline.enhance.worker import serial_executor
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


def _record_listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every folder or prefix listed from now on, as normalized URIs: the functions of ``io/listing.py``
    wrapped, the only place where batchsep lists (``FileSelector``, ``os.scandir``)."""
    listed: list[str] = []
    for name in ("_walk_s3", "_list_s3", "_walk_local"):
        real = getattr(listing, name)

        def counted(uri: str, *args, _real=real, **kwargs):  # type: ignore[no-untyped-def]
            listed.append(storage.normalize(uri))
            return _real(uri, *args, **kwargs)

        monkeypatch.setattr(listing, name, counted)
    return listed


def _under(listed: list[str], prefix: str) -> list[str]:
    root = storage.normalize(prefix)
    return [u for u in listed if u == root or u.startswith(root + "/")]


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

    listed = _record_listings(monkeypatch)
    out = tmp_path / "out"
    where = InputFilter(glob="d1/*", min_duration_s=0.05)
    s = enhance(manifest, str(out), model=model_uri, where=where)
    assert s.files_ok == 10
    assert listed and not _under(listed, str(corpus))  # OUT's record is listed, the input never
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
def test_manifest_as_input_on_s3(corpus, s3_env, model_uri, monkeypatch, small_batches):
    """``enhance s3://.../manifest.parquet s3://.../out``: a first run stopped half-way, its resume and a
    no-op resume never list the input prefix (every listing counted in io/listing.py), compact the
    record on S3 and leave each file exactly once."""
    files = sorted(corpus.rglob("*.wav"))[:12]
    for p in files:
        storage.write_bytes(f"{s3_env}/in/{p.relative_to(corpus)}", p.read_bytes())
    scan(f"{s3_env}/in", f"{s3_env}/run")
    manifest, out = f"{s3_env}/run/manifest.parquet", f"{s3_env}/out"
    listed = _record_listings(monkeypatch)

    calls = [0]

    def stop_after_3_shards(worker_kwargs, tasks):  # type: ignore[no-untyped-def]
        for shard_id, rows in serial_executor(worker_kwargs, tasks):
            if calls[0] == 3:
                raise KeyboardInterrupt  # the job is killed: three shards are committed
            calls[0] += 1
            yield shard_id, rows

    with pytest.raises(KeyboardInterrupt):
        enhance(manifest, out, model=model_uri, shard_size=2, executor=stop_after_3_shards)
    assert read_parts(f"{out}/results").num_rows == 6
    s = enhance(manifest, out, model=model_uri, shard_size=2)
    assert (s.files_run, s.files_skipped, s.files_ok) == (6, 6, 12)
    rows = committed_rows(out)
    assert all(r["output_uri"].startswith(f"{out}/") for r in rows)
    assert all(r["input_size"] and r["input_size"] > 0 for r in rows)
    names = [e.rel_path for e in storage.list_files(f"{out}/results")]
    assert len(names) == 1 and names[0].startswith("results-")  # compacted on S3
    raw = read_parts(f"{out}/results").column("rel_path").to_pylist()
    assert sorted(raw) == sorted(str(p.relative_to(corpus)) for p in files)  # each file once
    s = enhance(manifest, out, model=model_uri)
    assert (s.files_run, s.files_ok) == (0, 12)
    assert listed and not _under(listed, f"{s3_env}/in")  # the input prefix: never listed
    assert set(listed) <= {storage.normalize(out), storage.normalize(f"{out}/results")}


BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale.py"


def _bench(*args: str) -> dict[str, dict]:
    """Run bench/scale.py with ``args``; its phases' figures by phase name."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, str(BENCH), "--executor", "copy", *args]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600)
    rows = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    return {r["phase"]: r for r in rows}


@pytest.mark.heavy
def test_scale_bench_200k_files(tmp_path):
    """Issue #22's criteria, with bench/scale.py (many minutes): from 20 000 to 200 000 files the driver's
    peak grows by < 100 MB in a first run, a first run stopped half-way, its resume and a no-op resume;
    a no-op resume of 200 000 takes <= 10 s; at most 1 results file per 10 000 files; every file once."""
    corpus = str(tmp_path / "corpus")
    runs = {}
    for n in (20_000, 200_000):
        full = _bench("--files", str(n), "--corpus", corpus, "--out", str(tmp_path / f"full{n}"))
        cut = _bench("--files", str(n), "--corpus", corpus, "--out", str(tmp_path / f"cut{n}"),
                     "--interrupt")  # fmt: skip
        runs[n] = {**full, **{f"cut-{k}": v for k, v in cut.items()}}
    small, big = runs[20_000], runs[200_000]
    for phase in ("full", "noop", "cut-partial", "cut-resume", "cut-noop"):
        assert big[phase]["peak_rss_mb"] - small[phase]["peak_rss_mb"] < 100, phase
        assert big[phase]["committed_rows"] == (100_000 if phase == "cut-partial" else 200_000)
        assert big[phase]["result_files"] <= 20 or phase == "cut-partial"
    assert big["full"]["files_run"] == 200_000 and big["full"]["failed"] == 0
    assert big["cut-partial"]["files_run"] + big["cut-resume"]["files_run"] == 200_000
    for phase in ("noop", "cut-noop"):
        assert big[phase]["files_run"] == 0 and big[phase]["wall_s"] <= 10


@pytest.mark.heavy
@pytest.mark.s3
def test_scale_bench_20k_files_on_s3(tmp_path):
    """bench/scale.py --s3 (minutes): 20 000 files from a manifest on the S3 test server into an S3 OUT,
    stopped half-way, resumed, resumed again (a no-op): every file once, a compact record, the input
    prefix never listed."""
    from s3server import find_weed

    if find_weed() is None:
        pytest.skip("no `weed` binary")
    runs = _bench("--files", "20000", "--corpus", str(tmp_path / "corpus"), "--s3", "--interrupt")
    assert runs["partial"]["committed_rows"] == 10_000
    assert runs["partial"]["files_run"] + runs["resume"]["files_run"] == 20_000
    assert runs["noop"]["files_run"] == 0 and runs["noop"]["committed_rows"] == 20_000
    assert runs["noop"]["result_files"] <= 2
    for r in runs.values():  # OUT's record and (a resume) OUT itself, never the input prefix
        assert all(u.endswith(("/out", "/out/results")) for u in r["listed"]), r["listed"]


@pytest.mark.slow
@pytest.mark.s3
def test_scale_bench_small_on_s3(tmp_path):
    """bench/scale.py --s3 --interrupt on 300 files (what the heavy tests run, small)."""
    from s3server import find_weed

    if find_weed() is None:
        pytest.skip("no `weed` binary")
    runs = _bench("--files", "300", "--corpus", str(tmp_path / "corpus"), "--s3", "--interrupt")
    assert 150 <= runs["partial"]["committed_rows"] < 300  # stopped half-way (whole shards)
    assert runs["partial"]["files_run"] + runs["resume"]["files_run"] == 300
    assert runs["resume"]["committed_rows"] == runs["noop"]["committed_rows"] == 300
    assert runs["noop"]["files_run"] == 0
    for r in runs.values():  # OUT's record and (a resume) OUT itself, never the input prefix
        assert all(u.endswith(("/out", "/out/results")) for u in r["listed"]), r["listed"]
    assert any(u.endswith("/out") for u in runs["noop"]["listed"])  # the counting works
