"""Seed 000's question, measured: does enhancing noisy speech before tagging its emotion help?

Held-out actors' RAVDESS utterances are mixed with noise recordings at a seeded SNR drawn uniformly in
[snr_min, snr_max] dB (batchsep.dsp.mix_at_snr), then tagged by the emotion tagger (the product path of
``batchsep tag`` / ``enhance --emotion``: voiced segments -> per-file duration-weighted probabilities) as
  clean      the original utterance
  noisy      the mixture
  enhanced   the mixture through an enhancement model, one row per --enhancer: a model folder or
             ``default`` (window enhancers at 16 kHz), or a zoo model (``rnnoise``, ``nsnet2``,
             ``deepfilternet3``), which streams at its own rate: the mixture is resampled to that rate,
             enhanced and resampled back to 16 kHz (as ``batchsep enhance`` does), see :func:`enhance`
and, to separate the classifier from the voice-activity detector, "noisy, clean VAD" / "enhanced, clean
VAD": the same signals tagged on the voiced spans found on the clean utterance.
Prints accuracy / UAR / macro-F1 per condition, overall and per SNR band, as a Markdown table.
Noise: ``--noise-from RUN`` takes the test-split noise files of a prepare run (unseen by enhancers trained
on that run's train split), else every audio file under ``--noise-dir``.

Run (docs/emotion.md; ~20 s on 1 core for 240 files and 2 enhancers):
  .venv/bin/python bench/emotion_noise.py --tagger default-emotion --enhancer default \
      --enhancer /tmp/htrain/models/lstm-k2-h54-100 --noise-from /tmp/htrain/cmp \
      --actors 13 14 15 16 --snr-min 0 --snr-max 10 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from batchsep.corpus.ravdess import parse_ravdess_name
from batchsep.dsp.mix import fit_length, mix_at_snr
from batchsep.dsp.resample import resample, to_rate_mono
from batchsep.dsp.vad import voiced_segments
from batchsep.evaluation.emotion import emotion_summary
from batchsep.io import audio, storage
from batchsep.models.emotion import EMOTIONS
from batchsep.pipeline.enhance.enhancer import load_enhancer
from batchsep.pipeline.enhance.tag import TAG_SR, EmotionTagger
from batchsep.pipeline.prepare.run import read_mixtures


def load(uri: str) -> np.ndarray:
    d = audio.decode(storage.read_bytes(uri))
    return to_rate_mono(d.samples, d.sample_rate, TAG_SR)


def noise_files(args: argparse.Namespace) -> list[str]:
    if args.noise_from:
        rows = read_mixtures(args.noise_from)
        return sorted(
            {r["noise_uri"] for r in rows if r["split"] == "test" and r["status"] == "ok"}
        )
    return [e.uri for e in storage.list_files(args.noise_dir) if audio.is_audio_name(e.rel_path)]


def enhance(enhancer: object, x: np.ndarray) -> np.ndarray:
    """``x`` (16 kHz) enhanced at the enhancer's own rate, back at 16 kHz with ``x``'s length."""
    sr = int(getattr(enhancer, "sample_rate", TAG_SR))
    xin = x.astype(np.float32) if sr == TAG_SR else resample(x.astype(np.float32), TAG_SR, sr)
    y = np.asarray(enhancer(xin[None, :])[0], np.float32)  # type: ignore[operator]
    if sr != TAG_SR:
        y = resample(y, sr, TAG_SR)
    return np.pad(y, (0, max(0, x.shape[0] - y.shape[0])))[: x.shape[0]]


def tag_spans(tagger: EmotionTagger, x: np.ndarray, spans: list[tuple[int, int]]) -> int:
    """The tagger's per-file decision on ``x`` with given voiced spans (e.g. found on the clean signal)."""
    if not spans:
        return -1
    p = tagger.predict([x[s:e] for s, e in spans])
    w = np.array([e - s for s, e in spans], float)
    return int(((w[:, None] * p).sum(0)).argmax())


