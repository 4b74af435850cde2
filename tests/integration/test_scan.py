"""Scan stage end to end: bad input, determinism, Ray, S3, the CLI, and the real corpus."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchsep.cli.main import EXIT_FATAL, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from batchsep.io import parquet, schemas
from batchsep.pipeline.runner import SerialRunner
from batchsep.pipeline.scan.driver import scan


def check_rows(table, expected: dict[str, str | None]) -> None:
    rows = {r["rel_path"]: r for r in table.to_pylist()}
    assert set(rows) == set(expected), set(rows) ^ set(expected)
    for rel, err in expected.items():
        row = rows[rel]
        if err is None:
            assert row["status"] == "ok", (rel, row["error"])
            assert row["error"] is None
            assert row["frames"] > 0 and row["duration_s"] > 0 and len(row["sha256"]) == 64
        else:
            assert row["status"] == "error", rel
            assert err in row["error"], (rel, row["error"])


def test_bad_corpus_serial(bad_corpus, tmp_path):
    root, expected = bad_corpus
    summary = scan(str(root), str(tmp_path / "run"), runner=SerialRunner(), shard_size=3)
    table = pq.read_table(tmp_path / "run" / "manifest.parquet")
    assert table.schema.equals(schemas.MANIFEST, check_metadata=False)
    check_rows(table, expected)
    assert summary.files_failed == sum(e is not None for e in expected.values())
    assert summary.files_ok == sum(e is None for e in expected.values())
    assert summary.skipped_non_audio == 1
    rows = {r["rel_path"]: r for r in table.to_pylist()}
    assert (rows["stereo_48k.wav"]["channels"], rows["stereo_48k.wav"]["sr"]) == (2, 48000)
    assert rows["rate_8k.wav"]["sr"] == 8000 and rows["rate_8k.wav"]["frames"] == 4000
    assert rows["pcm24.wav"]["subtype"] == "PCM_24"
    assert rows["silence.flac"]["peak"] == 0.0
    assert rows["good.wav"]["duration_s"] == pytest.approx(1.0)
    assert table.column("rel_path").to_pylist() == sorted(expected)
    job = json.loads((tmp_path / "run" / "job.json").read_text())
    assert job["stages"]["scan"]["spec"]["in_uri"] == str(root)


def test_unreadable_file_gives_error_row(bad_corpus):
    """A file the scanning user may not read is an error row; the rest of the scan is unaffected."""
    root, expected = bad_corpus
    if os.geteuid() != 0:
        os.chmod(root / "good.wav", 0)
        out = tempfile.mkdtemp()
        scan(str(root), out, runner=SerialRunner())
        rows = {r["rel_path"]: r for r in pq.read_table(Path(out) / "manifest.parquet").to_pylist()}
        assert rows["good.wav"]["status"] == "error"
        assert "ermission denied" in rows["good.wav"]["error"]
        return
    # As root, permissions do not stop reads: scan in a forked child that drops to user nobody.
    base = Path(tempfile.mkdtemp())
    base.chmod(0o777)
    corpus, out_dir = base / "corpus", base / "out"
    os.rename(root, corpus)
    for dirpath, _dirs, files in os.walk(corpus):
        os.chmod(dirpath, 0o755)
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)
    os.chmod(corpus / "good.wav", 0)
    out_dir.mkdir(mode=0o777)
    out_dir.chmod(0o777)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            s = scan(str(corpus), str(out_dir), runner=SerialRunner())
            os.write(write_fd, json.dumps({"failed": s.files_failed}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    msg = os.read(read_fd, 1 << 16)
    assert os.waitstatus_to_exitcode(status) == 0, msg
    table = parquet.read_table(str(out_dir / "manifest.parquet"))
    rows = {r["rel_path"]: r for r in table.to_pylist()}
    assert rows["good.wav"]["status"] == "error"
    assert "ermission denied" in rows["good.wav"]["error"]
    expected["good.wav"] = "ermission denied"
    check_rows(table, expected)


@pytest.mark.ray
def test_ray_scan_equals_serial(bad_corpus, tmp_path, ray_local):
    from batchsep.distributed.runtime import RayRunner

    root, expected = bad_corpus
    scan(str(root), str(tmp_path / "serial"), runner=SerialRunner())
    scan(str(root), str(tmp_path / "ray"), runner=RayRunner(max_in_flight=2), shard_size=2)
    a = pq.read_table(tmp_path / "serial" / "manifest.parquet")
    b = pq.read_table(tmp_path / "ray" / "manifest.parquet")
    assert a.equals(b)
    check_rows(b, expected)


@pytest.mark.s3
def test_scan_to_and_from_s3(bad_corpus, tmp_path, s3_env):
    """Same rows whether the output (and the input) live on local disk or S3."""
    from batchsep.io import storage

    root, expected = bad_corpus
    scan(str(root), str(tmp_path / "local"), runner=SerialRunner())
    scan(str(root), s3_env + "/run", runner=SerialRunner())
    local = pq.read_table(tmp_path / "local" / "manifest.parquet")
    remote = parquet.read_table(s3_env + "/run/manifest.parquet")
    assert local.equals(remote)
    # input on S3 too: upload the regular files (S3 has no symlinks) and scan the bucket
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink():
                continue
            storage.write_bytes(s3_env + "/in/" + str(p.relative_to(root)), p.read_bytes())
    scan(s3_env + "/in", s3_env + "/run2", runner=SerialRunner())
    t = parquet.read_table(s3_env + "/run2/manifest.parquet")
    check_rows(t, {k: v for k, v in expected.items() if k != "self_loop.wav"})
    assert all(u.startswith("s3://") for u in t.column("uri").to_pylist())


def test_cli_exit_codes(bad_corpus, tmp_path):
    root, _ = bad_corpus
    cli = CliRunner()
    r = cli.invoke(main, ["scan", str(root), "--out", str(tmp_path / "o"), "--local"])
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    assert "failed" in r.output and "manifest:" in r.output
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.wav").write_bytes((root / "good.wav").read_bytes())
    r = cli.invoke(main, ["scan", str(good), "--out", str(tmp_path / "o2"), "--local"])
    assert r.exit_code == EXIT_OK, r.output
    assert "1 ok, 0 failed" in r.output
    r = cli.invoke(main, ["scan", str(tmp_path / "does-not-exist"), "--out", str(tmp_path / "o3")])
    assert r.exit_code == EXIT_USAGE
    assert "no such file or directory" in r.output
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = cli.invoke(main, ["scan", str(good), "--out", str(blocker / "sub")])
    assert r.exit_code == EXIT_FATAL
    assert f"Error: output folder: cannot write {blocker / 'sub'}" in r.output, r.output
    r = cli.invoke(main, ["scan", str(good)])
    assert r.exit_code == EXIT_USAGE  # click usage error: --out missing
    r = cli.invoke(main, ["--version"])
    assert r.exit_code == 0 and "batchsep" in r.output


def test_cli_shard_size_and_no_audio_warning(bad_corpus, tmp_path, monkeypatch):
    """--shard-size sets the files per task (as job specs can); a folder without audio is warned about."""
    import batchsep.pipeline.scan.driver as scan_module

    sizes: list[int] = []

    class RecordingShards(scan_module.ListingShards):
        def __init__(self, listing, size):
            sizes.append(size)
            super().__init__(listing, size)

    monkeypatch.setattr(scan_module, "ListingShards", RecordingShards)
    root, _ = bad_corpus
    cli = CliRunner()
    r = cli.invoke(
        main, ["scan", str(root), "--out", str(tmp_path / "o"), "--local", "--shard-size", "2"]
    )
    assert r.exit_code == EXIT_SOME_FAILED and sizes == [2], (r.output, sizes)
    assert "warning: no audio" not in r.output
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notes.txt").write_text("no audio here")
    r = cli.invoke(main, ["scan", str(texts), "--out", str(tmp_path / "o2"), "--local"])
    assert r.exit_code == EXIT_OK, r.output
    assert "1 file skipped: not audio (by name)" in r.output
    assert f"warning: no audio files found under {texts}" in r.output


@pytest.mark.realdata
@pytest.mark.ray
@pytest.mark.slow
def test_scan_shared_data(shared_data, tmp_path, ray_local):
    """The issue's acceptance check: 2129 ok rows whose durations match manifest.tsv within 1 ms."""
    import pandas as pd

    from batchsep.distributed.runtime import RayRunner

    summary = scan(str(shared_data), str(tmp_path / "run"), runner=RayRunner())
    m = pd.read_parquet(tmp_path / "run" / "manifest.parquet")
    ref = pd.read_csv(shared_data / "manifest.tsv", sep="\t")
    assert len(m) == 2129 and summary.files_ok == 2129 and (m.status == "ok").all()
    joined = m.merge(ref, left_on="rel_path", right_on="path", validate="one_to_one")
    assert len(joined) == 2129
    assert (joined.duration_s_x - joined.duration_s_y).abs().max() < 1e-3
    assert (joined.sr_x == joined.sr_y).all()


@pytest.mark.ray
def test_ray_workers_run_the_setup_hook(ray_local):
    """Every Ray worker of a batchsep session runs ``runtime.setup_worker`` at start: Ray Train's
    placement-group cleaner no longer warns once a second when the State API is not served."""
    import logging

    import ray

    from batchsep.distributed.runtime import QUIET_LOGGERS

    @ray.remote
    def levels() -> dict[str, int]:
        return {name: logging.getLogger(name).level for name in QUIET_LOGGERS}

    assert ray.get(levels.remote()) == QUIET_LOGGERS
