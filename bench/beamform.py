"""Mask-based beamforming on simulated rooms: downmix+mask, best-channel+mask, delay-and-sum, MWF, MVDR and
GEV-BAN, by array size and T60, in one command (issue 25).

    .venv/bin/python bench/beamform.py                      # the table of docs/results.md
    .venv/bin/python bench/beamform.py --scenes 1 --mics 4  # a quick look
    .venv/bin/python bench/beamform.py --write /tmp/rooms   # also write the scenes (mixture, references)
    .venv/bin/python bench/beamform.py --frame-ms 0         # the beamformer in the model's 32 ms STFT
    .venv/bin/python bench/beamform.py --noise-power 1 --refine 0  # session 12's statistics
    .venv/bin/python bench/beamform.py --noise-hold-ms 128  # the talker's reverberant tail kept out of noise
    .venv/bin/python bench/beamform.py --mics 4 --beam-masks model,spatial,guided  # cACGMM-refined masks

Scenes (:mod:`batchsep.corpus.roomsim`): shoebox rooms, T60 as given, linear and circular arrays in turn
(5 cm between neighbours), a talker 1–2.5 m away (LibriSpeech speakers of ``../shared/extra/speech``:
unseen by the default model), 1 or 2 noise sources (household and Speech Commands background noise from
``../shared/data/noise``), SNR uniform in [-5, 5] dB at the reference microphone (channel 1).

Every method uses the same model (``--model``, default: the shipped one) and the same masks: the model's
mask on each channel, median over channels, carried over to the beamformer's STFT (128 ms frames unless
``--frame-ms``), gives the speech and noise spatial covariances over the whole file (noise weight
``(1 - mask)²``; ``--noise-hold-ms``: the mask held, ``--noise-power``), then ``--refine`` rounds (default 1)
estimate them again from the model's mask of the beamformer's output (the enhance stage's
``--multichannel beamform`` with its defaults, by the same classes: for a file shorter than a window (30 s)
its passes are exactly these calls); the beamformer's output then gets the model's mask (``+mask``, the
default post-mask). Baselines: the model on the channel downmix; on the
reference channel MVDR chose by SNR (``ref-channel+mask``); and on each channel alone, keeping the best
channel by SDR (``best-channel+mask``: an oracle choice, an upper bound for one channel).

Scores: BSS Eval SDR (dB, 512-tap distortion filters, as ``batchsep evaluate``) against the clean
reverberant image of the channel the output is of: a beamformer's reference channel (chosen by SNR), the
best channel's own, the mean of the images for the downmix (the CHiME convention: what a distortionless
beamformer preserves). A second table scores the same outputs against the early image of the same
channel (direct path + 50 ms, ``RoomScene.early_image``: what the default model's masks aim at; the best
channel is then chosen by that score). (Against the dry talker every method would be charged for the
room, which none of them removes.) Mean over scenes per (mics, T60).

``--beam-masks``: the statistics' mask sources to compare (``BeamformStream(mask=...)``): ``model`` (the
columns above), ``spatial`` / ``guided`` (the model's masks refined by a cACGMM, columns
``<method>+mask/<source>``, the post-mask still the model's). Last, the Pearson correlation of each source's
first-round mask with the oracle ratio mask ``Σ_c|S_c|² / Σ_c(|S_c|² + |N_c|²)`` of the reverberant images
(the beamformer's STFT), mean over scenes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from batchsep.corpus.roomsim import RoomConfig, simulate_room
from batchsep.dsp.spatial_mixture import spatial_speech_mask
from batchsep.evaluation.bss import sdr_only
from batchsep.pipeline.enhance.enhancer import load_enhancer
from batchsep.pipeline.enhance.multichannel import (
    BEAM_FRAME_S,
    MASK_PRIORS,
    NOISE_HOLD_S,
    NOISE_POWERS,
    REFINE,
    BeamformStream,
    MaskSource,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SR = 16000
METHODS = ("delay_and_sum", "mwf", "mvdr", "gev_ban")
COLUMNS = (
    "input",
    "downmix+mask",
    "ref-channel+mask",
    "best-channel+mask",
    *(f"{m}+mask" for m in METHODS),
    *METHODS,
)


def _load(path: Path) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    return soxr.resample(x, sr, SR) if sr != SR else x


def _pools() -> tuple[list[Path], list[Path]]:
    speech = sorted((SHARED / "extra" / "speech").rglob("*.flac"))
    noise = sorted((SHARED / "data" / "noise" / "household").glob("*.flac"))
    noise += sorted((SHARED / "data" / "noise" / "speech_commands").glob("*"))
    if not speech or not noise:
        sys.exit(f"no speech or noise under {SHARED}: see ../shared/data/README.md")
    return speech, noise


def scene(rng: np.random.Generator, n_mics: int, t60: float, geometry: str, seconds: float,
          speech: list[Path], noise: list[Path], max_order: int = RoomConfig.max_order):  # fmt: skip
    s = np.zeros(0, np.float32)
    while s.size < seconds * SR:  # utterances of one speaker until long enough
        s = np.concatenate([s, _load(speech[rng.integers(len(speech))])])
    s = s[: int(seconds * SR)]
    noises = []
    for i in rng.choice(len(noise), 2, replace=False):
        x = _load(noise[i])
        start = int(rng.integers(0, max(1, x.size - s.size)))
        noises.append(x[start:])
    config = RoomConfig(
        n_mics=n_mics, geometry=geometry, t60=t60, snr_db=float(rng.uniform(-5, 5)),  # type: ignore[arg-type]
        n_noises=int(rng.integers(1, 3)), max_order=max_order,
    )  # fmt: skip
    return simulate_room(s, noises, config, rng)


REFERENCES = ("reverberant", "early")


def mask_correlations(sc, masks: MaskSource, sources: list[str]) -> dict[str, float]:
    """``{"corr:<source>": r}``: each source's first-round mask against the oracle ratio mask."""
    X, m = masks(sc.mixture.astype(np.float32))
    s2 = np.sum(np.abs(masks.stft(sc.speech_image)) ** 2, axis=0)
    n2 = np.sum(np.abs(masks.stft(sc.noise_image)) ** 2, axis=0)
    irm = s2 / np.maximum(s2 + n2, 1e-20)
    out = {}
    for src in sources:
        est = m if src == "model" else spatial_speech_mask(X, m, prior=MASK_PRIORS[src])
        out[f"corr:{src}"] = float(np.corrcoef(est.ravel(), irm.ravel())[0, 1])
    return out


