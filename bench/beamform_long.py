"""A long multichannel file through ``--multichannel beamform`` in bounded memory (issue 25).

    /usr/bin/time -v .venv/bin/python bench/beamform_long.py --minutes 60 --mics 8 /tmp/long8

Writes ``DIR/long.wav`` (``--mics`` channels, 16 kHz, 16-bit WAV; kept between runs): real LibriSpeech
utterances (``../shared/data/speech``) looped with a new shift per minute, seen by a linear array as
integer delays of 0..mics-1 samples, plus household noise from another direction (delays 0..3·(mics-1))
and independent sensor noise, about 0 dB SNR. Then enhances it in this process with the shipped model
(``enhance_file``, the enhance stage's per-file path: whole-file statistics, 30 s windows; three passes
over the file: the statistics, one refinement round, the filter) and prints the row, the output's length, and this process's peak RSS (``ru_maxrss``), which
``/usr/bin/time -v`` reports too.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from batchsep.pipeline.enhance.enhancer import load_enhancer
from batchsep.pipeline.enhance.file import EnhanceOptions, enhance_file

SR = 16000
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _bed(root: Path, pattern: str, seconds: float) -> np.ndarray:
    parts, total = [], 0
    for f in sorted(root.rglob(pattern))[::7]:
        x, sr = sf.read(f, dtype="float32", always_2d=True)
        if sr != SR:
            continue
        parts.append(x.mean(axis=1))
        total += parts[-1].size
        if total >= seconds * SR:
            break
    return np.resize(np.concatenate(parts), int(seconds * SR))  # looped when short


def write_long(path: Path, minutes: float, mics: int) -> None:
    rng = np.random.default_rng(0)
    speech = _bed(SHARED / "speech", "*.flac", 60)
    noise = _bed(SHARED / "noise" / "household", "*.flac", 60)
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2))
    sensor = 0.01 * rng.normal(size=(speech.size, mics)).astype(np.float32)
    with sf.SoundFile(path, "w", SR, mics, format="WAV", subtype="PCM_16") as f:
        for minute in range(int(np.ceil(minutes))):
            s = np.roll(speech, 997 * minute)
            n = np.roll(noise, 1531 * minute)
            block = np.stack([np.roll(s, c) + np.roll(n, 3 * c) for c in range(mics)], axis=1)
            block += np.roll(sensor, 7919 * minute, axis=0)
            f.write(0.3 * block / np.abs(block).max())


def _half(windows: np.ndarray) -> np.ndarray:
    return (0.5 * np.asarray(windows)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--mics", type=int, default=8)
    ap.add_argument("--beamformer", default="mvdr")
    ap.add_argument(
        "--model",
        default="default",
        help="'default' (the shipped model), or 'gain': a stand-in that returns half its input (a "
        "constant mask; the streaming, the passes and the beamforming are the same, the model's "
        "cost is not: for the memory of the stream alone)",
    )
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    src = args.dir / "long.wav"
    if not src.exists() or sf.info(src).channels != args.mics:
        t = time.perf_counter()
        write_long(src, args.minutes, args.mics)
        print(
            f"wrote {src} ({sf.info(src).duration / 60:.0f} min, {args.mics} ch) in {time.perf_counter() - t:.0f} s"
        )
    enhancer = load_enhancer(args.model)[0] if args.model != "gain" else _half
    opts = EnhanceOptions(multichannel="beamform", beamformer=args.beamformer)  # type: ignore[arg-type]
    t = time.perf_counter()
    row = enhance_file(str(src), str(args.dir / "out.flac"), enhancer, opts)
    wall = time.perf_counter() - t
    info = sf.info(args.dir / "out.flac") if row["status"] == "ok" else None
    print(
        {
            k: row.get(k)
            for k in (
                "status",
                "error",
                "warning",
                "duration_s",
                "t_decode_s",
                "t_model_s",
                "t_total_s",
            )
        }
    )
    if info is not None:
        print(f"output: {info.channels} ch, {info.frames} frames (input {sf.info(src).frames})")
    print(f"wall {wall:.0f} s ({row['duration_s'] / wall:.1f}x real time); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
