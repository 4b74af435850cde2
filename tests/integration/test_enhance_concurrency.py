"""One writer per output folder, with real processes: a second run into a busy OUT is refused, a killed
holder's lease expires, a commit record with duplicate rows is repaired, temporaries do not outlive a run.

Real audio (VoiceBank+DEMAND noisy files), the serial executor (``--local``): Ray is not the point here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from batchsep.cli.main import EXIT_USAGE
from batchsep.errors import OutputBusyError
from batchsep.io import lease, parquet, schemas, storage
from batchsep.pipeline.enhance.driver import enhance
from batchsep.pipeline.enhance.outfolder import committed_rows

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture
def real_corpus(shared_data: Path, tmp_path: Path) -> Path:
    """24 real noisy files: the 6 VoiceBank+DEMAND ones in 4 folders."""
    noisy = sorted((shared_data / "pairs" / "voicebank_demand" / "noisy").glob("*.flac"))
    assert len(noisy) >= 6
    root = tmp_path / "in"
    for k in range(4):
        (root / f"d{k}").mkdir(parents=True)
        for f in noisy[:6]:
            shutil.copy(f, root / f"d{k}" / f.name)
    return root


def _cmd(root: Path, out: Path, model_uri: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "batchsep.cli.main", "enhance", str(root), str(out),
        "--model", model_uri, "--local", "--no-emotion", "--shard-size", "1", *extra,
    ]  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def _parts(out: Path) -> list[Path]:
    return sorted((out / "results").glob("part-*.parquet"))


def _start_and_wait_for_commits(cmd: list[str], out: Path, n: int, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(**env)
    )
    deadline = time.time() + 300  # a loaded machine imports torch slowly
    while time.time() < deadline and len(_parts(out)) < n and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, (
        f"the first run ended too early: {proc.stderr.read() if proc.stderr else ''}"
    )
    return proc


def _temps(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(storage.TMP_PREFIX)]


def _assert_each_file_once(root: Path, out: Path) -> None:
    raw = [r for p in _parts(out) for r in pq.read_table(p).to_pylist()]
    inputs = sorted(str(p.relative_to(root)) for p in root.rglob("*.flac"))
    assert sorted(r["rel_path"] for r in raw) == inputs  # on disk, not only as read
    for r in raw:
        assert r["status"] == "ok"
        out_file = out / (r["rel_path"].rsplit(".", 1)[0] + ".wav")
        assert sf.info(out_file).frames == sf.info(root / r["rel_path"]).frames


def test_second_run_into_a_busy_out_is_refused_and_leaves_the_first_alone(
    real_corpus, tmp_path, model_uri
):
    out = tmp_path / "out"
    first = _start_and_wait_for_commits(_cmd(real_corpus, out, model_uri), out, 2)
    try:
        first.send_signal(signal.SIGSTOP)  # held mid-job: its lease stays, its heartbeat stops
        planted = out / "d0" / f"{storage.TMP_PREFIX}inflight-p287_001.wav"
        planted.write_bytes(b"RIFF")  # as if the first run were writing it
        temps_before = set(_temps(out))
        job_before = (out / "job.json").read_bytes()
        parts_before = _parts(out)
        second = subprocess.run(
            _cmd(real_corpus, out, model_uri, "--format", "flac"),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert second.returncode == EXIT_USAGE, second.stderr
        err = second.stderr
        assert "is in use by another run" in err
        assert f"host {socket.gethostname()}, pid {first.pid}" in err and "started" in err
        assert ".batchsep-lease" in err
        # the refused run touched nothing: temporaries, settings, commit record
        assert set(_temps(out)) == temps_before and planted in temps_before
        assert (out / "job.json").read_bytes() == job_before
        assert _parts(out) == parts_before
        with pytest.raises(OutputBusyError, match="is in use by another run"):  # the Python API too
            enhance(str(real_corpus), str(out), model=model_uri)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    _assert_each_file_once(real_corpus, out)
    assert not _temps(out), "a run that exits 0 leaves no temporary"
    assert not (out / ".batchsep-lease").exists()
    assert (
        json.loads((out / "job.json").read_text())["stages"]["enhance"]["spec"]["options"]["fmt"]
        == "wav"
    )


def test_killed_holder_lease_is_taken_over_and_the_rerun_completes(
    real_corpus, tmp_path, model_uri
):
    out = tmp_path / "out"
    cmd = _cmd(real_corpus, out, model_uri)
    first = _start_and_wait_for_commits(cmd, out, 3)
    first.send_signal(signal.SIGKILL)
    first.wait()
    holder = lease.read_holder(str(out))
    assert holder is not None and holder.pid == first.pid  # left behind by the killed run
    n_before = len(_parts(out))
    assert 3 <= n_before < 24
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"({n_before} already done)" in r.stdout
    _assert_each_file_once(real_corpus, out)
    assert not _temps(out) and lease.read_holder(str(out)) is None


def test_hung_holder_lease_expires_after_the_ttl(real_corpus, tmp_path, model_uri, monkeypatch):
    """A holder whose heartbeat stops (a hung or unreachable host: its process is still there) holds the
    folder until the TTL has passed; then a re-run takes over. Woken up, the old run notices and stops
    (exit 2) instead of committing into the folder of another run."""
    out = tmp_path / "out"
    cmd = _cmd(real_corpus, out, model_uri)
    # 8 s, not 4: a 4 s TTL failed once on this 2-core machine at load ~10 (session 13)
    ttl = {"BATCHSEP_LEASE_TTL_S": "8"}
    first = _start_and_wait_for_commits(cmd, out, 2, **ttl)
    first.send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    try:
        monkeypatch.setenv("BATCHSEP_LEASE_TTL_S", "8")
        with pytest.raises(OutputBusyError, match="in use by another run"):  # within the TTL
            enhance(str(real_corpus), str(out), model=model_uri)
        assert time.time() - stopped_at < 8
        time.sleep(max(0.0, stopped_at + 8.5 - time.time()))
        late = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(**ttl))
        assert late.returncode == 0, late.stderr
        _assert_each_file_once(real_corpus, out)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == EXIT_USAGE and "taken over" in err, err
    _assert_each_file_once(real_corpus, out)  # the old run committed nothing more


def test_ctrl_c_releases_the_lease(real_corpus, tmp_path, model_uri):
    out = tmp_path / "out"
    cmd = _cmd(real_corpus, out, model_uri)
    first = _start_and_wait_for_commits(cmd, out, 2)
    holder = lease.read_holder(str(out))
    assert holder is not None and holder.pid == first.pid
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 130, err
    assert lease.read_holder(str(out)) is None
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    _assert_each_file_once(real_corpus, out)


def test_duplicate_rows_made_by_hand_are_read_once_and_repaired_by_a_rerun(
    real_corpus, tmp_path, model_uri
):
    out = tmp_path / "out"
    root = real_corpus / "d0"
    s = enhance(str(root), str(out), model=model_uri, shard_size=2)
    assert (s.files_ok, s.files_failed) == (6, 0)
    rows = committed_rows(str(out))
    results = str(out / "results")
    # two runs at once before leases: old-style parts (no run id, no commit time) holding the same files;
    # the later part (by number) is the newer row
    old = [{**r, "run_id": None, "committed_at": None, "shard": 90} for r in rows[:3]]
    newer = [{**r, "run_id": None, "committed_at": None, "shard": 91} for r in rows[:2]]
    newer[0]["warning"] = "the newer row"
    for k, part in ((90, old), (91, newer)):
        parquet.write_table(
            parquet.part_uri(results, k), schemas.table_from_rows(part, schemas.ENHANCE_RESULTS)
        )
    raw = [r for p in _parts(out) for r in pq.read_table(p).to_pylist()]
    assert len(raw) == 11
    read = {r["rel_path"]: r for r in committed_rows(str(out))}
    assert len(read) == 6  # each file once
    # rows with a commit time are newer than rows without one
    assert read[rows[0]["rel_path"]]["warning"] is None
    # among rows without one, the later part wins
    for p in _parts(out):
        if not p.name.startswith("part-00"):
            p.unlink()
    parquet.write_table(
        parquet.part_uri(results, 89),
        schemas.table_from_rows(
            [{**r, "run_id": None, "committed_at": None} for r in rows], schemas.ENHANCE_RESULTS
        ),
    )
    read = {r["rel_path"]: r for r in committed_rows(str(out))}
    assert len(read) == 6 and read[rows[0]["rel_path"]]["warning"] == "the newer row"
    raw_n = sum(pq.read_metadata(p).num_rows for p in _parts(out))
    assert raw_n == 6 + 3 + 2
    r = subprocess.run(_cmd(root, out, model_uri), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "enhanced 6 files: 6 ok, 0 failed (6 already done)" in r.stdout
    assert "results held 5 older duplicate rows: removed" in r.stdout
    raw = [r for p in _parts(out) for r in pq.read_table(p).to_pylist()]
    assert sorted(r["rel_path"] for r in raw) == sorted(read)  # repaired on disk
    assert {r["rel_path"]: r["warning"] for r in raw} == {k: v["warning"] for k, v in read.items()}
    again = subprocess.run(_cmd(root, out, model_uri), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "older duplicate" not in again.stdout


def test_part_names_carry_the_run_id(real_corpus, tmp_path, model_uri):
    out = tmp_path / "out"
    a = enhance(str(real_corpus / "d0"), str(out), model=model_uri, shard_size=3)
    shutil.copy(real_corpus / "d1" / "p287_001.flac", real_corpus / "d0" / "extra.flac")
    b = enhance(str(real_corpus / "d0"), str(out), model=model_uri, shard_size=3)
    assert a.run_id != b.run_id and b.files_run == 1
    names = [p.name for p in _parts(out)]
    assert len(names) == 3
    assert sum(n.startswith(f"part-{a.run_id}-") for n in names) == 2
    assert sum(n.startswith(f"part-{b.run_id}-") for n in names) == 1
    rows = committed_rows(str(out))
    assert {r["run_id"] for r in rows} == {a.run_id, b.run_id}
    assert all(r["committed_at"] is not None for r in rows)


def test_other_format_into_an_out_stopped_before_its_first_commit_is_refused(
    real_corpus, tmp_path, model_uri
):
    """Settings are checked against job.json even when no row is committed yet (a run stopped early may
    have left outputs of its format)."""
    out = tmp_path / "out"
    root = real_corpus / "d0"
    cmd = _cmd(root, out, model_uri)
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "job.json").exists() and first.poll() is None:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (out / "job.json").exists()
    r = subprocess.run([*cmd, "--format", "flac"], capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT_USAGE, r.stdout + r.stderr
    assert "--format" in r.stderr and "'wav' -> 'flac'" in r.stderr
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not list(out.rglob("*.flac"))


def test_temporaries_of_a_worker_killed_during_the_run_are_gone_after_it(
    real_corpus, tmp_path, model_uri
):
    """A temporary that appears while the run goes on (a worker killed mid-file leaves one) is removed
    at the end of the run, so a run that succeeds leaves none."""
    from batchsep.pipeline.enhance.worker import serial_executor

    out = tmp_path / "out"

    def executor(worker_kwargs, tasks):
        for k, (shard, rows) in enumerate(serial_executor(worker_kwargs, tasks)):
            if k == 1:  # after the run's start-up clean-up: what a killed worker leaves
                (out / "d0").mkdir(exist_ok=True)
                (out / "d0" / f"{storage.TMP_PREFIX}0f3a-p287_002.wav").write_bytes(b"RIFF" * 20)
            yield shard, rows

    s = enhance(str(real_corpus / "d0"), str(out), model=model_uri, shard_size=2, executor=executor)
    assert s.files_ok == 6
    assert not _temps(out)


def test_busy_s3_out_is_refused(real_corpus, model_uri, s3_env):
    out = f"{s3_env}/out"
    held = lease.acquire(out)
    try:
        with pytest.raises(OutputBusyError, match=f"pid {os.getpid()}"):
            enhance(str(real_corpus / "d0"), out, model=model_uri)
        assert not storage.exists(f"{out}/results")
    finally:
        held.release()
    s = enhance(str(real_corpus / "d0"), out, model=model_uri)
    assert s.files_ok == 6 and lease.read_holder(out) is None


def test_a_run_that_fails_releases_the_lease(real_corpus, tmp_path, model_uri):
    out = tmp_path / "out"
    with pytest.raises(Exception, match="no-such-model"):
        enhance(str(real_corpus / "d0"), str(out), model=str(tmp_path / "no-such-model"))
    assert lease.read_holder(str(out)) is None and not _temps(out)
    assert enhance(str(real_corpus / "d0"), str(out), model=model_uri).files_ok == 6