def tag(tagger: EmotionTagger, x: np.ndarray) -> int:
    s = tagger.stream()
    s.feed(x.astype(np.float32))
    label = s.result()["emotion_label"]
    return -1 if label is None else EMOTIONS.index(label)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tagger", default="default-emotion")
    p.add_argument("--enhancer", action="append", default=[])
    p.add_argument("--ravdess", default="/work/shared/data/emotion/ravdess")
    p.add_argument("--noise-dir", default="/work/shared/data/noise")
    p.add_argument("--noise-from", default=None, help="prepare run: use its test-split noise files")
    p.add_argument("--actors", type=int, nargs="+", default=[13, 14, 15, 16])
    p.add_argument("--snr-min", type=float, default=0.0)
    p.add_argument("--snr-max", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write per-file results here")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    tagger = EmotionTagger(args.tagger)
    enhancers = {Path(u).name or u: load_enhancer(u)[0] for u in args.enhancer}
    noises = noise_files(args)
    files = [
        e for e in storage.list_files(args.ravdess)
        if audio.is_audio_name(e.rel_path) and parse_ravdess_name(e.rel_path).actor in args.actors
    ]  # fmt: skip
    rng = np.random.default_rng(args.seed)
    cache: dict[str, np.ndarray] = {}
    rows = []
    for e in files:
        s = load(e.uri)
        nuri = noises[int(rng.integers(len(noises)))]
        n = cache.setdefault(nuri, load(nuri))
        offset = int(rng.integers(0, max(1, n.shape[0] - s.shape[0])))
        snr = float(rng.uniform(args.snr_min, args.snr_max))
        mix, _, _ = mix_at_snr(s, fit_length(n, s.shape[0], offset=offset), snr)
        peak = float(np.abs(mix).max())
        if peak > 0.99:  # keep the mixture in range (scales speech and noise alike: same SNR)
            mix, s = mix * (0.99 / peak), s * (0.99 / peak)
        info = parse_ravdess_name(e.rel_path)
        row = {"rel_path": e.rel_path, "actor": info.actor, "label": info.label, "snr_db": snr,
               "noise": nuri.rsplit("/", 2)[-2], "clean": tag(tagger, s), "noisy": tag(tagger, mix)}  # fmt: skip
        spans = voiced_segments(
            s, TAG_SR, max_len_s=tagger.max_segment_s, min_len_s=tagger.min_segment_s
        )
        row["noisy, clean VAD"] = tag_spans(tagger, mix, spans)
        for name, enh in enhancers.items():
            y = enhance(enh, mix)
            row[f"enhanced:{name}"] = tag(tagger, y)
            row[f"enhanced:{name}, clean VAD"] = tag_spans(tagger, y, spans)
        rows.append(row)
    conds = ["clean", "noisy", *[f"enhanced:{k}" for k in enhancers], "noisy, clean VAD",
             *[f"enhanced:{k}, clean VAD" for k in enhancers]]  # fmt: skip
    y = np.array([r["label"] for r in rows])
    snr = np.array([r["snr_db"] for r in rows])
    bands = [("all", np.ones_like(snr, bool))]
    mid = (args.snr_min + args.snr_max) / 2
    bands += [
        (f"{args.snr_min:g}-{mid:g} dB", snr < mid),
        (f"{mid:g}-{args.snr_max:g} dB", snr >= mid),
    ]
    print(f"tagger {args.tagger}; actors {args.actors}; {len(rows)} files; {len(noises)} noise files; "
          f"SNR U({args.snr_min:g}, {args.snr_max:g}) dB, seed {args.seed}; {time.time() - t0:.0f} s")  # fmt: skip
    print("\n| condition | SNR band | n | accuracy | UAR | macro-F1 |\n|---|---|---|---|---|---|")
    for c in conds:
        pred = np.array([r[c] for r in rows])
        for band, sel in bands:
            # an untagged file (no voiced audio) counts as wrong: map it to a label it is not
            pr = np.where(pred[sel] < 0, (y[sel] + 1) % 8, pred[sel])
            m = emotion_summary(y[sel], pr)
            print(
                f"| {c} | {band} | {m['n']} | {m['accuracy']:.3f} | {m['uar']:.3f} | {m['macro_f1']:.3f} |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
