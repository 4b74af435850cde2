"""The enhance stage end to end: outputs, results rows, chunking, bad input, resume and kill, S3, Ray."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from parts_helpers import read_parts

from batchsep.cli.main import EXIT_FATAL, EXIT_SOME_FAILED, EXIT_USAGE, main
from batchsep.io import storage
from batchsep.io.checkpoint import write_checkpoint
from batchsep.models import build_model, serialize
from batchsep.pipeline.enhance.driver import enhance
from batchsep.pipeline.enhance.enhancer import load_enhancer
from batchsep.pipeline.enhance.file import EnhanceOptions, enhance_file
from batchsep.pipeline.enhance.outfolder import committed_rows, output_rel_paths

SR = 16000


def speechlike(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    x = env * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t))
    return (0.2 * x + 0.05 * rng.standard_normal(n)).astype(np.float32)


def make_corpus(root: Path, n: int = 6) -> None:
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        sf.write(
            root / ("sub" if i % 2 else "") / f"f{i}.wav", speechlike(1.0 + 0.1 * i, seed=i), SR
        )


def test_outputs_and_rows(tmp_path, model_uri):
    root = tmp_path / "in"
    make_corpus(root)
    sf.write(root / "stereo44k.flac", np.stack([speechlike(1.5, 44100)] * 2, axis=1), 44100)
    s = enhance(str(root), str(tmp_path / "out"), model=model_uri, shard_size=3)
    assert (s.files_ok, s.files_failed) == (7, 0)
    rows = {r["rel_path"]: r for r in committed_rows(str(tmp_path / "out"))}
    assert len(rows) == 7
    info = sf.info(tmp_path / "out" / "stereo44k.wav")
    assert (info.samplerate, info.channels, info.frames) == (44100, 1, int(1.5 * 44100))
    assert rows["stereo44k.flac"]["warning"] == "2 channels downmixed to mono"
    assert rows["f0.wav"]["warning"] is None
    for i in range(6):
        rel = ("sub/" if i % 2 else "") + f"f{i}.wav"
        assert sf.info(tmp_path / "out" / rel).frames == int((1.0 + 0.1 * i) * SR)
        assert rows[rel]["status"] == "ok" and rows[rel]["model_name"] == "lstm"
        assert len(rows[rel]["model_sha256"]) == 64
        assert rows[rel]["t_model_s"] > 0
    r = enhance(
        str(root),
        str(tmp_path / "out16"),
        model=model_uri,
        options=EnhanceOptions(out_sr=16000, fmt="flac"),
    )
    assert r.files_ok == 7
    info = sf.info(tmp_path / "out16" / "stereo44k.flac")
    assert (info.samplerate, info.frames, info.subtype) == (16000, int(1.5 * SR), "PCM_24")


def test_model_recorded_level_is_the_default(tmp_path, model_uri):
    """A model whose config.json records the level of its training mixtures (``batchsep train`` writes it)
    is run at that level by default: the same output as asking for it explicitly, not as the -26 dBFS
    fallback; job.json says which level was used."""
    import json
    import shutil

    recorded = tmp_path / "model"
    shutil.copytree(model_uri, recorded)
    meta = json.loads((recorded / "config.json").read_text())
    (recorded / "config.json").write_text(json.dumps({**meta, "input_level_db": -40.0}))
    root = tmp_path / "in"
    make_corpus(root, n=2)
    outs = {}
    levels: list[tuple[str, float | Literal["model"]]] = [
        ("default", "model"),
        ("explicit", -40.0),
        ("fallback", -26.0),
    ]
    for name, level in levels:
        s = enhance(str(root), str(tmp_path / name), model=str(recorded),
                    options=EnhanceOptions(input_level_db=level))  # fmt: skip
        assert s.files_ok == 2
        outs[name] = sf.read(tmp_path / name / "f0.wav")[0]
        job = json.loads((tmp_path / name / "job.json").read_text())
        assert job["stages"]["enhance"]["spec"]["input_level_db_used"] == (
            -40.0 if name != "fallback" else -26.0
        )
    np.testing.assert_array_equal(outs["default"], outs["explicit"])
    assert np.max(np.abs(outs["default"] - outs["fallback"])) > 1e-4


def test_output_names_never_collide():
    out = output_rel_paths(["a.wav", "a.flac", "b.flac", "c/d.ogg"], "wav")
    assert out == {
        "a.wav": "a.wav.wav",
        "a.flac": "a.flac.wav",
        "b.flac": "b.wav",
        "c/d.ogg": "c/d.wav",
    }
    assert len(set(out.values())) == 4
    # an input already named like a fallback keeps its name; the other input gets a number
    out = output_rel_paths(["a.wav", "a.flac", "a.wav.wav", "a.flac.wav", "b.wav"], "wav")
    assert out == {
        "a.wav": "a.wav~2.wav",
        "a.flac": "a.flac~2.wav",
        "a.wav.wav": "a.wav.wav",
        "a.flac.wav": "a.flac.wav",
        "b.wav": "b.wav",
    }
    assert output_rel_paths(["x.ogg", "x.opus"], "flac") == {
        "x.ogg": "x.ogg.flac", "x.opus": "x.opus.flac",
    }  # fmt: skip


def test_batch_equals_one_by_one(model_uri):
    enhancer, _, _ = load_enhancer(model_uri)
    x = np.stack([speechlike(2.0, seed=s) for s in range(3)])
    batched = enhancer(x)
    single = np.concatenate([enhancer(x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_chunked_equals_whole_for_short_files(tmp_path, model_uri):
    x = speechlike(4.0)
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    enhancer, _, _ = load_enhancer(model_uri)
    row = enhance_file(str(tmp_path / "a.wav"), str(tmp_path / "o.wav"), enhancer, EnhanceOptions())
    assert row["status"] == "ok"
    y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    whole = enhancer(x[None])[0]
    assert np.abs(y - whole).max() < 1e-4


def test_chunk_borders_are_seamless(tmp_path, model_uri):
    """Chunked output of a long file stays close to whole-file output and has no clicks at borders."""
    x = speechlike(20.0, seed=3)
    sf.write(tmp_path / "long.wav", x, SR, subtype="FLOAT")
    enhancer, _, _ = load_enhancer(model_uri)
    opts = EnhanceOptions(chunk_s=3.0, overlap_s=0.25, batch_windows=2)
    assert (
        enhance_file(str(tmp_path / "long.wav"), str(tmp_path / "o.wav"), enhancer, opts)["status"]
        == "ok"
    )
    y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    whole = enhancer(x[None])[0]
    assert y.shape == whole.shape
    rel_err = np.linalg.norm(y - whole) / np.linalg.norm(whole)
    assert rel_err < 0.05, rel_err
    # clicks: the largest sample-to-sample jump near any border is no larger than in the whole-file output
    hop = int((3.0 - 0.25) * SR)
    jump, jump_ref = np.abs(np.diff(y)), np.abs(np.diff(whole))
    for k in range(1, 7):
        lo, hi = k * hop - 200, k * hop + int(0.25 * SR) + 200
        assert jump[lo:hi].max() <= 1.2 * jump_ref[lo:hi].max() + 1e-4, k


def test_bad_input(tmp_path, model_uri, bad_corpus):
    root, expected = bad_corpus
    sf.write(root / "ten_ms.wav", speechlike(0.01), SR)
    clipped = np.clip(4 * speechlike(1.0), -1, 1)
    sf.write(root / "clipped.wav", clipped, SR)
    sf.write(root / "long_for_limit.wav", speechlike(3.0), SR)
    s = enhance(
        str(root),
        str(tmp_path / "out"),
        model=model_uri,
        shard_size=4,
        options=EnhanceOptions(max_duration_s=2.5),
    )
    rows = {r["rel_path"]: r for r in committed_rows(str(tmp_path / "out"))}
    assert len(rows) == len(expected) + 3  # one row per audio file, no duplicates
    for rel, err in expected.items():
        if err is None:
            assert rows[rel]["status"] == "ok", (rel, rows[rel]["error"])
            assert (tmp_path / "out" / output_rel_paths([rel], "wav")[rel]).exists()
        else:
            assert rows[rel]["status"] == "error" and rows[rel]["error"], rel
    assert "digital silence" in rows["silence.flac"]["warning"]
    assert "clipped" in rows["clipped.wav"]["warning"]
    assert rows["ten_ms.wav"]["status"] == "ok"
    assert sf.info(tmp_path / "out" / "ten_ms.wav").frames == 160
    assert rows["long_for_limit.wav"]["status"] == "error"
    assert "too long" in rows["long_for_limit.wav"]["error"]
    assert s.files_failed == sum(e is not None for e in expected.values()) + 1
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".batchsep-tmp")]
    assert leftovers == []


def test_resume_skips_done_and_never_duplicates(tmp_path, model_uri):
    root = tmp_path / "in"
    make_corpus(root, 8)
    out = str(tmp_path / "out")
    enhance(str(root), out, model=model_uri, shard_size=2)
    parts = sorted((tmp_path / "out" / "results").glob("part-*.parquet"))
    assert len(parts) == 4
    lost = pq.read_table(parts[1]).column("rel_path").to_pylist()
    parts[1].unlink()  # as if the driver died before committing this shard
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.wav")}
    starts, progress = [], []
    s = enhance(str(root), out, model=model_uri, shard_size=2,
                on_start=lambda phase, n: starts.append((phase, n)),
                on_progress=lambda n, sec: progress.append(n))  # fmt: skip
    assert s.files_skipped == 6 and s.files_ok == 8
    assert starts == [("enhance (6 done before)", 2)] and sum(progress) == 2  # the bar's total
    rows = committed_rows(out)
    assert sorted(r["rel_path"] for r in rows) == sorted(
        str(p.relative_to(root)) for p in root.rglob("*.wav")
    )
    redone = {p for p, m in before.items() if p.stat().st_mtime_ns != m}
    assert {str(p.relative_to(tmp_path / "out")) for p in redone} == set(lost)
    # job.json records what the last run did (for report's end-to-end speed): this run's 2 files
    last = json.loads((tmp_path / "out" / "job.json").read_text())["stages"]["enhance"]["last_run"]
    assert last["files"] == 2 and last["wall_s"] > 0
    assert last["audio_s"] == pytest.approx(s.hours_run * 3600, abs=1e-3)
    enhance(str(root), out, model=model_uri, shard_size=2)  # nothing to do: the record stays
    again = json.loads((tmp_path / "out" / "job.json").read_text())["stages"]["enhance"]
    assert again["last_run"] == last
    s = enhance(str(root), out, model=model_uri, resume=False)
    assert s.files_skipped == 0 and len(committed_rows(out)) == 8


def test_output_inside_input_is_left_out_and_input_as_output_refused(tmp_path, model_uri):
    """`batchsep enhance data data/enhanced`: a re-run must not enhance its own outputs; OUT == IN would
    replace the inputs."""
    from batchsep.errors import ParameterError

    root = tmp_path / "in"
    make_corpus(root, 3)
    out = str(root / "enhanced")
    for _ in range(2):
        s = enhance(str(root), out, model=model_uri)
        assert (s.files_ok, s.files_failed) == (3, 0)
    assert sorted(r["rel_path"] for r in committed_rows(out)) == ["f0.wav", "f2.wav", "sub/f1.wav"]
    assert not (root / "enhanced" / "enhanced").exists()
    with pytest.raises(ParameterError, match="is the input folder"):
        enhance(str(root), str(root) + "/", model=model_uri)
    r = CliRunner().invoke(main, ["enhance", str(root), str(root), "--no-emotion"])
    assert r.exit_code == EXIT_USAGE and "is the input folder" in r.output
    # the same through symbolic links: a link to IN as OUT is IN; OUT inside IN through a link is left out
    root = tmp_path / "in2"
    make_corpus(root, 3)
    (tmp_path / "link").symlink_to(root)
    inputs = {p: p.read_bytes() for p in root.rglob("*.wav")}
    with pytest.raises(ParameterError, match="is the input folder"):
        enhance(str(root), str(tmp_path / "link"), model=model_uri)
    assert {p: p.read_bytes() for p in inputs} == inputs  # no input replaced
    for _ in range(2):
        s = enhance(str(root), str(tmp_path / "link" / "enh2"), model=model_uri)
        assert (s.files_ok, s.files_failed) == (3, 0)
    assert not (root / "enh2" / "enh2").exists()


def test_resume_with_other_settings_is_refused(tmp_path, model_uri):
    """Outputs of one OUT come from one setting: resuming with another format (or model, level ...) is a
    usage error that leaves OUT and its job.json alone; --overwrite starts over with the new settings."""
    import json

    from batchsep.errors import ParameterError

    root = tmp_path / "in"
    make_corpus(root, 2)
    out = tmp_path / "out"
    enhance(str(root), str(out), model=model_uri)
    job = (out / "job.json").read_text()
    with pytest.raises(ParameterError, match=r"options\.fmt \(--format\): 'wav' -> 'flac'"):
        enhance(str(root), str(out), model=model_uri, options=EnhanceOptions(fmt="flac"))
    with pytest.raises(
        ParameterError, match=r"\(input_level_db_used \(--input-level\): -26.0 -> -40\)"
    ):
        enhance(str(root), str(out), model=model_uri, options=EnhanceOptions(input_level_db=-40))
    assert (out / "job.json").read_text() == job and not list(out.rglob("*.flac"))
    s = enhance(str(root), str(out), model=model_uri, options=EnhanceOptions(input_level_db=-26))
    assert s.files_skipped == 2  # the same level, asked for by number: resumes
    import shutil

    shutil.copytree(model_uri, tmp_path / "same-weights")
    s = enhance(str(root), str(out), model=str(tmp_path / "same-weights"))
    assert s.files_skipped == 2  # the same model by another URI (compared by checksum): resumes
    with pytest.raises(
        ParameterError,
        match=r"emotion_sha256 \(--emotion/--no-emotion, --emotion-model\): None -> ",
    ):
        enhance(str(root), str(out), model=model_uri, emotion="default-emotion")
    r = CliRunner().invoke(
        main, ["enhance", str(root), str(out), "--model", model_uri, "--format", "flac",
               "--no-emotion", "--local"],
    )  # fmt: skip
    assert r.exit_code == EXIT_USAGE and "--overwrite" in r.output
    s = enhance(str(root), str(out), model=model_uri, options=EnhanceOptions(fmt="flac"),
                resume=False)  # fmt: skip
    assert s.files_ok == 2 and len(list(out.rglob("*.flac"))) == 2
    assert not list(out.rglob("*.wav"))  # starting over removed the earlier outputs
    spec = json.loads((out / "job.json").read_text())["stages"]["enhance"]["spec"]
    assert spec["options"]["fmt"] == "flac" and len(spec["model_sha256"]) == 64


def test_lost_output_is_enhanced_again_once(tmp_path, model_uri):
    """A committed file whose output was deleted is done again by the next run: one row per file, the
    output back, the other files untouched."""
    root = tmp_path / "in"
    make_corpus(root, 4)
    out = tmp_path / "out"
    enhance(str(root), str(out), model=model_uri, shard_size=2)
    (out / "f0.wav").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    s = enhance(str(root), str(out), model=model_uri, shard_size=2)
    assert s.outputs_missing == 1 and (s.files_ok, s.files_skipped) == (4, 3)
    assert (out / "f0.wav").is_file()
    rows = committed_rows(str(out))
    assert sorted(r["rel_path"] for r in rows) == ["f0.wav", "f2.wav", "sub/f1.wav", "sub/f3.wav"]
    assert all(p.stat().st_mtime_ns == m for p, m in before.items())
    s = enhance(str(root), str(out), model=model_uri)
    assert s.outputs_missing == 0 and s.files_skipped == 4


def test_output_that_cannot_be_published_fails_its_row_only_and_can_be_retried(tmp_path, model_uri):
    """Outputs are made durable and renamed into place on a background thread (storage.DeferredWrites):
    one that cannot be renamed (its name is taken by a folder) fails its own row with the reason, before
    the shard is committed; the other files of the shard are done, and no temporary is left. A re-run keeps
    the failed row; with --retry-failed it does that file again."""
    root = tmp_path / "in"
    make_corpus(root, 4)
    out = tmp_path / "out"
    (out / "f2.wav").mkdir(parents=True)
    s = enhance(str(root), str(out), model=model_uri, shard_size=4)
    assert (s.files_ok, s.files_failed, s.files_run) == (3, 1, 4)
    rows = {r["rel_path"]: r for r in committed_rows(str(out))}
    # the run's audio is what it enhanced: not the failed file's (decoded, then not published) duration
    ok_seconds = sum(r["duration_s"] for r in rows.values() if r["status"] == "ok")
    assert rows["f2.wav"]["duration_s"] > 0 and s.hours_run * 3600 == pytest.approx(ok_seconds)
    last_run = json.loads((out / "job.json").read_text())["stages"]["enhance"]["last_run"]
    assert last_run["audio_s"] == pytest.approx(ok_seconds, abs=1e-3) and last_run["files"] == 4
    assert rows["f2.wav"]["status"] == "error" and rows["f2.wav"]["output_uri"] is None
    assert "f2.wav" in rows["f2.wav"]["error"] and "write" in rows["f2.wav"]["error"]
    for rel in ("f0.wav", "sub/f1.wav", "sub/f3.wav"):
        assert rows[rel]["status"] == "ok" and sf.info(out / rel).frames > 0
    assert not [p for p in out.rglob("*") if p.name.startswith(storage.TMP_PREFIX)]
    s = enhance(str(root), str(out), model=model_uri)  # committed, failure included: nothing redone
    assert (s.files_ok, s.files_failed, s.files_skipped, s.failed_retried) == (3, 1, 4, 0)
    assert sorted(r["rel_path"] for r in committed_rows(str(out))) == sorted(rows)
    # the cause fixed, --retry-failed does the failed file again: its row replaced, the others untouched
    (out / "f2.wav").rmdir()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    args = ["enhance", str(root), str(out), "--model", model_uri, "--no-emotion", "--local"]
    result = CliRunner().invoke(main, [*args, "--retry-failed"])
    assert result.exit_code == 0, result.output
    assert "4 ok, 0 failed (3 already done)" in result.output
    assert "1 file that failed in an earlier run: tried again" in result.output
    again = committed_rows(str(out))
    assert sorted(r["rel_path"] for r in again) == sorted(rows)
    assert all(r["status"] == "ok" for r in again) and sf.info(out / "f2.wav").frames > 0
    assert all(p.stat().st_mtime_ns == m for p, m in before.items())
    s = enhance(
        str(root), str(out), model=model_uri, retry_failed=True
    )  # nothing failed: nothing to do
    assert (s.files_ok, s.files_failed, s.files_skipped, s.failed_retried) == (4, 0, 4, 0)


def test_background_publishing_writes_what_publishing_in_line_writes(tmp_path, model_uri):
    """defer_writes=False (each output published before the next file; bench/enhance_s3.py's baseline)
    and the default background publishing give the same files and the same rows."""
    from batchsep.pipeline.enhance.worker import serial_executor

    root = tmp_path / "in"
    make_corpus(root, 4)

    def in_line(kw, tasks):
        return serial_executor({**kw, "defer_writes": False}, tasks)

    enhance(str(root), str(tmp_path / "a"), model=model_uri, shard_size=2)
    enhance(str(root), str(tmp_path / "b"), model=model_uri, shard_size=2, executor=in_line)
    for rel in ("f0.wav", "sub/f1.wav", "f2.wav", "sub/f3.wav"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    keys = ("rel_path", "status", "duration_s", "sample_rate", "shard")
    rows = [
        sorted(tuple(r[k] for k in keys) for r in committed_rows(str(tmp_path / d))) for d in "ab"
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 4


def test_retry_failed_keeps_the_row_of_a_deleted_input_and_cli_says_what_was_tried(
    tmp_path, model_uri
):
    """--retry-failed tries again only failed files still in IN (the row of a deleted input stays, as its
    record, but is no longer counted); a run whose files all failed says so instead of "nothing new"."""
    root = tmp_path / "in"
    make_corpus(root, 2)
    (root / "empty.wav").write_bytes(b"")
    out = tmp_path / "out"
    args = ["enhance", str(root), str(out), "--model", model_uri, "--no-emotion", "--local"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == EXIT_SOME_FAILED and "enhanced 3 files: 2 ok, 1 failed" in r.output
    (root / "empty.wav").unlink()
    s = enhance(str(root), str(out), model=model_uri, retry_failed=True)
    assert (s.failed_retried, s.files_run, s.files_failed, s.inputs_gone) == (0, 0, 0, 1)
    assert [r["rel_path"] for r in committed_rows(str(out)) if r["status"] == "error"] == [
        "empty.wav"
    ]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.wav").write_bytes((root / "f0.wav").read_bytes()[:2000])
    r = CliRunner().invoke(main, ["enhance", str(bad), str(tmp_path / "o2"), *args[3:]])
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    assert (
        "enhanced 1 file: 0 ok, 1 failed" in r.output
        and "this run: 1 file tried, none enhanced" in r.output
    )


def test_cli_reports_skipped_names_empty_input_and_file_as_output(tmp_path, model_uri):
    root = tmp_path / "in"
    make_corpus(root, 1)
    sf.write(root / "f0.flac", speechlike(0.5), SR)  # same stem as f0.wav
    (root / "notes.txt").write_text("not audio")
    cli = CliRunner()
    args = ["--model", model_uri, "--no-emotion", "--local"]
    r = cli.invoke(main, ["enhance", str(root), str(tmp_path / "o"), *args])
    assert r.exit_code == 0 and "1 file skipped: not audio (by name)" in r.output, r.output
    assert "model input level: -26 dBFS RMS per 30 s window" in r.output
    warnings = {r["rel_path"]: r["warning"] for r in committed_rows(str(tmp_path / "o"))}
    assert "output named f0.wav.wav" in warnings["f0.wav"]
    assert "output named f0.flac.wav" in warnings["f0.flac"]
    (tmp_path / "empty").mkdir()
    r = cli.invoke(main, ["enhance", str(tmp_path / "empty"), str(tmp_path / "o2"), *args])
    assert r.exit_code == 0 and "no audio files found" in r.output
    (tmp_path / "afile").write_text("x")
    r = cli.invoke(main, ["enhance", str(root), str(tmp_path / "afile"), *args])
    assert (
        r.exit_code == 3
        and "Error: output folder: " in r.output
        and "is a file, not a folder" in r.output
    )


def test_cli_interrupted_driver_then_rerun(tmp_path, model_uri):
    """Kill the CLI mid-job (SIGKILL); re-run; every file exactly once and no partial audio visible."""
    root = tmp_path / "in"
    make_corpus(root, 12)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "batchsep.cli.main",
        "enhance",
        str(root),
        str(out),
        "--model",
        model_uri,
        "--local",
        "--no-emotion",
        "--shard-size",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600  # generous: a loaded machine imports torch slowly
    while time.time() < deadline and len(list((out / "results").glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list((out / "results").glob("part-*.parquet")))
    assert 3 <= n_before < 12, "the job must have been interrupted midway"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = committed_rows(str(out))
    assert sorted(r["rel_path"] for r in rows) == sorted(
        str(p.relative_to(root)) for p in root.rglob("*.wav")
    )
    assert not [p for p in out.rglob("*") if p.name.startswith(".batchsep-tmp")]
    for p in root.rglob("*.wav"):
        assert sf.info(out / p.relative_to(root)).frames == sf.info(p).frames


RAY_NOISE = (
    "Token authentication is enabled",  # Ray's notice when the auth mode is left unset
    "Progress bars disabled",  # Ray Data's notice: ours replace its bars on purpose
    "max_restarts > 0",  # Ray core's E line on Ray Data's actor pool (dropped by batchsep.cli.console)
)


@pytest.mark.ray
def test_cli_on_ray_console(tmp_path, model_uri):
    """`batchsep enhance` on an embedded Ray, as a user runs it: exit 0, our summary, none of Ray's
    notices about settings batchsep made on purpose."""
    root = tmp_path / "in"
    make_corpus(root, 3)
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "batchsep.cli.main", "enhance", str(root), str(out),
        "--model", model_uri, "--no-emotion", "--workers", "1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    console = r.stdout + r.stderr
    assert r.returncode == 0, console[-3000:]
    assert "enhanced 3 files: 3 ok, 0 failed" in console
    assert [n for n in RAY_NOISE if n in console] == [], console[-3000:]


def test_cli_usage_errors(tmp_path, model_uri):
    cli = CliRunner()
    r = cli.invoke(main, ["enhance", str(tmp_path / "missing"), str(tmp_path / "o")])
    assert r.exit_code == EXIT_USAGE
    root = tmp_path / "in"
    make_corpus(root, 2)
    r = cli.invoke(
        main,
        [
            "enhance",
            str(root),
            str(tmp_path / "o"),
            "--model",
            str(tmp_path / "nomodel"),
            "--no-emotion",
        ],
    )
    assert r.exit_code == EXIT_USAGE and "--model" in r.output
    (root / "bad.wav").write_text("x")
    r = cli.invoke(
        main,
        [
            "enhance",
            str(root),
            str(tmp_path / "o"),
            "--model",
            model_uri,
            "--local",
            "--no-emotion",
        ],
    )
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    assert "2 ok, 1 failed" in r.output


@pytest.mark.s3
def test_summary_totals_match_the_commit_record_across_runs(tmp_path, model_uri):
    """The summary is counted from the rows committed before the run plus those it commits: the same totals
    as re-reading every results part, earlier runs' failures included."""
    root = tmp_path / "in"
    make_corpus(root, 6)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    out = str(tmp_path / "out")
    enhance(str(root), out, model=model_uri, shard_size=2)
    part = next(p for p in sorted((tmp_path / "out" / "results").glob("part-*.parquet"))
                if "broken.wav" not in pq.read_table(p).column("rel_path").to_pylist())  # fmt: skip
    part.unlink()  # two good files to redo; the failed one stays committed from the first run
    s = enhance(str(root), out, model=model_uri, shard_size=2)
    rows = committed_rows(out)
    ok = [r for r in rows if r["status"] == "ok"]
    assert (s.files_ok, s.files_failed, s.files_skipped) == (len(ok), 1, 5) == (6, 1, 5)
    assert s.hours == pytest.approx(sum(r["duration_s"] for r in ok) / 3600)
    assert s.processing_s == pytest.approx(sum(r["t_total_s"] for r in ok))
    assert [rel for rel, _ in s.errors] == ["broken.wav"]


def test_s3_input_and_output(tmp_path, model_uri, s3_env):
    root = tmp_path / "in"
    make_corpus(root, 3)
    for p in root.rglob("*.wav"):
        storage.write_bytes(f"{s3_env}/in/{p.relative_to(root)}", p.read_bytes())
    s = enhance(f"{s3_env}/in", f"{s3_env}/out", model=model_uri)
    assert s.files_ok == 3
    local = enhance(str(root), str(tmp_path / "out"), model=model_uri)
    assert local.files_ok == 3
    for p in root.rglob("*.wav"):
        rel = str(p.relative_to(root))
        remote, sr = sf.read(io.BytesIO(storage.read_bytes(f"{s3_env}/out/{rel}")), dtype="float32")
        local_y, local_sr = sf.read(tmp_path / "out" / rel, dtype="float32")
        assert sr == local_sr and remote.shape == local_y.shape
        np.testing.assert_allclose(remote, local_y, atol=1e-6)
    table = read_parts(f"{s3_env}/out/results")  # 3 parts, read concurrently: in part order
    assert table.column("shard").to_pylist() == [0, 1, 2]
    # starting over in another format deletes the earlier outputs (concurrent deletes on S3)
    s = enhance(f"{s3_env}/in", f"{s3_env}/out", model=model_uri,
                options=EnhanceOptions(fmt="flac"), resume=False)  # fmt: skip
    audio_left = [
        e.rel_path for e in storage.list_files(f"{s3_env}/out", suffixes=[".wav", ".flac"])
    ]
    assert s.files_ok == 3 and len(audio_left) == 3
    assert all(p.endswith(".flac") for p in audio_left), audio_left


def test_s3_refusals_are_fatal_errors_that_name_the_folder(
    tmp_path, model_uri, s3_env, monkeypatch
):
    """Rejected credentials or an unreachable endpoint are exit 3 on the input side too (exit 2 is for a
    missing input); the output's message names OUT, not the temporary name of the write probe."""
    from batchsep.io.storage import _s3_filesystem

    root = tmp_path / "in"
    make_corpus(root, 1)
    storage.write_bytes(f"{s3_env}/in/f0.wav", (root / "f0.wav").read_bytes())
    args = ["--model", model_uri, "--no-emotion", "--local"]
    r = CliRunner().invoke(main, ["enhance", f"{s3_env}/nothing-here", str(tmp_path / "o"), *args])
    assert r.exit_code == EXIT_USAGE, r.output  # a missing input stays a usage error
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    _s3_filesystem.cache_clear()
    try:
        r = CliRunner().invoke(main, ["enhance", f"{s3_env}/in", str(tmp_path / "o"), *args])
        assert r.exit_code == EXIT_FATAL and "check AWS_ACCESS_KEY_ID" in r.output, r.output
        r = CliRunner().invoke(main, ["enhance", str(root), f"{s3_env}/out", *args])
        assert r.exit_code == EXIT_FATAL, r.output
        assert (
            f"cannot write {s3_env}/out: " in r.output
            and "probe" not in r.output.split(": When")[0]
        )
    finally:
        _s3_filesystem.cache_clear()


@pytest.mark.ray
@pytest.mark.slow
def test_ray_worker_killed_midway(tmp_path, model_uri, ray_local):
    """Kill a model actor's process while the job runs: Ray restarts it; every file exactly once."""
    import psutil

    from batchsep.distributed.data import RayDataExecutor

    root = tmp_path / "in"
    make_corpus(root, 16)
    out = str(tmp_path / "out")
    killed: list[int] = []

    def killer() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            if list((tmp_path / "out" / "results").glob("part-*.parquet")):
                for p in psutil.process_iter(["cmdline"]):
                    if any("MapWorker" in c for c in (p.info["cmdline"] or [])):
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append(p.pid)
                        return
            time.sleep(0.02)

    t = threading.Thread(target=killer)
    t.start()
    s = enhance(str(root), out, model=model_uri, executor=RayDataExecutor(workers=2), shard_size=1)
    t.join()
    assert killed, "no model actor was found to kill"
    assert s.files_ok == 16 and s.files_failed == 0
    rows = committed_rows(out)
    assert sorted(r["rel_path"] for r in rows) == sorted(
        str(p.relative_to(root)) for p in root.rglob("*.wav")
    )
    # the killed actor's unfinished write, if it was writing, is removed at the end of the run
    assert not [p for p in (tmp_path / "out").rglob(".batchsep-tmp-*")]


@pytest.fixture(scope="module")
def emotion_uri(tmp_path_factory) -> str:
    """A small, randomly initialised emotion CNN saved as a checkpoint folder."""
    torch.manual_seed(0)
    uri = str(tmp_path_factory.mktemp("emotion") / "cnn")
    write_checkpoint(uri, serialize(build_model("emotion-cnn")))
    return uri


def bursts(seconds: float, period: float = 2.0, seed: int = 0) -> np.ndarray:
    """Speech-like bursts (1.2 s on, 0.8 s off) so voice activity detection finds segments."""
    x = speechlike(seconds, seed=seed)
    t = np.arange(x.shape[0]) / SR
    return (x * ((t % period) < 1.2)).astype(np.float32)


def test_enhance_with_emotion_tags(tmp_path, model_uri, emotion_uri):
    from batchsep.models.emotion import EMOTIONS

    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "short.wav", bursts(3.0), SR)
    sf.write(root / "long.wav", bursts(70.0, seed=1), SR)  # longer than one 60 s tagging window
    sf.write(root / "silent.wav", np.zeros(SR, np.float32), SR)
    s = enhance(str(root), str(tmp_path / "out"), model=model_uri, emotion=emotion_uri)
    assert s.files_ok == 3
    rows = {r["rel_path"]: r for r in committed_rows(str(tmp_path / "out"))}
    for rel in ("short.wav", "long.wav"):
        r = rows[rel]
        assert r["emotion_label"] in EMOTIONS
        probs = dict(r["emotion_probs"])
        assert set(probs) == set(EMOTIONS) and abs(sum(probs.values()) - 1) < 1e-4
        assert r["emotion_label"] == max(probs, key=lambda k: probs[k])
        segs = r["emotion_segments"]
        assert segs and all(0 <= g["start_s"] < g["end_s"] <= r["duration_s"] + 1e-6 for g in segs)
        assert all(g["end_s"] - g["start_s"] <= 3.2 + 1e-6 for g in segs)
    assert len(rows["long.wav"]["emotion_segments"]) >= 30  # one burst every 2 s, across windows
    starts = [g["start_s"] for g in rows["long.wav"]["emotion_segments"]]
    assert starts == sorted(starts) and starts[-1] > 60
    assert rows["silent.wav"]["emotion_label"] is None
    assert "no voiced audio" in rows["silent.wav"]["warning"]


