"""Job specs end to end: `batchsep run` here, and `batchsep submit` to a real local Ray head (Jobs API).

The head is started with `ray start --head` on free ports of 127.0.0.1 in its own session and temp dir, and
only its processes are killed at the end (never `ray stop`, which would kill every Ray on the host).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml
from click.testing import CliRunner

from batchsep.cli.main import EXIT_FATAL, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from batchsep.distributed import jobs_client
from batchsep.distributed.jobs_client import JobState
from batchsep.errors import ConfigError, ParameterError, RegistryError, StorageError
from batchsep.jobs import run as jobs
from batchsep.jobs import submit as jobs_submit
from batchsep.jobs.spec import parse_spec

FAKE_SECRET = "fake-secret-7f3a9c1e-do-not-leak"
BIN = Path(sys.executable).parent


def good_corpus(root: Path, n: int = 4) -> Path:
    root.mkdir(parents=True)
    t = np.arange(4000) / 16000
    for i in range(n):
        sf.write(root / f"f{i}.wav", (0.2 * np.sin(2 * np.pi * 300 * (i + 1) * t)), 16000)
    return root


def write_spec(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def scan_spec(in_uri: str, out_uri: str, **extra) -> dict:
    params = {"in_uri": in_uri, "out_uri": out_uri, **extra.pop("params", {})}
    return {"name": "scan-test", "stages": [{"stage": "scan", "params": params}], **extra}


# --- batchsep run (no Ray: stages with local: true) ---------------------------------------------


def test_run_two_stages_with_reference_and_exit_codes(tmp_path, bad_corpus, monkeypatch):
    root, expected = bad_corpus
    monkeypatch.setenv("BATCHSEP_TEST_JOB_ENV", "before")  # restored (unset) after the test
    data: dict[str, Any] = {
        "name": "two",
        "stages": [
            {"stage": "scan", "params": {"in_uri": str(root), "out_uri": str(tmp_path / "r")}},
            {
                "stage": "scan",
                "name": "again",
                "params": {"in_uri": "${scan.in_uri}", "out_uri": "${scan.out_uri}/2"},
            },
        ],
        "ray": {"workers": 1},
        "env": {"BATCHSEP_TEST_JOB_ENV": "on"},
    }
    for s in data["stages"]:
        s["params"]["local"] = True
    r = CliRunner().invoke(main, ["run", write_spec(tmp_path / "s.yaml", data)])
    n_failed = sum(e is not None for e in expected.values())
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    assert "stage 1/2 scan (scan)" in r.output and "stage 2/2 again (scan)" in r.output
    assert f"files_failed={n_failed}" in r.output
    assert f"2 stage(s) done, {2 * n_failed} item(s) failed" in r.output
    a = pq.read_table(tmp_path / "r" / "manifest.parquet")
    b = pq.read_table(tmp_path / "r" / "2" / "manifest.parquet")
    assert a.equals(b) and a.num_rows == len(expected)
    assert os.environ["BATCHSEP_TEST_JOB_ENV"] == "on"  # exported before the stages ran


def test_run_exit_codes(tmp_path):
    corpus = good_corpus(tmp_path / "c")
    cli = CliRunner()
    ok = write_spec(
        tmp_path / "ok.yaml", scan_spec(str(corpus), str(tmp_path / "o"), params={"local": True})
    )
    r = cli.invoke(main, ["run", ok])
    assert r.exit_code == EXIT_OK, r.output
    assert "files_ok=4 files_failed=0" in r.output
    r = cli.invoke(main, ["run", ok, "--dry-run"])
    assert r.exit_code == EXIT_OK and "0. scan (scan): in_uri=" in r.output
    assert "stage 1/1" not in r.output
    bad = scan_spec(str(corpus), str(tmp_path / "o"), params={"modle": "x"})
    r = cli.invoke(main, ["run", write_spec(tmp_path / "bad.yaml", bad)])
    assert r.exit_code == EXIT_USAGE and "stages[0] (scan): unknown key 'modle'" in r.output
    r = cli.invoke(main, ["run", str(tmp_path / "missing.yaml")])
    assert r.exit_code == EXIT_USAGE
    blocker = tmp_path / "file"
    blocker.write_text("x")
    fatal = scan_spec(str(corpus), str(blocker / "sub"), params={"local": True})
    r = cli.invoke(main, ["run", write_spec(tmp_path / "fatal.yaml", fatal)])
    assert r.exit_code == EXIT_FATAL and "stages[0] (scan):" in r.output


def test_run_rejects_secrets_before_running(tmp_path):
    data = scan_spec("in", str(tmp_path / "o"), env={"AWS_SECRET_ACCESS_KEY": FAKE_SECRET})
    r = CliRunner().invoke(main, ["run", write_spec(tmp_path / "s.yaml", data)])
    assert r.exit_code == EXIT_USAGE
    assert "'AWS_SECRET_ACCESS_KEY' looks like a credential" in r.output
    assert FAKE_SECRET not in r.output
    assert not (tmp_path / "o").exists()


def test_run_checks_inputs_before_the_first_stage(tmp_path):
    """A missing input is a usage error (exit 2) at --dry-run and before any stage runs, as for the
    commands; an input that an earlier stage writes is not one."""
    corpus = good_corpus(tmp_path / "c")
    data = scan_spec(str(tmp_path / "nope"), str(tmp_path / "o"), params={"local": True})
    path = write_spec(tmp_path / "missing.yaml", data)
    for args in (["--dry-run"], []):
        r = CliRunner().invoke(main, ["run", path, *args])
        assert r.exit_code == EXIT_USAGE, r.output
        assert f"stages[0] (scan): in_uri={tmp_path / 'nope'}: no such file" in r.output
    assert not (tmp_path / "o").exists()
    data = scan_spec(str(corpus), str(tmp_path / "o"), params={"local": True})
    data["stages"].append({"stage": "report", "params": {"run_uris": [str(tmp_path / "o")],
                                                         "out_uri": str(tmp_path / "rep")}})  # fmt: skip
    r = CliRunner().invoke(main, ["run", write_spec(tmp_path / "chain.yaml", data), "--dry-run"])
    assert r.exit_code == EXIT_OK, r.output


def test_run_refuses_a_jobs_api_url_as_ray_address(tmp_path):
    """`run --address http://HEAD:8265` (what submit takes) is a usage error before the first stage, naming
    the address each kind of command takes; it was passed to ray.init and stopped the job (exit 3)."""
    corpus = good_corpus(tmp_path / "c")
    path = write_spec(tmp_path / "s.yaml", scan_spec(str(corpus), str(tmp_path / "o")))
    r = CliRunner().invoke(main, ["run", path, "--address", "http://127.0.0.1:8265"])
    assert r.exit_code == EXIT_USAGE, r.output
    assert "is a Jobs API URL (what submit, status, logs and cancel take)" in r.output
    assert "HOST:6379" in r.output and "stage 1/1" not in r.output
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(
        main, ["scan", str(corpus), "--out", str(tmp_path / "o"), "--address", "https://h:8265"]
    )
    assert r.exit_code == EXIT_USAGE and "is a Jobs API URL" in r.output, r.output


@pytest.mark.slow
def test_unreachable_cluster_is_a_clear_error_in_bounded_time(tmp_path):
    """Nothing listens at the address: a ClusterError naming it (exit 3) after one bounded wait, not Ray's
    default ~12 minutes of retries."""
    corpus = good_corpus(tmp_path / "c")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once closed: nothing listens there
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "batchsep.cli.main", "scan", str(corpus), "--out", str(tmp_path / "o"),
         "--address", f"127.0.0.1:{port}"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert p.returncode == EXIT_FATAL, p.stderr[-2000:]
    assert f"cannot connect to the Ray cluster at 127.0.0.1:{port}" in p.stderr
    assert time.monotonic() - t0 < 200


def test_run_checks_train_model_before_the_first_stage(tmp_path):
    """A typo in a train stage's model is a spec error (exit 2) found by --dry-run and before the
    first stage runs, not a stage failure after prepare and features."""
    corpus = good_corpus(tmp_path / "c")
    data = scan_spec(str(corpus), str(tmp_path / "o"), params={"local": True})
    data["stages"].append(
        {"stage": "train", "params": {"run_uri": str(tmp_path / "o"), "model": "drnmff"}}
    )
    path = write_spec(tmp_path / "typo.yaml", data)
    for args in (["--dry-run"], []):
        r = CliRunner().invoke(main, ["run", path, *args])
        assert r.exit_code == EXIT_USAGE, r.output
        assert "stages[1] (train): unknown model 'drnmff'; known: blstm, dae, dc," in r.output
        assert "oracle" not in r.output
    assert not (tmp_path / "o").exists()  # the scan stage never ran


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RegistryError("unknown model 'x'"), EXIT_USAGE),
        (ConfigError("unknown key 'x'"), EXIT_USAGE),
        (ParameterError("init_from=x holds a 'lstm' model"), EXIT_USAGE),
        (StorageError("cannot write"), EXIT_FATAL),
    ],
)
def test_run_stage_errors_map_to_exit_codes(tmp_path, monkeypatch, error, expected):
    """A stage's parameter/config/registry error at run time is a usage error (2), not fatal (3)."""

    def fail(spec, **kwargs):
        raise type(error)(f"stages[0] (scan): {error}")

    monkeypatch.setattr(jobs, "run_spec", fail)
    (tmp_path / "in").mkdir()
    path = write_spec(tmp_path / "s.yaml", scan_spec(str(tmp_path / "in"), str(tmp_path / "o")))
    r = CliRunner().invoke(main, ["run", path])
    assert r.exit_code == expected, r.output
    assert f"Error: stages[0] (scan): {error}" in r.output


