"""Our default enhancer against every zoo model (and a fusion) on the same dev-test files, in one run.

Run:
  .venv/bin/python bench/zoo.py OUT [--data ../shared/data] [--n-test 40] [--names default rnnoise ...]
                                    [--quick]

Dev-test sets (written once under OUT/data, reused by later runs):

- ``lo``: held-out speakers of ``DATA/speech`` mixed with held-out noise recordings of ``DATA/noise`` at
  −5..5 dB (``batchsep prepare --train 0 --valid 0 --test N --seed S``: its test split, disjoint by speaker
  and by noise recording from the train and valid splits of any prepare run of DATA with the same seed;
  ``--seed`` defaults to 1, the seed of ``jobs/train_default_enhancer.yaml``, so the shipped default never
  saw these speakers or noise recordings — test speakers 1284 and 260. Before session 13 this bench used
  seed 0, whose test speakers (121, 672) the session-12 default was trained on: its figures were not held out);
- ``hi``: the same at 5..20 dB;
- ``voicebank``: the VoiceBank+DEMAND pairs of ``DATA/pairs/voicebank_demand`` (real re-recorded noise);
- ``tel``: a telephone-band copy of ``lo`` (noisy and clean resampled to 8 kHz with soxr): scored
  at 8 kHz (narrow-band PESQ), DNSMOS on the 8 kHz audio upsampled to 16 kHz.

Every model name runs through ``batchsep.api.enhance(model=NAME, local=True)`` — the path of
``batchsep enhance`` in one process, one worker, model loaded once — and ``batchsep.api.evaluate``
(the default metrics: SDR, SI-SDR, PESQ, STOI, DNSMOS). Names that ``enhance`` refuses
(``ParameterError``: not installed, unknown) are skipped with the reason. Printed per set and model:
mean SDRi, SI-SDRi, PESQ, STOI, DNSMOS OVRL (output; the input's in the header), × real time per
worker end to end (audio seconds / wall seconds of the enhance call, model loading included), and
ΔSDRi and the speed ratio against ``default``. Also written: ``OUT/zoo.json``, ``OUT/zoo.md``.

Held out, checked (issue 19): before scoring, every model whose ``metrics.json`` records its training data
(``speakers``, ``noise_recordings``, ``valid_speakers``: the shipped ``default`` and any model trained since;
:func:`batchsep.evaluation.heldout.overlap`) is compared with the test split of ``lo``/``hi`` (``tel``: ``lo``'s).
A set sharing a speaker or a noise recording with what a model was trained or validated on is refused: the bench
prints why and exits 3 before scoring anything; ``--allow-overlap`` scores anyway and says so in the tables'
header. Zoo models (trained elsewhere, on data we cannot list) and ``voicebank`` are not checked.

``--quick``: 3 mixtures per set and 2 VoiceBank pairs (checks the bench works; not a result).
Threads: torch and onnxruntime are held to one thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads``),
so × real time is per core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pandas as pd
import soundfile as sf

FUSION = "rnnoise+deepfilternet3"
SETS = ("lo", "hi", "voicebank", "tel")
SET_LABELS = {
    "lo": "held-out speech + held-out noise, −5..5 dB",
    "hi": "held-out speech + held-out noise, 5..20 dB",
    "voicebank": "VoiceBank+DEMAND pairs (real noisy recordings)",
    "tel": "telephone band (8 kHz) copy of the −5..5 dB mixtures",
}
COLUMNS = (("SDRi", "sdr_i", 2), ("SI-SDRi", "si_sdr_i", 2), ("PESQ", "pesq", 2),
           ("STOI", "stoi", 3), ("DNSMOS OVRL", "dnsmos_ovrl", 2))  # fmt: skip


def model_names() -> list[str]:
    """``default``, every zoo model batchsep knows at this point, and one fusion."""
    names = ["default"]
    try:
        from batchsep.pipeline.enhance.zoo import ZOO
    except ImportError:
        return names
    names += list(ZOO)
    if all(p in ZOO for p in FUSION.split("+")):
        names.append(FUSION)
    return names


def _prepare(data: Path, out: Path, snr: tuple[float, float], n: int, seed: int) -> Path:
    from batchsep import api

    if not (out / "mixtures.parquet").exists():
        api.prepare(str(data / "speech"), str(data / "noise"), str(out), n_train=0, n_valid=0,
                    n_test=n, snr_min=snr[0], snr_max=snr[1], seed=seed, local=True)  # fmt: skip
    return out / "mixtures" / "test" / "noisy"


def _telephone(src: Path, dst: Path) -> None:
    from batchsep.dsp.resample import resample

    for kind in ("noisy", "clean"):
        (dst / kind).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / kind).glob("*.flac")):
            target = dst / kind / f.name
            if target.exists():
                continue
            x, sr = sf.read(f, dtype="float32")
            sf.write(target, resample(x, sr, 8000), 8000, subtype="PCM_24")


def build_sets(
    data: Path, root: Path, n_test: int, n_pairs: int, seed: int = 1
) -> dict[str, tuple[Path, str | None]]:
    """Input folder and references (None: the prepare run above the input) of each dev-test set."""
    sets: dict[str, tuple[Path, str | None]] = {}
    sets["lo"] = (_prepare(data, root / "lo", (-5.0, 5.0), n_test, seed), None)
    sets["hi"] = (_prepare(data, root / "hi", (5.0, 20.0), n_test, seed), None)
    pairs = data / "pairs" / "voicebank_demand"
    vb = root / "voicebank"
    for kind in ("noisy", "clean"):
        (vb / kind).mkdir(parents=True, exist_ok=True)
        for f in sorted((pairs / kind).glob("*.flac"))[:n_pairs]:
            if not (vb / kind / f.name).exists():
                shutil.copy(f, vb / kind / f.name)
    sets["voicebank"] = (vb / "noisy", str(vb / "clean"))
    _telephone(root / "lo" / "mixtures" / "test", root / "tel")
    sets["tel"] = (root / "tel" / "noisy", str(root / "tel" / "clean"))
    return sets


def run_name(name: str) -> str:
    """The run folder's name for a model name or path: a path must not send the outputs into the model's
    own folder (``OUT/runs/SET`` joined with an absolute path is that path)."""
    return name.strip("/").replace("/", "_").replace("+", "_")


CHECKED_TABLE = {"lo": "lo", "hi": "hi", "tel": "lo"}
"""Set → the prepare run (under the data root) whose test split it holds; ``voicebank`` has none."""
EXIT_NOT_HELD_OUT = 3


def held_out_check(
    names: list[str], data_root: Path, set_names: list[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """A line on each (model, set) checked (:mod:`batchsep.evaluation.heldout`), and set → the models it
    is not held out for."""
    from batchsep.errors import BatchsepError
    from batchsep.evaluation import heldout

    lines: list[str] = []
    bad: dict[str, list[str]] = {}
    for name in names:
        for set_name in set_names:
            if set_name not in CHECKED_TABLE:
                continue
            table = data_root / CHECKED_TABLE[set_name] / "mixtures.parquet"
            try:
                r = heldout.overlap(name, str(table))
            except BatchsepError as e:
                lines.append(f"{name} × {set_name}: not checked ({e})")
                continue
            if not r["recorded"]:
                continue  # a zoo model or a checkpoint from before issue 19: nothing recorded
            line = heldout.describe(r, set_name)
            lines.append(line)
            if not r["held_out"]:
                bad.setdefault(set_name, []).append(name)
    return lines, bad


def run_one(name: str, inp: Path, refs: str | None, out: Path) -> dict[str, float]:
    """Enhance ``inp`` with ``name`` into ``out`` (from scratch), evaluate it; the means."""
    from batchsep import api
    from batchsep.io import parquet

    s = api.enhance(str(inp), str(out), model=name, emotion=False, local=True, resume=False)
    if s.files_failed:
        raise RuntimeError(f"{s.files_failed} files failed: {s.errors[:3]}")
    api.evaluate(str(out), references=refs, local=True)
    df = parquet.read_parts(str(out / "metrics")).to_pandas()
    row = {key: float(pd.to_numeric(df[key], errors="coerce").mean()) for _, key, _ in COLUMNS}
    row["dnsmos_ovrl_in"] = float(pd.to_numeric(df["dnsmos_ovrl_in"], errors="coerce").mean())
    row["x_rt"] = s.hours_run * 3600.0 / s.wall_s if s.wall_s else float("nan")
    row["files"] = len(df)
    row["audio_s"] = s.hours_run * 3600.0
    return row


def table(results: dict[str, dict[str, float]], peer: str = "default") -> list[str]:
    head = [
        "model",
        *(c[0] for c in COLUMNS),
        "× real time",
        f"ΔSDRi vs {peer}",
        f"speed vs {peer}",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = results.get(peer)
    for name, r in results.items():
        cells = [name, *(f"{r[key]:.{d}f}" for _, key, d in COLUMNS), f"{r['x_rt']:.1f}×"]
        if base is not None:
            cells += [f"{r['sdr_i'] - base['sdr_i']:+.2f} dB", f"{r['x_rt'] / base['x_rt']:.2f}×"]
        else:
            cells += ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="work folder (data, runs, zoo.json, zoo.md)")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--n-test", type=int, default=40, help="mixtures per prepared set")
    ap.add_argument("--names", nargs="+", default=None, help="model names (default: all known)")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--quick", action="store_true", help="3 mixtures per set, 2 VoiceBank pairs")
    ap.add_argument("--seed", type=int, default=1,
                    help="prepare seed of lo/hi/tel: 1, the default enhancer's (its held-out split)")  # fmt: skip
    ap.add_argument("--allow-overlap", action="store_true",
                    help="score sets that share speakers or noise recordings with a model's training data")  # fmt: skip
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from batchsep.errors import ParameterError

    out = Path(args.out)
    n_test, n_pairs = (3, 2) if args.quick else (args.n_test, 1000)
    data_root = out / (
        f"data-quick-seed{args.seed}" if args.quick else f"data-{n_test}-seed{args.seed}"
    )
    sets = build_sets(Path(args.data), data_root, n_test, n_pairs, args.seed)
    names = args.names or model_names()
    checked, not_held_out = held_out_check(names, data_root, args.sets)
    print("\n".join(["held-out check:", *checked]) if checked else "held-out check: no model records "
          "its training data", flush=True)  # fmt: skip
    if not_held_out and not args.allow_overlap:
        print(f"refusing to score: {', '.join(not_held_out)} not held out (see above); use "
              "another --seed (the model's prepare seed) or --allow-overlap", file=sys.stderr)  # fmt: skip
        sys.exit(EXIT_NOT_HELD_OUT)
    print(f"models: {', '.join(names)}; sets: {', '.join(args.sets)}", flush=True)
    skipped: dict[str, str] = {}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for set_name in args.sets:
        inp, refs = sets[set_name]
        results[set_name] = {}
        for name in names:
            if name in skipped:
                continue
            t0 = time.perf_counter()
            try:
                r = run_one(name, inp, refs, out / "runs" / set_name / run_name(name))
            except ParameterError as e:
                skipped[name] = str(e)
                print(f"skip {name}: {e}", flush=True)
                continue
            results[set_name][name] = r
            print(f"{set_name:9s} {name:24s} SDRi {r['sdr_i']:+.2f} dB, OVRL "
                  f"{r['dnsmos_ovrl_in']:.2f}→{r['dnsmos_ovrl']:.2f}, {r['x_rt']:.1f}× real time "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    md = [f"# bench/zoo.py{' --quick' if args.quick else ''}", "",
          f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`", ""]  # fmt: skip
    if not_held_out:
        md += ["**--allow-overlap: scored sets that are NOT held out** (marked below; their figures overstate "
               "the models named).", ""]  # fmt: skip
    md += ["Held-out check (models that record their training data):", "",
           *(f"- {line}" for line in checked or ["none of these models records it"]), ""]  # fmt: skip
    for set_name, res in results.items():
        if not res:
            continue
        first = next(iter(res.values()))
        flag = (
            f" — NOT held out for {', '.join(not_held_out[set_name])}"
            if set_name in not_held_out
            else ""
        )
        md += [f"## {set_name}: {SET_LABELS[set_name]}{flag} ({first['files']} files, "
               f"{first['audio_s']:.0f} s; input DNSMOS OVRL {first['dnsmos_ovrl_in']:.2f})", "",
               *table(res), ""]  # fmt: skip
    if skipped:
        md += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()), ""]
    text = "\n".join(md)
    print("\n" + text)
    (out / "zoo.md").write_text(text)
    payload = {"quick": args.quick, "n_test": n_test, "seed": args.seed, "held_out_check": checked,
               "not_held_out": not_held_out, "results": results, "skipped": skipped}  # fmt: skip
    (out / "zoo.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