def test_tag_only_writes_no_audio(tmp_path, emotion_uri):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "a.wav", bursts(4.0), SR)
    s = enhance(str(root), str(tmp_path / "out"), model=None, emotion=emotion_uri)
    assert s.files_ok == 1
    (row,) = committed_rows(str(tmp_path / "out"))
    assert row["output_uri"] is None and row["model_name"] is None and row["emotion_label"]
    assert not list((tmp_path / "out").glob("*.wav"))
    r = CliRunner().invoke(
        main, ["tag", str(root), str(tmp_path / "o2"), "--emotion-model", emotion_uri, "--local"]
    )
    assert r.exit_code == 0, r.output
    assert "tagged 1 file: 1 ok" in r.output


@pytest.mark.realdata
@pytest.mark.parametrize("level_db", [0.0, -20.0])
def test_default_model_improves_voicebank_demand(shared_data, tmp_path, level_db):
    """The shipped default enhancer on real noisy/clean pairs (unseen speaker, DEMAND noise): mean SI-SDR
    rises by more than 1 dB (see its MODEL_CARD.md), as the files are and 20 dB quieter (a quiet
    recording: without the input-level normalisation the gain there was +0.38 dB)."""
    from batchsep.evaluation.metrics import si_sdr

    pairs = shared_data / "pairs" / "voicebank_demand"
    names = sorted(p.name for p in (pairs / "noisy").glob("*.flac"))
    assert len(names) >= 6
    gain_lin = 10.0 ** (level_db / 20.0)
    noisy_dir = tmp_path / "noisy"
    noisy_dir.mkdir()
    for name in names:
        x, sr = sf.read(pairs / "noisy" / name, dtype="float64")
        sf.write(noisy_dir / name, x * gain_lin, sr, subtype="PCM_24")
    s = enhance(str(noisy_dir), str(tmp_path / "out"), model="default")
    assert (s.files_ok, s.files_failed) == (len(names), 0)
    before, after = [], []
    for name in names:
        clean, _ = sf.read(pairs / "clean" / name, dtype="float64")
        noisy, _ = sf.read(noisy_dir / name, dtype="float64")
        out, sr = sf.read(tmp_path / "out" / (name[: -len(".flac")] + ".wav"), dtype="float64")
        assert sr == 16000 and out.shape == clean.shape
        before.append(si_sdr(clean, noisy))
        after.append(si_sdr(clean, out))
    gain = float(np.mean(after) - np.mean(before))
    assert gain > 1.0, (
        f"mean SI-SDR {np.mean(before):.2f} -> {np.mean(after):.2f} dB ({gain:+.2f} dB)"
    )
