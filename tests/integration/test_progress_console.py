"""A redirected ``batchsep enhance`` (a log file, a pipe, a Ray job's log) prints plain progress lines."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.realdata]


def test_redirected_enhance_prints_progress_lines_and_no_ray_noise(shared_data, tmp_path):
    src = sorted((shared_data / "speech" / "librispeech").rglob("*.flac"))[:20]
    inp = tmp_path / "in"
    inp.mkdir()
    for f in src:
        shutil.copy(f, inp / f.name)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_COLOR_PREFIX")}
    env["BATCHSEP_PROGRESS_S"] = "0"  # a line per shard (the default: every 5 s)
    cmd = [sys.executable, "-m", "batchsep.cli.main", "enhance", str(inp), str(tmp_path / "out"),
           "--shard-size", "2", "--workers", "2", "--no-emotion"]  # fmt: skip
    # stdout and stderr to pipes: what a log file or a Ray job's log gets
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "enhanced 20 files: 20 ok" in r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("enhance: ")]
    assert lines[0] == "enhance: 20 files to do"
    eta = [
        ln
        for ln in lines
        if re.search(r"/20 files \(\d+%\), [\d.]+ h of audio, .*ETA \d+:\d\d", ln)
    ]
    assert eta, r.stderr
    assert lines[-1].startswith("enhance: 20/20 files (100%)") and lines[-1].endswith("done")
    assert "0 failed" in lines[-1] and "real time" in lines[-1]
    assert "\x1b[" not in r.stderr + r.stdout  # no ANSI escape in redirected output
    assert not re.search(r"^\[[^\]]* E \d+ \d+\] core_worker", r.stderr, flags=re.M), r.stderr
    assert "max_restarts" not in r.stderr


def test_batchsep_run_shows_each_stages_progress(shared_data, tmp_path):
    """What a Ray job's log gets from `batchsep run` (here in-process, stages with local: true)."""
    import yaml
    from click.testing import CliRunner

    from batchsep.cli.main import main

    spec = {
        "name": "progress",
        "stages": [
            {
                "stage": "enhance",
                "params": {
                    "in_uri": str(shared_data / "pairs" / "voicebank_demand" / "noisy"),
                    "out_uri": str(tmp_path / "out"),
                    "emotion": False,
                    "local": True,
                    "shard_size": 2,
                },
            }
        ],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(main, ["run", str(tmp_path / "s.yaml")])
    assert r.exit_code == 0, r.output
    assert "enhance: 6 files to do" in r.stderr
    assert "enhance: 6/6 files (100%)" in r.stderr and "0 failed" in r.stderr
    assert "\x1b[" not in r.output
