"""No object-store secret in any log or record: after an S3 run on an embedded Ray with credentials in the
environment, the secret appears nowhere under Ray's session folder, under OUT or on the console."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from batchsep.distributed.runtime import forwarded_env
from batchsep.io import storage

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.realdata]


def test_forwarded_env_holds_no_secret(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "the-token")
    monkeypatch.setenv("BATCHSEP_DATA", "/data")
    env = forwarded_env()
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1" and env["AWS_REGION"] == "eu-west-1"
    assert env["BATCHSEP_DATA"] == "/data"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & env.keys()


def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                if needle in p.read_bytes():
                    found.append(str(p))
            except OSError:  # a socket or a file gone meanwhile
                continue
    return found


def test_s3_run_leaves_no_secret(s3_env, s3_server, shared_data, tmp_path):
    pairs = shared_data / "pairs" / "voicebank_demand" / "noisy"
    files = sorted(pairs.glob("*.flac"))[:3]
    assert len(files) == 3
    for p in files:
        storage.write_bytes(f"{s3_env}/in/{p.name}", p.read_bytes())
    secret = s3_server.secret_key.encode()
    assert len(secret) >= 8  # a needle that cannot match by chance
    # Ray's session folder of this run only (short path: Ray's unix sockets live there)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
            "RAY_TMPDIR": str(ray_tmp)
        }
        cmd = [
            sys.executable, "-m", "batchsep.cli.main", "enhance", f"{s3_env}/in", f"{s3_env}/out",
            "--no-emotion", "--workers", "1",
        ]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, timeout=300, env=env)
        console = r.stdout + r.stderr
        assert r.returncode == 0, console.decode(errors="replace")[-3000:]
        assert b"enhanced 3 files: 3 ok, 0 failed" in console
        sessions = list(ray_tmp.rglob("runtime_env*.log")) + list(ray_tmp.rglob("raylet*.out"))
        assert sessions, f"no Ray logs under {ray_tmp}: was the embedded Ray started there?"
        assert secret not in console
        assert _files_holding(ray_tmp, secret) == []
        outputs = storage.list_files(f"{s3_env}/out")
        assert len([e for e in outputs if e.rel_path.endswith(".wav")]) == 3
        assert [e.rel_path for e in outputs if secret in storage.read_bytes(e.uri)] == []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