# --- what a submission sends (no cluster needed) -------------------------------------------------


def test_submission_sends_only_the_spec_and_no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKE")
    (tmp_path / ".env").write_text(f"AWS_SECRET_ACCESS_KEY={FAKE_SECRET}\n")  # must not be uploaded
    path = write_spec(
        tmp_path / "job.yaml", scan_spec("s3://b/in", "s3://b/out", env={"BATCHSEP_A": 1})
    )
    _spec, sub = jobs_submit.prepare_submission(path, install="pip")
    try:
        assert sub.entrypoint == "batchsep run job.yaml"
        assert sub.files == ["job.yaml"]
        assert Path(sub.runtime_env["working_dir"]) != tmp_path
        assert sub.runtime_env["pip"] == ["batchsep==0.1.0"]
        assert sub.runtime_env["env_vars"] == {
            "BATCHSEP_A": "1",
            "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1",
        }
        assert sub.metadata == {
            "batchsep_job": "scan-test",
            "batchsep_spec": "job.yaml",
            "batchsep_version": "0.1.0",
        }
        assert sub.submission_id.startswith("batchsep-scan-test-")
        sent = json.dumps([sub.entrypoint, sub.runtime_env, sub.metadata])
        assert FAKE_SECRET not in sent and "AKIAFAKE" not in sent
    finally:
        assert sub.staging_dir is not None
        shutil.rmtree(sub.staging_dir)
    _, sub = jobs_submit.prepare_submission(path, install="none", working_dir=str(tmp_path))
    assert "pip" not in sub.runtime_env and sub.staging_dir is None
    assert sub.runtime_env["working_dir"] == str(tmp_path)
    with pytest.raises(ParameterError, match="must be inside --working-dir"):
        jobs_submit.prepare_submission(path, working_dir=str(good_corpus(tmp_path / "elsewhere")))
    with pytest.raises(ConfigError, match="looks like a credential"):
        jobs_submit.prepare_submission(
            path, install="none", runtime_env={"env_vars": {"AWS_SESSION_TOKEN": "x"}}
        )
    with pytest.raises(ConfigError, match=r"--pip\[1\]\[0\] \(a URI with user:password@\)"):
        jobs_submit.prepare_submission(path, pip=["batchsep @ https://user:tok@pkgs.example/b.whl"])


