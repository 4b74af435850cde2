"""The beamformers' ceiling on the simulated rooms of ``bench/beamform.py``: oracle statistics, no model (issue 25).

    .venv/bin/python bench/beamform_oracle.py                 # 4 mics, T60 0.2 / 0.45 / 0.7 s, 3 scenes each
    .venv/bin/python bench/beamform_oracle.py --max-order 0   # the same arrays without reflections

The same scenes as ``bench/beamform.py`` (same seeds). The speech and noise spatial covariances come from
the true speech and noise images (no mask); each filter is applied to the speech image and to the noise
image separately, which splits its output into speech and residual noise. Printed per (T60, beamformer
frame), mean over scenes, in dB:

* ``sdr``: BSS Eval SDR (512-tap filters) of the output against the reference channel's reverberant image;
* ``speech``: the SDR of the output's speech part alone against the same image: what the filter does to the
  speech (a distortionless filter of a rank-one talker would give ∞; 30+ dB here without reflections);
* ``nr``: noise reduction (noise power at the reference microphone over the output's residual noise);
* ``+irm``: SDR after an oracle ideal ratio mask (from the output's own speech and noise parts, 32 ms STFT);
* ``early``: ``sdr`` against the reference channel's early image (direct path + 50 ms) instead;
* ``best-irm``: the oracle ratio mask on the best single channel (the ceiling of ``best-channel+mask``).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from beamform import SR, _pools, scene  # type: ignore[import-not-found]  # bench/ is on sys.path

from batchsep.corpus.roomsim import RoomConfig
from batchsep.dsp import beamform as bf
from batchsep.dsp.stft import istft, stft
from batchsep.evaluation.bss import sdr_only

METHODS = ("mvdr", "gev_ban", "mwf")


def _stft(x: np.ndarray, n_fft: int) -> np.ndarray:
    return stft(
        np.ascontiguousarray(x, np.float32), n_fft=n_fft, hop_length=n_fft // 4, window="hann"
    )


def _istft(Y: np.ndarray, length: int, n_fft: int) -> np.ndarray:
    Y = np.ascontiguousarray(Y, np.complex64)
    return istft(Y, length=length, n_fft=n_fft, hop_length=n_fft // 4, window="hann")


def _irm(speech: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The oracle ratio mask |S|²/(|S|²+|N|²) applied to ``speech + noise`` (32 ms frames)."""
    S, N = _stft(speech, 512), _stft(noise, 512)
    m = np.abs(S) ** 2 / (np.abs(S) ** 2 + np.abs(N) ** 2 + 1e-12)
    return _istft(m * (S + N), speech.shape[-1], 512)


def _covariance(X: np.ndarray) -> np.ndarray:
    xf = np.transpose(X, (1, 0, 2)).astype(np.complex128)
    return xf @ np.conj(np.swapaxes(xf, -1, -2)) / X.shape[-1]


def score(s: np.ndarray, n: np.ndarray, early: np.ndarray, frames: list[int]) -> dict[str, float]:
    n_len, ref = s.shape[1], 0
    out = {"best-irm": max(sdr_only(s[c], _irm(s[c], n[c])) for c in range(len(s)))}
    for n_fft in frames:
        Xs, Xn = _stft(s, n_fft), _stft(n, n_fft)
        phi_s, phi_n = _covariance(Xs), _covariance(Xn)
        for method in METHODS:
            w = bf.design(method, phi_s, phi_n, ref=ref).w
            ys = _istft(bf.apply_filter(w, Xs), n_len, n_fft)
            yn = _istft(bf.apply_filter(w, Xn), n_len, n_fft)
            key = f"{method} {n_fft * 1000 // SR} ms"
            out[f"{key}:sdr"] = sdr_only(s[ref], ys + yn)
            out[f"{key}:speech"] = sdr_only(s[ref], ys)
            out[f"{key}:nr"] = 10 * np.log10(np.mean(n[ref] ** 2) / max(np.mean(yn**2), 1e-20))
            out[f"{key}:+irm"] = sdr_only(s[ref], _irm(ys, yn))
            out[f"{key}:early"] = sdr_only(early[ref], ys + yn)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--mics", type=int, default=4)
    ap.add_argument("--t60", default="0.2,0.45,0.7")
    ap.add_argument("--frames-ms", default="32,64,128", help="beamformer STFT frames (ms)")
    ap.add_argument("--max-order", type=int, default=RoomConfig.max_order,
                    help="image-source order (0: no reflections)")  # fmt: skip
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=25)
    args = ap.parse_args()
    speech, noise = _pools()
    frames = [int(f) * SR // 1000 for f in args.frames_ms.split(",")]
    t0 = time.perf_counter()
    print(f"{args.mics} mics, oracle statistics, {args.scenes} scenes per T60 (the scenes of "
          f"bench/beamform.py), max_order {args.max_order}; dB, mean over scenes")  # fmt: skip
    print("| T60 (s) | beamformer, frame | sdr | speech | nr | +irm | early | best-irm |")
    print("|---|---|---|---|---|---|---|---|")
    for t60 in (float(t) for t in args.t60.split(",")):
        res: dict[str, list[float]] = defaultdict(list)
        for k in range(args.scenes):
            rng = np.random.default_rng([args.seed, args.mics, int(t60 * 100), k])
            geometry = ("linear", "circular")[k % 2]
            sc = scene(rng, args.mics, t60, geometry, args.seconds, speech, noise, args.max_order)
            assert sc.early_image is not None
            for key, v in score(sc.speech_image, sc.noise_image, sc.early_image, frames).items():
                res[key].append(v)
        best = np.mean(res["best-irm"])
        for n_fft in frames:
            for method in METHODS:
                key = f"{method} {n_fft * 1000 // SR} ms"
                cols = [
                    np.mean(res[f"{key}:{c}"]) for c in ("sdr", "speech", "nr", "+irm", "early")
                ]
                print(
                    f"| {t60:g} | {key} | "
                    + " | ".join(f"{v:.1f}" for v in cols)
                    + f" | {best:.1f} |"
                )
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
