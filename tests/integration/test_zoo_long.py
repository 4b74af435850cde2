"""A 1-hour file through a zoo model with the real ``batchsep enhance`` command: bounded memory, exact
length, still time-aligned near its end (heavy: run with ``pytest -m heavy``).

The zoo models stream the whole file frame by frame (their state carries across it, no windows), so the
process's peak RSS (``ru_maxrss`` of the ``--local`` CLI process, which runs the whole stage) must not grow
with the file: < 1.5 GB for an hour.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from zoo_helpers import require_zoo

pytestmark = [pytest.mark.heavy, pytest.mark.slow, pytest.mark.realdata]

SR = 16000
RSS_LIMIT_BYTES = 1.5e9


def write_hour(path: Path, shared_data: Path, seconds: int = 3600) -> int:
    """Real speech (LibriSpeech) with real household noise at about 5 dB SNR, a minute at a time."""
    rng = np.random.default_rng(0)
    files = sorted((shared_data / "speech" / "librispeech").rglob("*.flac"))[::37][:20]
    speech = np.concatenate([sf.read(f, dtype="float32")[0] for f in files])
    noise = sf.read(
        sorted((shared_data / "noise" / "household").glob("*.flac"))[0], dtype="float32"
    )[0]
    noise = np.resize(noise, speech.shape[0])
    gain = np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10**0.5)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for _ in range(seconds // 60):
            s = np.resize(np.roll(speech, int(rng.integers(speech.shape[0]))), 60 * SR)
            n = np.resize(np.roll(noise, int(rng.integers(noise.shape[0]))), 60 * SR)
            f.write(np.clip(0.5 * (s + gain * n), -1, 1))
    return seconds * SR


def _lag(y: np.ndarray, x: np.ndarray) -> int:
    n = x.shape[0]
    c = np.fft.irfft(np.fft.rfft(y, 2 * n) * np.conj(np.fft.rfft(x, 2 * n)))
    k = int(np.argmax(c))
    return k if k < n else k - 2 * n


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("model", ["nsnet2", "deepfilternet3"])
def test_one_hour_streamed_in_bounded_memory(tmp_path: Path, shared_data: Path, model: str) -> None:
    require_zoo()
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    frames = write_hour(in_dir / "hour.wav", shared_data)
    cmd = [sys.executable, "-m", "batchsep.cli.main", "enhance", str(in_dir), str(out_dir),
           "--model", model, "--no-emotion", "--local"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    peak = usage.ru_maxrss * 1024
    print(f"{model}: 1 h file, peak RSS {peak / 1e6:.0f} MB\n{output}")
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert peak < RSS_LIMIT_BYTES
    info = sf.info(out_dir / "hour.wav")
    assert (info.frames, info.samplerate) == (frames, SR)
    start = 58 * 60 * SR  # near the end: nothing dropped, duplicated or shifted over the hour
    x = sf.read(in_dir / "hour.wav", start=start, frames=20 * SR, dtype="float32")[0]
    y = sf.read(out_dir / "hour.wav", start=start, frames=20 * SR, dtype="float32")[0]
    assert abs(_lag(y, x)) <= 2