def test_submit_dry_run_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    path = write_spec(tmp_path / "job.yaml", scan_spec("s3://b/in", "s3://b/out"))
    cli = CliRunner()
    args = ["submit", path, "--address", "http://127.0.0.1:9", "--dry-run"]
    r = cli.invoke(main, [*args, "--no-install", "--runtime-env", '{"env_vars": {"X": "1"}}'])
    assert r.exit_code == EXIT_OK, r.output
    assert "entrypoint: batchsep run job.yaml" in r.output and '"X": "1"' in r.output
    assert FAKE_SECRET not in r.output
    r = cli.invoke(main, [*args, "--no-install", "--set", "scan.out_uri=s3://b/o 2"])
    assert r.exit_code == EXIT_OK, r.output
    assert "entrypoint: batchsep run job.yaml '--set=scan.out_uri=s3://b/o 2'" in r.output
    r = cli.invoke(main, [*args, "--no-install", "--set", "scan.bogus=1"])
    assert r.exit_code == EXIT_USAGE and "unknown key 'bogus'" in r.output
    r = cli.invoke(main, [*args, "--wheel", "--no-install"])
    assert r.exit_code == EXIT_USAGE and "choose one of" in r.output
    r = cli.invoke(main, [*args, "--runtime-env", '{"env_vars": {"MY_TOKEN": "x"}}'])
    assert r.exit_code == EXIT_USAGE and "'MY_TOKEN' looks like a credential" in r.output