def score_scene(
    sc, enhancer, frame_s: float | None = BEAM_FRAME_S, sources: tuple[str, ...] = ("model",),
    **beam_options,
) -> dict[str, float]:  # fmt: skip
    """``{"<reference>:<column>": SDR}`` for both references (:data:`REFERENCES`), and the masks'
    correlations (:func:`mask_correlations`)."""
    x = sc.mixture.astype(np.float32)
    per_channel = enhancer(x)
    downmix = enhancer(x.mean(axis=0, keepdims=True))[0]
    masks = MaskSource(enhancer, SR, frame_s)
    beams = {}
    for src in sources:
        for method in METHODS:
            beam = BeamformStream(masks, method, mask=src, **beam_options)
            beam.fit(x)  # the statistics passes (and refinement rounds)
            y = beam.apply(x)  # the last pass: the filter
            key = method if src == "model" else f"{method}/{src}"
            beams[key] = (beam.ref, y[0], enhancer(y)[0])
    out = mask_correlations(sc, masks, list(sources))
    for name, img in zip(REFERENCES, (sc.speech_image, sc.early_image), strict=True):
        out[f"{name}:input"] = sdr_only(img[0], x[0])
        out[f"{name}:best-channel+mask"] = max(
            sdr_only(img[c], per_channel[c]) for c in range(len(x))
        )
        out[f"{name}:downmix+mask"] = sdr_only(img.mean(axis=0), downmix)
        # the model on the channel MVDR chose by SNR: a single channel, no oracle
        out[f"{name}:ref-channel+mask"] = sdr_only(
            img[beams["mvdr"][0]], per_channel[beams["mvdr"][0]]
        )
        for key, (ref, y, y_mask) in beams.items():
            method, _, src = key.partition("/")
            tag = f"/{src}" if src else ""
            out[f"{name}:{method}{tag}"] = sdr_only(img[ref], y)
            out[f"{name}:{method}+mask{tag}"] = sdr_only(img[ref], y_mask)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=3, help="scenes per (mics, T60)")
    ap.add_argument("--mics", default="2,4,8")
    ap.add_argument("--t60", default="0.2,0.45,0.7")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--model", default="default")
    ap.add_argument("--seed", type=int, default=25)
    ap.add_argument("--frame-ms", type=float, default=BEAM_FRAME_S * 1000,
                    help="the beamformer's STFT frame (ms); 0: the model's own STFT (32 ms)")  # fmt: skip
    ap.add_argument("--noise-hold-ms", type=float, default=NOISE_HOLD_S * 1000,
                    help="the speech mask is held this long for the noise weights (ms)")  # fmt: skip
    ap.add_argument("--noise-power", type=float, default=None,
                    help=f"noise weight exponent (default: per filter, {NOISE_POWERS})")  # fmt: skip
    ap.add_argument("--refine", type=int, default=REFINE,
                    help="rounds of statistics from the model's mask of the beamformed output")  # fmt: skip
    ap.add_argument("--beam-masks", default="model",
                    help="the statistics' mask sources, comma-separated: model, spatial, guided")  # fmt: skip
    ap.add_argument("--write", type=Path, default=None, help="write each scene's audio here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sources = tuple(args.beam_masks.split(","))
    if "model" not in sources or not set(sources) <= {"model", *MASK_PRIORS}:
        sys.exit(
            f"--beam-masks {args.beam_masks}: a list of model, spatial, guided with model in it"
        )
    columns = COLUMNS + tuple(
        f"{m}+mask/{src}" for src in sources if src != "model" for m in METHODS
    )
    enhancer, name, sha = load_enhancer(args.model)
    speech, noise = _pools()
    mics = [int(m) for m in args.mics.split(",")]
    t60s = [float(t) for t in args.t60.split(",")]
    results: dict[tuple[int, float], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    t0 = time.perf_counter()
    for n_mics in mics:
        for t60 in t60s:
            for k in range(args.scenes):
                rng = np.random.default_rng([args.seed, n_mics, int(t60 * 100), k])
                geometry = ("linear", "circular")[k % 2]
                sc = scene(rng, n_mics, t60, geometry, args.seconds, speech, noise)
                if args.write:
                    d = args.write / f"mics{n_mics}_t60_{t60:g}_{k}"
                    d.mkdir(parents=True, exist_ok=True)
                    for part in ("mixture", "speech_image", "noise_image"):
                        sf.write(d / f"{part}.flac", getattr(sc, part).T, SR, subtype="PCM_24")
                    sf.write(d / "dry.flac", sc.dry, SR, subtype="PCM_24")
                frame_s = args.frame_ms / 1000 if args.frame_ms > 0 else None
                options = dict(noise_hold_s=args.noise_hold_ms / 1000,
                               noise_power=args.noise_power, refine=args.refine)  # fmt: skip
                for key, value in score_scene(sc, enhancer, frame_s, sources, **options).items():
                    results[(n_mics, t60)][key].append(value)
                print(f"  {n_mics} mics, T60 {t60:g} s, {geometry}: scene {k + 1}/{args.scenes} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    frame = f"{args.frame_ms:g} ms" if args.frame_ms > 0 else "the model's STFT"
    print(f"model {name} ({sha[:12]}), {args.scenes} scenes per row, {args.seconds:g} s each, beamformer "
          f"frames {frame}, noise weight (1 - mask held {args.noise_hold_ms:g} ms)^{args.noise_power or 'default'}, "
          f"{args.refine} refinement round(s), statistics' masks: {', '.join(sources)}")  # fmt: skip
    for ref in REFERENCES:
        print(f"\nSDR (dB) vs the output channel's {ref} clean image")
        print("| mics | T60 (s) | " + " | ".join(columns) + " |")
        print("|" + "---|" * (len(columns) + 2))
        overall: dict[str, list[float]] = defaultdict(list)
        for (n_mics, t60), cols in results.items():
            means = {c: float(np.mean(cols[f"{ref}:{c}"])) for c in columns}
            print(
                f"| {n_mics} | {t60:g} | " + " | ".join(f"{means[c]:.1f}" for c in columns) + " |"
            )
            for c in columns:
                overall[f"{n_mics}:{c}"] += cols[f"{ref}:{c}"]
        print()
        for n_mics in mics:
            best = np.array(overall[f"{n_mics}:best-channel+mask"])
            for src in sources:
                tag = "" if src == "model" else f"/{src}"
                gains = {m: np.array(overall[f"{n_mics}:{m}+mask{tag}"]) - best for m in METHODS}
                print(f"{n_mics} mics, vs {ref} images, {src} masks, gain over best-channel+mask (dB, mean "
                      "over T60s and scenes): "
                      + ", ".join(f"{m}+mask {g.mean():+.2f}" for m, g in gains.items()))  # fmt: skip
                if src != "model":  # paired, scene by scene, against the model's masks
                    diff = {m: np.array(overall[f"{n_mics}:{m}+mask{tag}"])
                            - np.array(overall[f"{n_mics}:{m}+mask"]) for m in METHODS}  # fmt: skip
                    print(f"    {src} - model masks: " + ", ".join(
                        f"{m}+mask {d.mean():+.2f} (better in {int(np.sum(d > 0))}/{d.size}, "
                        f"min {d.min():+.1f}, max {d.max():+.1f})" for m, d in diff.items()))  # fmt: skip
    print(
        "\nmask correlation with the oracle ratio mask of the reverberant images (first round, mean):"
    )
    for (n_mics, t60), cols in results.items():
        print(f"  {n_mics} mics, T60 {t60:g} s: "
              + ", ".join(f"{src} {np.mean(cols[f'corr:{src}']):.2f}" for src in sources))  # fmt: skip
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
