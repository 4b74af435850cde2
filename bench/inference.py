"""Benchmark: enhancement speed (× real time) on CPU of SNMF, DR-NMF and (B)LSTM mask models, one run.

Run:  .venv/bin/python bench/inference.py [--seconds 30] [--threads 1] [--snmf-iters 200]
                                          [--model NAME=URI ...]

Every model goes through the same path as ``batchsep enhance`` (:class:`MaskEnhancer`: STFT → mask →
ISTFT on one 30 s chunk at 16 kHz, the enhance stage's chunk size). Speed does not depend on the weights,
so the default models are untrained at the sizes of seed 001, table 1: SNMF with R = 200 and 2000 atoms
and ``--snmf-iters`` multiplicative updates at test time, DR-NMF (K, R) = (2, 200), (5, 200), (2, 2000),
LSTM (K, hidden) = (2, 54), (5, 70), (2, 244). ``--model NAME=URI`` adds trained model folders.
× real time = audio seconds / wall seconds, and / CPU seconds of the process (the better estimate on a
loaded machine with one thread); median of ``--repeat`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from batchsep.models import build_model
from batchsep.models.base import MaskModel
from batchsep.pipeline.enhance.enhancer import MaskEnhancer, load_enhancer

SR = 16000


def default_models(snmf_iters: int, big: bool) -> dict[str, MaskModel]:
    models: dict[str, MaskModel] = {}
    for r in (200, 2000) if big else (200,):
        m = build_model(
            "snmf", {"rank_speech": r // 2, "rank_noise": r // 2, "n_iter_infer": snmf_iters}
        )
        g = torch.Generator().manual_seed(0)
        m.W_speech.copy_(torch.rand(m.W_speech.shape, generator=g))  # type: ignore[operator]
        m.W_noise.copy_(torch.rand(m.W_noise.shape, generator=g))  # type: ignore[operator]
        m.fitted.fill_(True)  # type: ignore[operator]
        models[f"SNMF R={r}, {snmf_iters} MU it."] = m  # type: ignore[assignment]
    sizes = [(2, 200), (5, 200)] + ([(2, 2000)] if big else [])
    for k, r in sizes:
        models[f"DR-NMF K={k} R={r}"] = build_model(  # type: ignore[assignment]
            "drnmf", {"n_layers": k, "rank_speech": r // 2, "rank_noise": r // 2}
        )
    for k, h in [(2, 54), (5, 70)] + ([(2, 244)] if big else []):
        models[f"LSTM K={k} h={h}"] = build_model("lstm", {"n_layers": k, "hidden": h})  # type: ignore[assignment]
    return models


def time_model(enhancer: MaskEnhancer, x: np.ndarray, repeat: int) -> tuple[float, float]:
    """Median (wall seconds, CPU seconds of this process) of one call on ``x``."""
    enhancer(x[:, : SR * 2])  # warm-up
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        enhancer(x)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--seconds", type=float, default=30.0, help="Audio per call (one enhance chunk)."
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (enhance uses 1 per actor)."
    )
    ap.add_argument("--snmf-iters", type=int, default=200, help="SNMF test-time MU iterations.")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-big", action="store_true", help="Skip the R=2000 / h=244 sizes.")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=URI")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((1, int(args.seconds * SR)))).astype(np.float32)
    enhancers = {
        name: MaskEnhancer(m)
        for name, m in default_models(args.snmf_iters, not args.no_big).items()
    }
    for item in args.model:
        name, _, uri = item.partition("=")
        enhancers[name] = load_enhancer(uri)[0]
    print(f"{args.seconds:.0f} s of 16 kHz audio per call, torch threads={args.threads}, "
          f"median of {args.repeat}")  # fmt: skip
    print(
        f"{'model':34s} {'params':>9s} {'wall s':>8s} {'x rt wall':>10s} {'cpu s':>8s} {'x rt cpu':>9s}"
    )
    results = {}
    for name, enh in enhancers.items():
        n = sum(p.numel() for p in enh.model.parameters()) or sum(
            b.numel() for k, b in enh.model.named_buffers() if k.startswith("W")
        )
        wall, cpu = time_model(enh, x, args.repeat)
        results[name] = args.seconds / cpu
        print(f"{name:34s} {n:9d} {wall:8.3f} {args.seconds / wall:10.1f} {cpu:8.3f} "
              f"{results[name]:9.1f}", flush=True)  # fmt: skip
    snmf = [v for k, v in results.items() if k.startswith("SNMF R=200")]
    dr = [v for k, v in results.items() if k.startswith("DR-NMF K=2 R=200")]
    if snmf and dr:
        print(f"DR-NMF (K=2, R=200) vs SNMF (R=200), CPU time: {dr[0] / snmf[0]:.1f}x faster")


if __name__ == "__main__":
    main()
