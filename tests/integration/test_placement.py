"""Where a command runs, with real commands on real audio: a small job in this process (no Ray), ``--ray``
and ``--address``/``$RAY_ADDRESS`` on Ray, ``--local`` in this process (``batchsep.pipeline.runner``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

PAIRS = "pairs/voicebank_demand"
SMALL = "batchsep: small job"
RAY_STARTED = "RAY-STARTED"

# Runs one API call in a fresh process and says whether Ray was started or connected to.
PROBE = """
import json, sys
from batchsep import api
from batchsep.distributed import runtime
stage, args, kwargs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
getattr(api, stage)(*args, **kwargs)
print("RAY-STARTED" if runtime.ray_running() else "NO-RAY")
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "BATCHSEP_PLACEMENT")}
    return {**env, **extra}


def _probe(stage: str, args: list[str], kwargs: dict, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", PROBE, stage, json.dumps(args), json.dumps(kwargs)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=_env(**env))
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "batchsep", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=_env(**env))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


@pytest.fixture
def pairs(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two VoiceBank+DEMAND pairs (noisy/, clean/): about 6 s of audio."""
    for kind in ("noisy", "clean"):
        (tmp_path / kind).mkdir()
        for name in ("p287_001.flac", "p287_002.flac"):
            shutil.copy(shared_data / PAIRS / kind / name, tmp_path / kind / name)
    return tmp_path / "noisy", tmp_path / "clean"


def test_a_small_job_runs_in_this_process(pairs: tuple[Path, Path], tmp_path: Path) -> None:
    """enhance, evaluate and scan of 2 files: no Ray (the line says where and how to choose Ray)."""
    noisy, clean = pairs
    out = tmp_path / "enh"
    r = _cli("enhance", str(noisy), str(out), "--no-emotion")
    assert SMALL + " (2 files, 0.1 min of audio): running in this process" in r.stderr
    assert "Ray instance" not in r.stderr
    rows = pq.read_table(out / "results").to_pylist()
    assert [row["status"] for row in rows] == ["ok", "ok"]
    r = _cli("evaluate", str(out), "--references", str(clean), "--metrics", "si_sdr")
    assert SMALL in r.stderr and "Ray instance" not in r.stderr
    assert "scored 2/2 files" in r.stdout
    r = _probe("scan", [str(noisy), str(tmp_path / "scan")], {})
    assert r.stdout.split()[-1] == "NO-RAY" and SMALL in r.stderr
    r = _probe("scan", [str(noisy), str(tmp_path / "scan-w1")], {"workers": 1})  # one worker: here
    assert r.stdout.split()[-1] == "NO-RAY"


def test_local_runs_here_whatever_its_size(pairs: tuple[Path, Path], tmp_path: Path) -> None:
    noisy, _ = pairs
    r = _probe("scan", [str(noisy), str(tmp_path / "s")], {"local": True, "workers": 4})
    assert r.stdout.split()[-1] == "NO-RAY" and SMALL not in r.stderr


@pytest.mark.ray
@pytest.mark.parametrize(
    ("kwargs", "env"),
    [
        ({"local": False}, {}),  # --ray
        ({"address": "local"}, {}),  # --address (here: the embedded Ray, by its address "local")
        ({}, {"RAY_ADDRESS": "local"}),  # as inside a Ray Job
        ({"workers": 2}, {}),  # parallel workers asked for
        ({}, {"BATCHSEP_PLACEMENT": "ray"}),
    ],
)
def test_ray_when_asked_for(pairs: tuple[Path, Path], tmp_path: Path, kwargs, env) -> None:
    noisy, _ = pairs
    r = _probe("scan", [str(noisy), str(tmp_path / "s")], kwargs, **env)
    assert r.stdout.split()[-1] == RAY_STARTED and SMALL not in r.stderr
    rows = pq.read_table(tmp_path / "s" / "manifest.parquet").to_pylist()
    assert [row["status"] for row in rows] == ["ok", "ok"]


@pytest.mark.ray
def test_enhance_with_ray_flag_uses_the_actor_pool(
    pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    noisy, _ = pairs
    r = _probe("enhance", [str(noisy), str(tmp_path / "e")], {"local": False, "emotion": False})
    assert r.stdout.split()[-1] == RAY_STARTED and SMALL not in r.stderr
    rows = pq.read_table(tmp_path / "e" / "results").to_pylist()
    assert [row["status"] for row in rows] == ["ok", "ok"]


@pytest.mark.ray
def test_a_larger_job_goes_to_ray(pairs: tuple[Path, Path], tmp_path: Path) -> None:
    """One file over SMALL_JOB_FILES, with no option: the embedded Ray."""
    from batchsep.pipeline.runner import SMALL_JOB_FILES

    noisy, _ = pairs
    many = tmp_path / "many"
    many.mkdir()
    for i in range(SMALL_JOB_FILES + 1):
        shutil.copy(noisy / "p287_001.flac", many / f"{i:03d}.flac")
    r = _probe("scan", [str(many), str(tmp_path / "s")], {})
    assert r.stdout.split()[-1] == RAY_STARTED and SMALL not in r.stderr
    assert pq.read_table(tmp_path / "s" / "manifest.parquet").num_rows == SMALL_JOB_FILES + 1
