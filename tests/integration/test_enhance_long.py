"""Long files through the real ``batchsep enhance`` command: bounded memory for 1 hour, 3 hours complete.

Heavy (minutes, hundreds of MB of temporary audio): run with ``pytest -m heavy``. The inputs are written in
blocks to a temporary folder: real LibriSpeech utterances (``../shared/data/speech``, else a synthetic
speech-like signal) looped with a different shift per minute, plus real household noise (else
coloured noise) at about 5 dB SNR. The commands run as subprocesses with the shipped default enhancer.

What is measured and printed:

- 1 hour, ``--local`` (the CLI runs the enhance stage in its own process, so that one process is the whole
  tree): the kernel's peak-RSS counter of that process (``ru_maxrss`` from ``wait4``) must stay < 1.5 GB;
- 3 hours, on embedded Ray with one model actor: the peak RSS of the actor process (``VmHWM``, polled) must
  stay < 1.5 GB too (the Ray services around it are not counted; their sampled sum is printed).

Both check the output's rate and exact length, and that the audio deep into the file (a window after the
58th minute / the last full window) equals the model applied to that window of the input, so nothing was
dropped, duplicated or shifted across hundreds of chunks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from batchsep.pipeline.enhance.enhancer import load_enhancer
from batchsep.pipeline.enhance.file import EnhanceOptions
from batchsep.pipeline.enhance.outfolder import committed_rows

pytestmark = [pytest.mark.heavy, pytest.mark.slow]

SR = 16000
RSS_LIMIT_BYTES = 1.5e9
REPO = Path(__file__).resolve().parents[2]


def _data_root() -> Path:
    return Path(os.environ.get("BATCHSEP_DATA") or REPO.parent / "shared" / "data")


def _speech_bed(seconds: float = 60.0) -> np.ndarray:
    """About ``seconds`` of real speech (utterances of several speakers, concatenated), else synthetic."""
    files = sorted((_data_root() / "speech").rglob("*.flac"))[::37]
    parts, total = [], 0
    for f in files:
        x, sr = sf.read(f, dtype="float32")
        if sr != SR or x.ndim != 1:
            continue
        parts.append(x)
        total += x.shape[0]
        if total >= seconds * SR:
            break
    if parts:
        return np.concatenate(parts)
    t = np.arange(int(seconds * SR)) / SR  # no real data: a modulated harmonic signal
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t)) * (np.sin(2 * np.pi * 0.4 * t) > -0.3)
    return (0.2 * env * (np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 360 * t))).astype(
        np.float32
    )


def _noise_bed(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of real household noise (looped), else low-passed Gaussian noise."""
    files = sorted((_data_root() / "noise" / "household").glob("*.flac"))
    if files:
        x, sr = sf.read(files[0], dtype="float32")
        if sr == SR and x.ndim == 1:
            return np.resize(x, n)
    w = rng.standard_normal(n + 8).astype(np.float32)
    return np.convolve(w, np.ones(8, np.float32) / 8, mode="valid")[:n]


