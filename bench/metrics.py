"""Benchmark: batchsep BSS Eval (SDR/SIR/SAR) vs a plain mir_eval loop over the same files.

Run ``python bench/metrics.py`` from the repository root. Files: 20 synthetic 4-s mixtures at
16 kHz plus the 6 real VoiceBank-DEMAND pairs of ../shared/data (when present; set BATCHSEP_DATA to
its location otherwise). "Enhanced" signals have filtering, residual noise and artifacts (synthetic)
or come from an oracle ratio mask (real). Both paths use one thread (BLAS and torch) so the
comparison is fair on a shared machine. Prints files/s of each path, the ratio, and the largest
disagreement in dB.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import mir_eval  # noqa: E402
import numpy as np  # noqa: E402
import scipy.signal as ss  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from batchsep.dsp import irm, istft, stft  # noqa: E402
from batchsep.evaluation.bss import bss_eval, bss_eval_many  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synthetic(n_files: int, seconds: float, sr: int = 16000, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    files = []
    for _ in range(n_files):
        clean = ss.lfilter([1.0], [1.0, -0.9], rng.standard_normal(n)) * np.hanning(n)
        noise = ss.lfilter([1.0], [1.0, -rng.uniform(0, 0.95)], rng.standard_normal(n))
        noise *= np.sqrt(np.sum(clean**2) / np.sum(noise**2) / 10 ** (rng.uniform(-5, 15) / 10))
        fir = np.r_[1.0, rng.standard_normal(7) * 0.1]
        enhanced = (
            ss.lfilter(fir, [1.0], clean)
            + 0.3 * noise
            + 0.05 * rng.standard_normal(n) * clean.std()
        )
        files.append(("synthetic", clean, noise, enhanced))
    return files


def real_pairs() -> list[tuple]:
    root = Path(os.environ.get("BATCHSEP_DATA", REPO.parent / "shared" / "data"))
    folder = root / "pairs" / "voicebank_demand"
    files = []
    for path in sorted((folder / "clean").glob("*.flac")):
        clean, _ = sf.read(path, dtype="float64")
        noisy, _ = sf.read(folder / "noisy" / path.name, dtype="float64")
        s, x = stft(clean), stft(noisy)
        enhanced = np.asarray(istft(irm(s, x - s) * x, length=noisy.size), dtype=np.float64)
        files.append((path.name, clean, noisy - clean, enhanced))
    return files


def run_mir_eval(files: list[tuple]) -> np.ndarray:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bss_eval_sources is deprecated in mir_eval 0.8
        for _, clean, noise, enhanced in files:
            mixture = clean + noise
            sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(
                np.stack([clean, noise]),
                np.stack([enhanced, mixture - enhanced]),
                compute_permutation=False,
            )
            out.append([sdr[0], sir[0], sar[0]])
    return np.array(out)


def run_batchsep(files: list[tuple]) -> np.ndarray:
    out = []
    for _, clean, noise, enhanced in files:
        r = bss_eval(clean, enhanced, noise_reference=noise)
        out.append([r.sdr, r.sir, r.sar])
    return np.array(out)


def run_batchsep_with_input(files: list[tuple]) -> None:
    for _, clean, noise, enhanced in files:
        bss_eval_many(clean, np.stack([enhanced, clean + noise]), noise_reference=noise)


def timed(fn, files: list[tuple], repeat: int) -> tuple[float, object]:
    best, result = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(files)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-synthetic", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=1, help="best of N timings")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = synthetic(args.n_synthetic, args.seconds) + real_pairs()
    audio_s = sum(f[1].size for f in files) / 16000
    n_real = sum(f[0] != "synthetic" for f in files)
    print(
        f"{len(files)} files ({args.n_synthetic} synthetic x {args.seconds:g} s + {n_real} real), "
        f"{audio_s:.1f} s of audio, 1 thread"
    )
    run_batchsep(files[:1])  # warm-up (imports, FFT plans)
    t_mir, ref = timed(run_mir_eval, files, args.repeat)
    t_ours, ours = timed(run_batchsep, files, args.repeat)
    t_both, _ = timed(run_batchsep_with_input, files, args.repeat)
    diff = np.abs(np.asarray(ours) - np.asarray(ref))
    print(f"mir_eval.bss_eval_sources loop : {len(files) / t_mir:7.2f} files/s ({t_mir:.2f} s)")
    print(f"batchsep bss_eval              : {len(files) / t_ours:7.2f} files/s ({t_ours:.2f} s)")
    print(f"speed-up                       : {t_mir / t_ours:7.2f}x")
    print(
        f"batchsep enhanced + input      : {len(files) / t_both:7.2f} files/s "
        f"(both estimates share one factorisation; {2 * t_mir / t_both:.2f}x vs 2 mir_eval calls)"
    )
    print(
        f"max |difference| SDR/SIR/SAR   : {diff[:, 0].max():.2e} / {diff[:, 1].max():.2e} / "
        f"{diff[:, 2].max():.2e} dB"
    )


if __name__ == "__main__":
    main()
