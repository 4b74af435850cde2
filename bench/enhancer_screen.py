"""Quick screening of enhancers on `bench/zoo.py`'s held-out sets: SI-SDRi, PESQ and STOI only.

Run:
  .venv/bin/python bench/enhancer_screen.py ZOO_DATA MODEL [MODEL ...] [--sets lo,hi,tel,vb]

``ZOO_DATA`` is a data folder `bench/zoo.py` wrote (e.g. ``OUT/data-100-seed1``: ``lo``/``hi`` prepare runs and
``tel`` pairs); ``vb`` is ``../shared/data/pairs/voicebank_demand``. Each MODEL (``default``, a checkpoint folder)
is loaded once with :func:`batchsep.pipeline.enhance.enhancer.load_enhancer` and run on whole files in this
process (one thread); 8 kHz ``tel`` files are resampled to 16 kHz and back, as ``batchsep enhance`` does. No BSS
Eval SDR and no DNSMOS, which make `bench/zoo.py` slow: a few minutes for 300 files instead of most of an hour,
to choose between training runs; the figures that count are `bench/zoo.py`'s, against a peer in the same run.
Prints one line per set and model (mean SI-SDRi in dB, PESQ, STOI) and writes ``--out`` (JSON) if given.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import soundfile as sf
import soxr
import torch

from batchsep.evaluation.metrics import pesq_score, si_sdr, stoi_score
from batchsep.pipeline.enhance.enhancer import load_enhancer

REPO = Path(__file__).resolve().parents[1]


def sets(data: Path) -> dict[str, tuple[Path, Path]]:
    vb = REPO.parent / "shared" / "data" / "pairs" / "voicebank_demand"
    return {
        "lo": (data / "lo/mixtures/test/noisy", data / "lo/mixtures/test/clean"),
        "hi": (data / "hi/mixtures/test/noisy", data / "hi/mixtures/test/clean"),
        "tel": (data / "tel/noisy", data / "tel/clean"),
        "vb": (vb / "noisy", vb / "clean"),
    }


def mono(x: np.ndarray) -> np.ndarray:
    return x.mean(1) if x.ndim > 1 else x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--sets", default="lo,hi,tel,vb")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    enhancers = {m: load_enhancer(m)[0] for m in args.models}
    out: dict[str, dict[str, list[float]]] = {}
    for name, (noisy_dir, clean_dir) in sets(args.data).items():
        if name not in args.sets.split(","):
            continue
        scores: dict[str, list[tuple[float, float, float]]] = {m: [] for m in args.models}
        t0 = time.perf_counter()
        files = sorted(p for p in noisy_dir.iterdir() if p.suffix in (".flac", ".wav"))
        for f in files:
            x, sr = sf.read(f)
            c, _ = sf.read(clean_dir / f.name)
            x, c = mono(x), mono(c)
            x16 = soxr.resample(x, sr, 16000) if sr != 16000 else x
            before = si_sdr(c, x)
            for m, enhance in enhancers.items():
                y = enhance(x16[None].astype(np.float32))[0]
                y = (soxr.resample(y, 16000, sr) if sr != 16000 else y)[: len(c)]
                scores[m].append(
                    (si_sdr(c, y) - before, pesq_score(c, y, sr), stoi_score(c, y, sr))
                )
        out[name] = {m: np.nanmean(np.array(v), 0).round(3).tolist() for m, v in scores.items()}
        print(f"{name}: {len(files)} files, {time.perf_counter() - t0:.0f} s", flush=True)
        for m, (si, pq, st) in out[name].items():
            print(f"  {m:48s} SI-SDRi {si:6.2f}  PESQ {pq:.3f}  STOI {st:.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
