"""Seed 004's comparison on our data, shrunk to a 2-core machine: train SCE+MI, DC+MI, DAE; score all.

Run:
  .venv/bin/python bench/seed004_comparison.py train RUN OUT [--epochs 8] [--epochs-dae 6]
                                               [--crop-frames 100] [--only sce,dc,dae] [--dry-run]
  .venv/bin/python bench/seed004_comparison.py score RUN OUT --model LABEL=FOLDER[:kmeans] ...
                                               [--n-test 100] [--img-dir docs/img]

``train`` runs ``batchsep train --local`` for ``sce``, ``dc`` and ``dae`` on 100 % of the train mixtures of
RUN (one after the other, one torch thread), into ``OUT/<model>-100``; it prints every command and its
wall time. Sizes are reduced from the paper's (4 BLSTM layers x 500, D = 40; 15 + 15 conv layers of
128 filters) so that each model trains in about 10 CPU minutes: see ``SIZES``.

``score`` enhances the first ``--n-test`` test mixtures of RUN with every ``--model`` (any model folder;
``:kmeans`` scores an SCE/DC model with its k-means "(C)" binary mask instead of the MI head), caches the
per-mixture scores in ``OUT/scores/<label>.json`` and writes ``OUT/results004.json``,
``OUT/results004.md`` (mean SDR, SDRi, SI-SDR, SI-SDRi, x real time; SDRi by noise class and by input
SNR) and the two figures of seed 004 (SDRi by noise type, SDRi by input SNR) as PNGs in ``--img-dir``
(``--plot LABEL``, repeatable: only these systems in the figures).
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
    # model: --config items (paper: 4 x 500 BLSTM, D = 40; 15 + 15 conv layers x 128 5x5 filters)
    "sce": ["n_layers=3", "hidden=100", "embed_dim=20", "n_speakers=auto", "n_noises=auto"],
    "dc": ["n_layers=3", "hidden=100", "embed_dim=20"],
    "dae": [],  # default: 5 + 5 conv layers x 32 5x5 filters, stride 2 (206 689 parameters)
}
SNR_EDGES = [-5.0, -3.0, -1.0, 1.0, 3.0, 5.0]


def commands(run: str, out: str, epochs: int, epochs_dae: int, crop: int, only: list[str]):
    exe = [sys.executable, "-m", "batchsep.cli.main", "train"]
    cmds = []
    for model in only:
        cmd = [*exe, "--model", model, "--features", run, "--out", f"{out}/{model}-100", "--local",
               "--batch-size", "32", "--crop-frames", str(crop),
               "--max-epochs", str(epochs_dae if model == "dae" else epochs),
               "--config", "train.patience=null"]  # fmt: skip
        for item in SIZES[model]:
            cmd += ["--config", item]
        cmds.append(cmd)
    return cmds


def train(cmds: list[list[str]], dry_run: bool) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for cmd in cmds:
        print("$ batchsep " + " ".join(cmd[3:]), flush=True)
        if dry_run:
            continue
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, env=env)
        print(f"  exit {rc}, wall {time.perf_counter() - t0:.0f} s", flush=True)


def _test_rows(run: str, n_test: int) -> list[dict]:
    from batchsep.pipeline.prepare.run import read_mixtures

    rows = read_mixtures(run)
    return [r for r in rows if r["split"] == "test" and r["status"] == "ok"][:n_test]


def score_model(folder: str, mode: str, rows: list[dict], mixtures: list[dict]) -> dict:
    """Per-mixture scores of one model folder (``mode``: "mi" or "kmeans") and its speed."""
    from batchsep.evaluation.metrics import score_file
    from batchsep.io import checkpoint
    from batchsep.pipeline.enhance.enhancer import load_enhancer

    enhancer, name, _ = load_enhancer(folder)
    if mode == "kmeans":
        enhancer.model.set_inference("kmeans")  # type: ignore[operator]
    per_file, t_model, seconds = [], 0.0, 0.0
    for row, mix in zip(rows, mixtures):
        t0 = time.perf_counter()
        y = enhancer(mix["noisy"][None])[0]
        t_model += time.perf_counter() - t0
        seconds += mix["noisy"].shape[-1] / 16000
        s = score_file(mix["clean"], mix["noisy"], y, 16000, metrics=["sdr", "si_sdr"])
        per_file.append({
            "mixture_id": row["mixture_id"], "noise_class": row["noise_class"],
            "snr_db": row["snr_db"], **{k: s[k] for k in ("sdr", "sdr_i", "si_sdr", "si_sdr_i", "sdr_in")},
        })  # fmt: skip
    metrics = checkpoint.read_metrics(folder) or {}
    hist = metrics.get("history") or []
    best = metrics.get("best_epoch")
    valid_logs = hist[best]["valid_logs"] if hist and best is not None and best >= 0 else {}
    return {
        "model": name, "mode": mode, "folder": folder, "params": metrics.get("param_count"),
        "epochs": metrics.get("epochs"), "best_epoch": best,
        "valid_loss": metrics.get("best_valid_loss"), "valid_msa": valid_logs.get("msa"),
        "train_s": metrics.get("epochs_s") or metrics.get("wall_s"),
        "x_real_time": seconds / t_model, "per_file": per_file,
    }  # fmt: skip


def _mean(r: dict, key: str) -> float:
    return float(np.nanmean([f[key] for f in r["per_file"]]))


def _by(r: dict, group) -> dict[str, float]:  # type: ignore[no-untyped-def]
    groups: dict[str, list[float]] = {}
    for f in r["per_file"]:
        groups.setdefault(group(f), []).append(f["sdr_i"])
    return {k: float(np.nanmean(v)) for k, v in sorted(groups.items())}


def _snr_bin(f: dict) -> str:
    i = int(np.clip(np.searchsorted(SNR_EDGES, f["snr_db"], side="right") - 1, 0, 4))
    return f"[{SNR_EDGES[i]:+.0f}, {SNR_EDGES[i + 1]:+.0f}]"


def _noise(f: dict) -> str:
    return f["noise_class"].split("/")[-1]


def _order(key: str) -> tuple[float, str]:
    """SNR bins in numeric order, noise types alphabetically."""
    return (float(key[1:].split(",")[0]), "") if key.startswith("[") else (0.0, key)


def figures(results: dict[str, dict], img_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Path(img_dir).mkdir(parents=True, exist_ok=True)
    out = []
    for fname, group, xlabel in (
        ("results_sdri_by_noise.png", _noise, "noise type"),
        ("results_sdri_by_snr.png", _snr_bin, "input SNR (dB)"),
    ):
        tables = {label: _by(r, group) for label, r in results.items()}
        keys = sorted({k for t in tables.values() for k in t}, key=_order)
        fig, ax = plt.subplots(figsize=(10, 4.2), dpi=80)
        width = 0.8 / max(1, len(tables))
        x = np.arange(len(keys))
        for i, (label, t) in enumerate(tables.items()):
            ax.bar(
                x + i * width - 0.4 + width / 2,
                [t.get(k, np.nan) for k in keys],
                width,
                label=label,
            )
        ax.set_xticks(x, keys, rotation=30 if group is _noise else 0, ha="right" if group is _noise else "center", fontsize=8)  # fmt: skip
        ax.set_ylabel("SDR improvement (dB)")
        ax.set_xlabel(xlabel)
        ax.axhline(0, color="k", lw=0.5)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        path = str(Path(img_dir, fname))
        fig.savefig(path)
        plt.close(fig)
        out.append(path)
    return out


def score(
    run: str, out: str, models: list[str], n_test: int, img_dir: str, plot: list[str]
) -> None:
    import torch

    from batchsep.pipeline.prepare.render import load_mixture

    torch.set_num_threads(1)
    rows = _test_rows(run, n_test)
    mixtures: list[dict] | None = None
    cache = Path(out, "scores")
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for item in models:
        label, _, spec = item.rpartition("=")
        folder, _, mode = spec.partition(":")
        path = cache / (label.replace(" ", "_").replace("/", "_") + ".json")
        if path.is_file():
            results[label] = json.loads(path.read_text())
            continue
        mixtures = mixtures or [load_mixture(r) for r in rows]
        r = score_model(folder, mode or "mi", rows, mixtures)
        path.write_text(json.dumps(r))
        results[label] = r
        print(f"{label:24s} SDRi {_mean(r, 'sdr_i'):5.2f} SI-SDRi {_mean(r, 'si_sdr_i'):5.2f} "
              f"({r['x_real_time']:.0f}x rt)", flush=True)  # fmt: skip
    lines = ["| system | params | epochs (best) | train s | valid MSA | SDR | SDRi | SI-SDR | SI-SDRi | × rt |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, r in results.items():
        ep = "–" if not r["epochs"] else f"{r['epochs']} ({r['best_epoch']})"
        msa = r["valid_msa"] if r["valid_msa"] is not None else r["valid_loss"]
        lines.append(
            f"| {label} | {r['params']} | {ep} | {r['train_s'] or 0:.0f} | "
            f"{'–' if msa is None else f'{msa:.4f}'} | {_mean(r, 'sdr'):.2f} | {_mean(r, 'sdr_i'):.2f} | "
            f"{_mean(r, 'si_sdr'):.2f} | {_mean(r, 'si_sdr_i'):.2f} | {r['x_real_time']:.0f} |"
        )
    first = next(iter(results.values()))
    lines.append(
        f"\nUnprocessed input: SDR {_mean(first, 'sdr_in'):.2f} dB ({len(first['per_file'])} test mixtures)."
    )
    for title, group in (("noise type", _noise), ("input SNR (dB)", _snr_bin)):
        tables = {label: _by(r, group) for label, r in results.items()}
        keys = sorted(next(iter(tables.values())), key=_order)
        counts = _by({"per_file": [{**f, "sdr_i": 1.0} for f in first["per_file"]]}, group)
        n = {k: sum(1 for f in first["per_file"] if group(f) == k) for k in counts}
        lines += ["", f"SDRi (dB) by {title}:", "",
                  "| system | " + " | ".join(f"{k} (n={n[k]})" for k in keys) + " |",
                  "|---" * (len(keys) + 1) + "|"]  # fmt: skip
        for label, t in tables.items():
            lines.append(f"| {label} | " + " | ".join(f"{t[k]:.2f}" for k in keys) + " |")
    Path(out, "results004.md").write_text("\n".join(lines) + "\n")
    Path(out, "results004.json").write_text(json.dumps(
        {k: {kk: v for kk, v in r.items() if kk != "per_file"} | {
            "sdr_i": _mean(r, "sdr_i"), "by_noise": _by(r, _noise), "by_snr": _by(r, _snr_bin)}
         for k, r in results.items()}, indent=2))  # fmt: skip
    print("\n".join(lines))
    shown = {k: v for k, v in results.items() if not plot or k in plot}
    for p in figures(shown, img_dir):
        print(f"figure: {p} ({os.path.getsize(p) // 1024} KB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("action", choices=["train", "score"])
    ap.add_argument("run", help="prepare run with features/")
    ap.add_argument("out", help="folder of the trained models / of the score cache")
    ap.add_argument("--epochs", type=int, default=8, help="epochs of SCE+MI and DC+MI")
    ap.add_argument("--epochs-dae", type=int, default=6)
    ap.add_argument("--crop-frames", type=int, default=100)
    ap.add_argument("--only", default="sce,dc,dae")
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=FOLDER[:kmeans]")
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--img-dir", default="docs/img")
    ap.add_argument(
        "--plot",
        action="append",
        default=[],
        metavar="LABEL",
        help="systems drawn in the figures (default: all)",
    )
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.action == "train":
        only = [m for m in args.only.split(",") if m]
        train(commands(args.run, args.out, args.epochs, args.epochs_dae, args.crop_frames, only),
              args.dry_run)  # fmt: skip
    else:
        score(args.run, args.out, args.model, args.n_test, args.img_dir, args.plot)
    print(f"{args.action}: wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