def test_submit_warns_about_relative_paths(tmp_path):
    """A submitted job resolves relative paths in the head's working folder: submit lists each one once
    (with where it first appears) and submits anyway; absolute paths and S3 URIs give no warning."""
    path = write_spec(tmp_path / "job.yaml", scan_spec("corpus/in", "runs/scan"))
    args = ["submit", path, "--address", "http://127.0.0.1:9", "--dry-run", "--no-install"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == EXIT_OK, r.output
    assert "resolves relative paths in the head's working folder" in r.output
    assert "corpus/in (stages[0] (scan): in_uri)" in r.output
    assert "runs/scan (stages[0] (scan): out_uri)" in r.output
    r = CliRunner().invoke(
        main, [*args, "--set", f"scan.in_uri={tmp_path}", "--set", "scan.out_uri=s3://b/o"]
    )
    assert r.exit_code == EXIT_OK and "relative paths" not in r.output, r.output


def test_jobs_api_errors_map_to_exit_codes(tmp_path):
    cli = CliRunner()
    r = cli.invoke(main, ["status", "raysubmit_x", "--address", "127.0.0.1:8265"])
    assert r.exit_code == EXIT_USAGE and "must be the Jobs API URL" in r.output
    port = free_ports(1)[0]  # nothing listens there
    r = cli.invoke(main, ["status", "raysubmit_x", "--address", f"http://127.0.0.1:{port}"])
    assert r.exit_code == EXIT_FATAL and "cannot reach the Ray Jobs API" in r.output


def test_exit_code_and_summaries():
    state = JobState("j", "SUCCEEDED")
    assert jobs_client.exit_code(state) == 0
    assert jobs_client.exit_code(JobState("j", "FAILED", exit_code=1)) == EXIT_SOME_FAILED
    assert jobs_client.exit_code(JobState("j", "FAILED", exit_code=2)) == EXIT_USAGE
    assert jobs_client.exit_code(JobState("j", "FAILED", exit_code=-9)) == EXIT_FATAL
    assert jobs_client.exit_code(JobState("j", "STOPPED")) == EXIT_FATAL
    assert jobs.failed_items({"failed": 3}) == 3 and jobs.failed_items(object()) == 0
    assert (
        jobs.failed_items({"mixtures_failed": 2, "input_failed": 1, "ok": 5, "x_failed": True}) == 3
    )
    assert jobs.summarize({"a": 1, "b": [1, 2], "c": 0.123456}) == "a=1 b: 2 c=0.1235"
    assert jobs.summarize({"ok": {"train": 40, "test": 0.5}}) == "ok={train: 40, test: 0.5}"


# --- a real local Ray head ------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _own_processes(pgid: int, tmp: str) -> set[int]:
    """Processes of the head: its process group, anything naming or running in its temp dir, and
    every descendant of those (job drivers run in sessions of their own)."""
    parents: dict[int, int] = {}
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            parents[pid] = int(stat[1])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (OSError, IndexError, ValueError):
            continue
        if int(stat[2]) == pgid or tmp in cmdline or cwd.startswith(tmp):
            found.add(pid)
    grew = True
    while grew:
        children = {p for p, pp in parents.items() if pp in found} - found
        found |= children
        grew = bool(children)
    return found - {os.getpid()}


def stop_head(pgid: int, tmp: str) -> None:
    for _ in range(3):
        pids = _own_processes(pgid, tmp)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A Ray head with the dashboard (Jobs API) on 127.0.0.1; yields its http:// address."""
    tmp = tempfile.mkdtemp(prefix="bsh-", dir="/tmp")  # short: unix socket paths are limited
    gcs, dashboard, client, agent, agent_grpc, runtime_env_agent = free_ports(6)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # 127.0.0.1 as the node IP
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `batchsep` for job entrypoints
    )
    cmd = [
        str(BIN / "ray"),
        "start",
        "--head",
        f"--port={gcs}",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}",  # agent ports given: the raylet does not wait
        f"--dashboard-agent-grpc-port={agent_grpc}",  # for them to be reported (15 s at most)
        f"--runtime-env-agent-port={runtime_env_agent}",
        "--min-worker-port=0",
        "--max-worker-port=0",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={tmp}",
        "--num-cpus=2",
        "--object-store-memory=200000000",
        "--include-dashboard=true",
        "--disable-usage-stats",
    ]
    log = Path(tmp) / "start.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    pgid = proc.pid
    try:
        if proc.wait(timeout=180) != 0:
            pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")
        url = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        stop_head(pgid, tmp)
        assert not _own_processes(pgid, tmp), "processes of the test head survived"


