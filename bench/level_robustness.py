"""Is enhancement the same for quiet and loud recordings? SI-SDR improvement per input level, raw vs normalised.

Each noisy/clean pair is scaled by the same gain (0, -20, +10 dB by default) and enhanced by the model
(``MaskEnhancer``, one window per file) with the model seeing the raw level (``input_level_db=None``) and
with each window brought to ``INPUT_LEVEL_DB`` first (the default of ``batchsep enhance``). Prints mean
SI-SDRi per set, level and mode as a Markdown table.

Sets: the VoiceBank+DEMAND pairs of ``../shared/data`` and, with ``--mixtures RUN``, the test split of a
``batchsep prepare`` run (``jobs/train_default_enhancer.yaml`` makes ``runs/default-enhancer-blstm``).

Run:  .venv/bin/python bench/level_robustness.py [--model default] [--mixtures runs/default-enhancer-blstm]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from batchsep.dsp import to_rate_mono
from batchsep.dsp.level import INPUT_LEVEL_DB
from batchsep.evaluation.metrics import si_sdr
from batchsep.pipeline.enhance.enhancer import load_enhancer
from batchsep.pipeline.prepare.run import read_mixtures


def load(path: str) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return to_rate_mono(x.T, sr, 16000)


def mean_si_sdri(enhancer, pairs: list[tuple[str, str]], gain_db: float) -> float:
    g = 10.0 ** (gain_db / 20.0)
    out = []
    for noisy_path, clean_path in pairs:
        x, s = load(noisy_path) * g, load(clean_path) * g
        n = min(len(x), len(s))
        x, s = x[:n], s[:n]
        out.append(si_sdr(s, enhancer(x[None])[0]) - si_sdr(s, x))
    return float(np.mean(out))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", default=str(here.parent / "shared" / "data"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--mixtures", default=None, help="a prepare run: also score its test split")
    ap.add_argument(
        "--levels", type=float, nargs="+", default=[0.0, -20.0, 10.0], help="gains in dB"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    vb = Path(args.data) / "pairs" / "voicebank_demand"
    sets = {
        "VoiceBank+DEMAND": [
            (str(p), str(vb / "clean" / p.name)) for p in sorted((vb / "noisy").glob("*.flac"))
        ]
    }
    if args.mixtures:
        rows = read_mixtures(args.mixtures)
        sets["test split"] = [
            (r["noisy_uri"].removeprefix("file://"), r["clean_uri"].removeprefix("file://"))
            for r in rows
            if r["split"] == "test" and r["status"] == "ok"
        ]
    modes = {"raw level": None, f"normalised to {INPUT_LEVEL_DB:g} dBFS": INPUT_LEVEL_DB}
    enhancers = {m: load_enhancer(args.model, input_level_db=v)[0] for m, v in modes.items()}
    print(f"model={args.model}; mean SI-SDR improvement (dB)\n")
    print("| set | files | input gain | " + " | ".join(modes) + " |")
    print("|---|---|---|" + "---|" * len(modes))
    for name, pairs in sets.items():
        for level in args.levels:
            cells = [f"{mean_si_sdri(e, pairs, level):+.2f}" for e in enhancers.values()]
            print(
                f"| {name} | {len(pairs)} | {level:+.0f} dB | " + " | ".join(cells) + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
