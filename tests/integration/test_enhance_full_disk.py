"""A full disk under OUT, for real: a small tmpfs mounted as the output folder.

`batchsep enhance` (serial, and on Ray with one actor) fills it part way through. The job must stop
early with exit 3, its summary and a message saying what to do, no traceback; every file it committed has
exactly one row, no temporary is left, every output there is complete; after the file system is enlarged
(a remount keeps its content) a re-run with ``--retry-failed`` completes with every file exactly once.

Needs ``mount`` (root, as here and on CI); skips with the reason when the mount is refused.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from batchsep.cli.common import EXIT_FATAL
from batchsep.io import parquet
from batchsep.io.storage import TMP_PREFIX

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

COPIES = 5
"""Copies of the 6 real noisy files (2-7 s each): 30 inputs, about 9 MB of float WAV outputs."""
FULL_SIZE = "3m"
"""The tmpfs: room for about a third of the outputs."""


@pytest.fixture
def small_out(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs mounted at ``tmp_path/out``, unmounted at the end."""
    out = tmp_path / "out"
    out.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small file system for OUT")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FULL_SIZE}", "tmpfs", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip()}")
    try:
        yield out
    finally:
        if subprocess.run(["umount", str(out)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(out)], capture_output=True)


def _inputs(shared_data: Path, root: Path) -> dict[str, int]:
    """Copy the real noisy files ``COPIES`` times into ``root``; rel_path -> frames."""
    src = sorted((shared_data / "pairs" / "voicebank_demand" / "noisy").glob("*.flac"))
    assert len(src) == 6
    root.mkdir()
    frames = {}
    for c in range(COPIES):
        for p in src:
            rel = f"c{c}_{p.name}"
            shutil.copyfile(p, root / rel)
            frames[rel] = sf.info(p).frames
    return frames


def _enhance(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "batchsep.cli.main", "enhance", str(root), str(out),
        "--no-emotion", "--shard-size", "4", *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _rows(out: Path) -> list[dict]:
    table = parquet.read_parts(str(out / "results"))
    return [] if table is None else table.to_pylist()


def _check_folder(out: Path, frames: dict[str, int]) -> list[dict]:
    """No temporary; one row at most per file; every output present is complete; every ok row has its
    output. Returns the rows."""
    assert [p for p in out.rglob("*") if p.name.startswith(TMP_PREFIX)] == []
    rows = _rows(out)
    counts = Counter(r["rel_path"] for r in rows)
    assert [rel for rel, n in counts.items() if n > 1] == []
    assert set(counts) <= set(frames)
    for wav in out.glob("*.wav"):  # complete: as long as its input (the sample rate is kept)
        rel = wav.stem + ".flac"
        assert sf.info(wav).frames == frames[rel], wav.name
    for r in rows:
        if r["status"] == "ok":
            assert (out / (Path(r["rel_path"]).stem + ".wav")).is_file()
    return rows


def _full_disk_then_retry(shared_data: Path, tmp_path: Path, out: Path, *run: str) -> None:
    frames = _inputs(shared_data, tmp_path / "in")
    r = _enhance(tmp_path / "in", out, *run)
    console = r.stdout + r.stderr
    assert r.returncode == EXIT_FATAL, console[-3000:]
    for bad in ("Traceback", "Exception ignored", "UserCodeException", "AssertionError"):
        assert bad not in console, console[-3000:]
    assert re.search(r"enhanced \d+ files: \d+ ok, \d+ failed", r.stdout), console[-3000:]
    stop = re.search(r"Error: stopped early \((\d+) files not started\): (.*)", r.stderr)
    assert stop, console[-3000:]
    assert "No space left on device" in stop.group(2)
    assert f"Free space on the storage of {out}" in stop.group(2)
    assert "re-run the same command with --retry-failed" in stop.group(2)
    rows = _check_folder(out, frames)
    assert 0 < len(rows) < len(frames), "the disk must fill part way through"
    if "cannot commit" not in stop.group(2):  # stopped at a file: its shard is committed, with it
        assert int(stop.group(1)) == len(frames) - len(rows)
        failed = [r for r in rows if r["status"] == "error"]
        assert failed and all("No space left on device" in r["error"] for r in failed)
        assert any(
            re.fullmatch(r"cannot write .*\.wav: No space left on device", r["error"])
            for r in failed
        )

    subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
    r = _enhance(tmp_path / "in", out, *run, "--retry-failed")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert f"enhanced {len(frames)} files: {len(frames)} ok, 0 failed" in r.stdout
    rows = _check_folder(out, frames)
    assert sorted(r["rel_path"] for r in rows) == sorted(frames)  # every file exactly once
    assert sorted(p.stem for p in out.glob("*.wav")) == sorted(Path(f).stem for f in frames)


def test_full_disk_stops_the_job_then_retry_completes(shared_data, tmp_path, small_out):
    _full_disk_then_retry(shared_data, tmp_path, small_out, "--local")


@pytest.mark.ray
def test_full_disk_on_ray_stops_the_job_then_retry_completes(shared_data, tmp_path, small_out):
    """The same on Ray Data (one actor, which runs ahead of the commits): the UDF never fails, the
    driver stops the pool and exits with its summary."""
    _full_disk_then_retry(shared_data, tmp_path, small_out, "--workers", "1")