def write_long_file(path: Path, seconds: int, *, seed: int = 0, block_s: int = 60) -> int:
    """Write a ``seconds``-long 16 kHz PCM-16 WAV of noisy speech in bounded memory; return its frames."""
    rng = np.random.default_rng(seed)
    speech = _speech_bed()
    noise = _noise_bed(speech.shape[0], rng)
    gain = np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (5.0 / 10))  # ~5 dB SNR
    block = block_s * SR
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for _ in range(seconds // block_s):
            shift = int(rng.integers(speech.shape[0]))
            s = np.resize(np.roll(speech, shift), block)
            n = np.resize(np.roll(noise, int(rng.integers(noise.shape[0]))), block)
            f.write(np.clip(0.5 * (s + gain * n), -1, 1))
    return seconds * SR


def _cli(in_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "batchsep.cli.main", "enhance", str(in_dir), str(out_dir),
        "--no-emotion", *extra,
    ]  # fmt: skip


def _proc_status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of a live process in bytes; empty if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in lines
        if line.startswith(("VmRSS:", "VmHWM:"))
    }


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from ``/proc/*/stat``)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return ""


class TreeMonitor(threading.Thread):
    """Polls a process tree: each process's peak RSS (VmHWM) and the largest sampled sum of RSS."""

    def __init__(self, pid: int, period_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.period_s = pid, period_s
        self.peaks: dict[int, tuple[str, int]] = {}
        self.tree_rss_max = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for p in _descendants(self.pid):
                st, name = _proc_status(p), _cmdline(p)
                if not st:
                    continue
                total += st.get("VmRSS", 0)
                if st.get("VmHWM", 0) >= self.peaks.get(p, ("", 0))[1]:
                    self.peaks[p] = (name, st.get("VmHWM", 0))
            self.tree_rss_max = max(self.tree_rss_max, total)
            time.sleep(self.period_s)


def _check_window(inp: Path, out: Path, k: int) -> float:
    """Max |output - model(window k of the input)| over the part of window k that is not cross-faded.

    Full windows reach the model in batches ``[4m, 4m + 4)`` (``EnhanceOptions.batch_windows``); the
    reference is computed on the same batch, since float32 results differ slightly between batch sizes.
    """
    opts = EnhanceOptions()
    chunk, overlap = round(opts.chunk_s * SR), round(opts.overlap_s * SR)
    hop, b = chunk - overlap, opts.batch_windows
    n_full = (sf.info(inp).frames - chunk) // hop + 1
    group = range(b * (k // b), min(b * (k // b) + b, n_full))
    x = np.stack([sf.read(inp, start=j * hop, frames=chunk, dtype="float32")[0] for j in group])
    y, _ = sf.read(out, start=k * hop + overlap, frames=hop - overlap, dtype="float32")
    enhancer, _, _ = load_enhancer("default")
    ref = enhancer(x)[k - group.start][overlap:hop]
    assert np.abs(ref).max() > 1e-3  # the window holds signal: the comparison means something
    return float(np.abs(y - ref).max())


@pytest.mark.timeout(1200)
def test_one_hour_file_bounded_memory(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    frames = write_long_file(in_dir / "hour.wav", 3600)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        _cli(in_dir, out_dir, "--local"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    monitor = TreeMonitor(proc.pid)
    monitor.start()
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    monitor.stop.set()
    monitor.join()
    wall = time.perf_counter() - t0
    peak = usage.ru_maxrss * 1024  # Linux: KiB
    print(
        f"\n1 h file, `batchsep enhance --local`: wall {wall:.1f} s ({3600 / wall:.0f}x real time), "
        f"peak RSS of the enhance process (ru_maxrss) {peak / 1e6:.0f} MB, largest sampled sum of "
        f"the process tree's RSS {monitor.tree_rss_max / 1e6:.0f} MB"
    )
    assert proc.returncode == 0, output
    assert peak < RSS_LIMIT_BYTES, f"peak RSS {peak / 1e6:.0f} MB >= 1500 MB"
    assert monitor.tree_rss_max < RSS_LIMIT_BYTES
    info = sf.info(out_dir / "hour.wav")
    assert (info.samplerate, info.frames) == (SR, frames)
    (row,) = committed_rows(str(out_dir))
    assert row["status"] == "ok" and abs(row["duration_s"] - 3600) < 1e-6
    k = int(58 * 60 * SR) // (round(EnhanceOptions().chunk_s * SR) - round(0.5 * SR))
    assert _check_window(in_dir / "hour.wav", out_dir / "hour.wav", k) < 1e-5


@pytest.mark.timeout(1800)
def test_three_hour_file_completes_on_ray(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    frames = write_long_file(in_dir / "three_hours.wav", 3 * 3600, seed=1)
    t0 = time.perf_counter()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.Popen(
        _cli(in_dir, out_dir, "--workers", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    monitor = TreeMonitor(proc.pid, period_s=0.05)
    monitor.start()
    try:
        output, _ = proc.communicate(timeout=1700)
    finally:
        if proc.poll() is None:
            proc.kill()
        monitor.stop.set()
        monitor.join()
    wall = time.perf_counter() - t0
    text = output.decode(errors="replace")
    actors = [hwm for name, hwm in monitor.peaks.values() if "MapWorker" in name]
    print(
        f"\n3 h file, `batchsep enhance --workers 1` (embedded Ray): wall {wall:.1f} s "
        f"({3 * 3600 / wall:.0f}x real time, Ray start included), peak RSS (VmHWM) of the model "
        f"actor {max(actors, default=0) / 1e6:.0f} MB, largest sampled sum of the whole tree's RSS "
        f"(driver + Ray services + actor) {monitor.tree_rss_max / 1e6:.0f} MB"
    )
    assert proc.returncode == 0, text[-3000:]
    assert actors, "the model actor was never seen"
    assert max(actors) < RSS_LIMIT_BYTES
    info = sf.info(out_dir / "three_hours.wav")
    assert (info.samplerate, info.frames, info.channels) == (SR, frames, 1)
    (row,) = committed_rows(str(out_dir))
    assert row["status"] == "ok" and row["error"] is None
    opts = EnhanceOptions()
    chunk = round(opts.chunk_s * SR)
    last_full = (frames - chunk) // (chunk - round(opts.overlap_s * SR))
    assert _check_window(in_dir / "three_hours.wav", out_dir / "three_hours.wav", last_full) < 1e-5
    y, _ = sf.read(out_dir / "three_hours.wav", start=frames - 10 * SR, dtype="float32")
    assert np.isfinite(y).all() and np.abs(y).max() > 1e-3  # the end is there and not silent
