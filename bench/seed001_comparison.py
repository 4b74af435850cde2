"""Seed 001's comparison (table 1) on our data, shrunk to a 2-core machine: train, then score.

Run:
  .venv/bin/python bench/seed001_comparison.py train RUN OUT [--epochs 6] [--epochs-small 20]
                                               [--crop-frames 100] [--dry-run]
  .venv/bin/python bench/seed001_comparison.py score RUN OUT [--n-test 100]

``train`` runs ``batchsep train --local`` for SNMF, DR-NMF and LSTM at two sizes each, on 100 % and 10 %
of the train mixtures, at most two processes at once, one torch thread each; it prints every command and
its wall time; models already trained (metrics.json with a stop reason) are skipped. ``score`` enhances the first ``--n-test`` test mixtures of RUN (speakers and noise
recordings unseen in training) with every model in OUT and writes ``OUT/results.json`` and
``OUT/results.md`` (each model's scores are cached in ``OUT/<model>/test_scores.json``): validation loss, SDR, SDRi, SI-SDR, SI-SDRi (``batchsep.evaluation.score_file``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = {
    # name: (model, --config items): sizes of seed 001 table 1 rows (R = 200 atoms in total)
    "snmf-r200": (
        "snmf",
        ["rank_speech=100", "rank_noise=100", "n_iter_fit=100", "n_iter_infer=100"],
    ),
    "snmf-r400": (
        "snmf",
        ["rank_speech=200", "rank_noise=200", "n_iter_fit=100", "n_iter_infer=100"],
    ),
    "drnmf-k2-r200": ("drnmf", ["n_layers=2"]),
    "drnmf-k5-r200": ("drnmf", ["n_layers=5"]),
    "lstm-k2-h54": ("lstm", ["n_layers=2", "hidden=54"]),
    "lstm-k5-h70": ("lstm", ["n_layers=5", "hidden=70"]),
}
FRACTIONS = {"100": 1.0, "10": 0.1}


def commands(
    run: str, out: str, epochs: int, epochs_small: int, crop: int
) -> list[list[list[str]]]:
    """Waves of commands; a wave's commands may run in parallel, waves in order: the SNMFs that
    initialise DR-NMF, the deep models, then the larger SNMF (the most expensive to score)."""
    exe = [sys.executable, "-m", "batchsep.cli.main", "train"]
    waves: list[list[list[str]]] = [[], [], []]
    for frac_name, frac in FRACTIONS.items():
        n_epochs = epochs if frac == 1.0 else epochs_small
        for name, (model, items) in SIZES.items():
            dest = f"{out}/{name}-{frac_name}"
            cmd = [*exe, "--model", model, "--features", run, "--out", dest, "--local",
                   "--train-fraction", str(frac), "--batch-size", "32", "--crop-frames", str(crop),
                   "--snmf-frames", "10000"]  # fmt: skip
            for item in items:
                cmd += ["--config", item]
            if model == "snmf":
                waves[0 if name == "snmf-r200" else 2].append(cmd)
                continue
            cmd += ["--max-epochs", str(n_epochs), "--config", "train.patience=null"]
            if model == "drnmf":
                cmd += ["--init-from", f"{out}/snmf-r200-{frac_name}"]
            else:  # seed 001 uses 1e-4; with a few epochs that leaves the LSTMs far from converged
                cmd += ["--config", "train.lr=1e-3"]
            waves[1].append(cmd)
    # cheapest first: the K=2 sizes, the 10 % runs, then the K=5 sizes on 100 %
    waves[1].sort(
        key=lambda c: ("k5" in c[c.index("--out") + 1], c[c.index("--out") + 1].endswith("-100"))
    )
    return waves


def _done(cmd: list[str]) -> bool:
    """A model folder whose metrics.json records how training ended (snmf: ``fitted``)."""
    metrics = Path(cmd[cmd.index("--out") + 1], "metrics.json")
    return metrics.is_file() and json.loads(metrics.read_text()).get("stop_reason") is not None


def run_waves(waves: list[list[list[str]]], parallel: int, dry_run: bool) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for wave in waves:
        pending = [cmd for cmd in wave if not _done(cmd)]
        running: list[tuple[subprocess.Popen, list[str], float]] = []
        while pending or running:
            while pending and len(running) < parallel:
                cmd = pending.pop(0)
                print("$ batchsep " + " ".join(cmd[3:]), flush=True)
                if not dry_run:
                    running.append((subprocess.Popen(cmd, env=env), cmd, time.perf_counter()))
            for item in list(running):
                proc, cmd, t0 = item
                if proc.poll() is not None:
                    running.remove(item)
                    name = Path(cmd[cmd.index("--out") + 1]).name
                    print(f"  {name}: exit {proc.returncode}, wall {time.perf_counter() - t0:.0f} s",
                          flush=True)  # fmt: skip
            time.sleep(0.5)


def score(run: str, out: str, n_test: int) -> None:
    import torch

    from batchsep.evaluation.metrics import score_file
    from batchsep.io import checkpoint
    from batchsep.pipeline.enhance.enhancer import load_enhancer
    from batchsep.pipeline.prepare.render import load_mixture
    from batchsep.pipeline.prepare.run import read_mixtures

    torch.set_num_threads(1)
    rows = [r for r in read_mixtures(run)
            if r["split"] == "test" and r["status"] == "ok"][:n_test]  # fmt: skip
    mixtures = [load_mixture(r) for r in rows]
    results = {}
    for folder in sorted(p for p in Path(out).iterdir() if (p / "config.json").is_file()):
        metrics = checkpoint.read_metrics(str(folder)) or {}
        cached = folder / "test_scores.json"
        if metrics.get("stop_reason") is None:
            print(f"{folder.name}: not finished, skipped", flush=True)
            continue
        if cached.is_file():
            results[folder.name] = json.loads(cached.read_text())
            continue
        enhancer, name, _ = load_enhancer(str(folder))
        scores, t_model, seconds = [], 0.0, 0.0
        for mix in mixtures:
            t0 = time.perf_counter()
            y = enhancer(mix["noisy"][None])[0]
            t_model += time.perf_counter() - t0
            seconds += mix["noisy"].shape[-1] / 16000
            scores.append(
                score_file(mix["clean"], mix["noisy"], y, 16000, metrics=["sdr", "si_sdr"])
            )
        mean = {
            k: float(np.nanmean([s[k] for s in scores]))
            for k in ("sdr", "sdr_i", "si_sdr", "si_sdr_i", "sdr_in")
        }
        results[folder.name] = {
            **mean, "valid_loss": metrics.get("best_valid_loss"), "params": metrics.get("param_count"),
            "epochs": metrics.get("epochs"), "best_epoch": metrics.get("best_epoch"),
            "train_s": sum(h["seconds"] for h in metrics.get("history", [])) or metrics.get("wall_s"), "x_real_time": seconds / t_model,
            "n_train": (metrics.get("data") or {}).get("n_train_mixtures"), "n_test": len(scores),
        }  # fmt: skip
        r = results[folder.name]
        cached.write_text(json.dumps(r, indent=2))
        print(f"{folder.name:22s} valid {r['valid_loss'] or float('nan'):.4f} SDR {r['sdr']:6.2f} "
              f"SDRi {r['sdr_i']:5.2f} SI-SDR {r['si_sdr']:6.2f} ({r['x_real_time']:.0f}x rt)",
              flush=True)  # fmt: skip
    Path(out, "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| model | train set | params | epochs (best) | train s | valid loss | SDR | SDRi | SI-SDR "
             "| SI-SDRi | × rt |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in results.items():
        frac = name.rsplit("-", 1)[1] + " %"
        vl = "–" if r["valid_loss"] is None else f"{r['valid_loss']:.4f}"
        ep = "–" if not r["epochs"] else f"{r['epochs']} ({r['best_epoch']})"
        lines.append(f"| {name.rsplit('-', 1)[0]} | {frac} | {r['params']} | {ep} | "
                     f"{r['train_s'] or 0:.0f} | {vl} | "
                     f"{r['sdr']:.2f} | {r['sdr_i']:.2f} | {r['si_sdr']:.2f} | {r['si_sdr_i']:.2f} | "
                     f"{r['x_real_time']:.0f} |")  # fmt: skip
    noisy = np.mean([results[k]["sdr_in"] for k in results]) if results else float("nan")
    lines.append(f"\nUnprocessed input: SDR {noisy:.2f} dB ({len(mixtures)} test mixtures).")
    Path(out, "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("action", choices=["train", "score"])
    ap.add_argument("run", help="prepare run with features/")
    ap.add_argument("out", help="folder of the trained models")
    ap.add_argument("--epochs", type=int, default=6, help="epochs on 100 %% of the train set")
    ap.add_argument("--epochs-small", type=int, default=20, help="epochs on 10 %%")
    ap.add_argument("--crop-frames", type=int, default=100, help="training crop (seed 001: 500)")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.action == "train":
        waves = commands(args.run, args.out, args.epochs, args.epochs_small, args.crop_frames)
        run_waves(waves, args.parallel, args.dry_run)
    else:
        score(args.run, args.out, args.n_test)
    print(f"{args.action}: wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