@pytest.mark.ray
@pytest.mark.slow
def test_submit_to_local_head(ray_head, tmp_path, monkeypatch):
    """Submit --wait (ok), a job that fails on the cluster, status/logs/cancel; no credential leaks."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)  # the submitter's; must never travel
    corpus = good_corpus(tmp_path / "corpus", n=6)
    out = tmp_path / "run"
    failing = write_spec(
        tmp_path / "fail.yaml", scan_spec(str(tmp_path / "nope"), str(tmp_path / "x"))
    )
    fail_id = jobs_submit.submit(failing, address=ray_head, install="none")
    data = scan_spec(str(corpus), str(out), params={"shard_size": 2})
    data["env"] = {
        "BATCHSEP_TEST_MARK": "1"
    }  # also forwarded by the driver: no runtime-env conflict
    spec_path = write_spec(tmp_path / "ok.yaml", data)
    cli = CliRunner()
    r = cli.invoke(
        main,
        ["submit", spec_path, "--address", ray_head, "--no-install", "--wait", "--timeout", "240"],
    )
    assert r.exit_code == EXIT_OK, r.output
    job_id = r.output.split("submitted job ", 1)[1].split()[0]
    assert job_id.startswith("batchsep-scan-test-")
    assert "stage 1/1 scan (scan)" in r.output and "files_ok=6 files_failed=0" in r.output
    assert f"job {job_id}: SUCCEEDED" in r.output
    table = pq.read_table(out / "manifest.parquet")
    assert sorted(table.column("rel_path").to_pylist()) == [f"f{i}.wav" for i in range(6)]

    r_status = cli.invoke(main, ["status", job_id, "--address", ray_head])
    assert r_status.exit_code == 0 and "SUCCEEDED" in r_status.output
    assert '"batchsep_job": "scan-test"' in r_status.output
    r_logs = cli.invoke(main, ["logs", job_id, "--address", ray_head])
    assert (
        r_logs.exit_code == 0
        and "job scan-test: 1 stage(s) done, 0 item(s) failed" in r_logs.output
    )
    r_follow = cli.invoke(main, ["logs", job_id, "--address", ray_head, "--follow"])
    assert r_follow.exit_code == 0 and "stage 1/1 scan (scan)" in r_follow.output
    r_cancel = cli.invoke(main, ["cancel", job_id, "--address", ray_head])
    assert r_cancel.exit_code == 0 and "was not running" in r_cancel.output
    r_unknown = cli.invoke(main, ["status", "no-such-job", "--address", ray_head])
    assert r_unknown.exit_code == EXIT_USAGE and "no job 'no-such-job'" in r_unknown.output

    state = jobs_client.wait(fail_id, address=ray_head, timeout_s=240)
    # a missing input
    assert state.status == "FAILED" and jobs_client.exit_code(state) == EXIT_USAGE
    assert "no such file, folder or prefix" in jobs_client.logs(fail_id, address=ray_head)

    from ray.job_submission import JobSubmissionClient

    info = JobSubmissionClient(ray_head).get_job_info(job_id)
    assert info.runtime_env is not None
    assert info.runtime_env["env_vars"]["BATCHSEP_TEST_MARK"] == "1"
    everything = " ".join(
        [r.output, r_status.output, r_logs.output, json.dumps(info.runtime_env), str(info)]
    )
    assert FAKE_SECRET not in everything
    assert not any(k.startswith("AWS_") for k in info.runtime_env.get("env_vars", {}))


# --- S3: credentials from the environment of `batchsep run`, never from the spec ---------------


@pytest.mark.ray
@pytest.mark.slow
def test_run_spec_writing_to_s3(s3_env, tmp_path):
    from batchsep.io import parquet, storage

    corpus = good_corpus(tmp_path / "corpus", n=5)
    for p in corpus.iterdir():  # input on S3 too, so Ray workers read it with forwarded credentials
        storage.write_bytes(f"{s3_env}/in/{p.name}", p.read_bytes())
    data = scan_spec(f"{s3_env}/in", f"{s3_env}/run", params={"shard_size": 2}, ray={"workers": 1})
    spec_path = write_spec(tmp_path / "s3.yaml", data)
    assert "AWS" not in Path(spec_path).read_text()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [str(BIN / "batchsep"), "run", spec_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in proc.stdout + proc.stderr
    t = parquet.read_table(f"{s3_env}/run/manifest.parquet")
    assert sorted(t.column("rel_path").to_pylist()) == [f"f{i}.wav" for i in range(5)]
    assert set(t.column("status").to_pylist()) == {"ok"}
    assert parse_spec(data).stages[0].params["out_uri"] == f"{s3_env}/run"


@pytest.mark.ray
@pytest.mark.slow
def test_submit_with_wheel_built_from_checkout(ray_head, tmp_path, monkeypatch):
    """--wheel: the job installs a wheel of this checkout into a Ray-managed virtualenv and runs."""
    if jobs_submit.repo_root() is None:
        pytest.skip("batchsep is not imported from a source checkout")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    corpus = good_corpus(tmp_path / "corpus", n=2)
    spec_path = write_spec(tmp_path / "w.yaml", scan_spec(str(corpus), str(tmp_path / "run")))
    job_id = jobs_submit.submit(spec_path, address=ray_head, install="wheel")
    state = jobs_client.wait(job_id, address=ray_head, timeout_s=400)
    log = jobs_client.logs(job_id, address=ray_head)
    assert state.status == "SUCCEEDED", log[-3000:]
    assert "files_ok=2 files_failed=0" in log
    assert (tmp_path / "run" / "manifest.parquet").is_file()


def test_submit_installs_something_that_exists_by_default(tmp_path, monkeypatch):
    """No flag: a wheel of this checkout (batchsep runs from one here), or the image's batchsep when
    batchsep is installed from a wheel; never ``batchsep==VERSION``, which no index has."""
    path = write_spec(tmp_path / "job.yaml", scan_spec("s3://b/in", "s3://b/out"))
    _spec, sub = jobs_submit.prepare_submission(path)
    try:
        wheels = [f for f in sub.files if f.endswith(".whl")]
        assert len(wheels) == 1 and wheels[0].startswith("batchsep-")
        assert sub.runtime_env["pip"] == [f"{jobs_submit.WORKING_DIR_VAR}/{wheels[0]}"]
    finally:
        assert sub.staging_dir is not None
        shutil.rmtree(sub.staging_dir, ignore_errors=True)
    monkeypatch.setattr(jobs_submit, "repo_root", lambda: None)  # as installed from a wheel
    _spec, sub = jobs_submit.prepare_submission(path)
    try:
        assert "pip" not in sub.runtime_env and sub.files == ["job.yaml"]
    finally:
        assert sub.staging_dir is not None
        shutil.rmtree(sub.staging_dir, ignore_errors=True)
