"""Benchmark: end-to-end enhancement speed (× real time) with 1 and 2 Ray workers vs a naive loop.

Run:  .venv/bin/python bench/enhance.py [--model default] [--files 2000] [--repeat 1] [--data ../shared/data]

All three measurements enhance the same files with the same model in one run:
- naive: one process, for each file: soundfile.read → resample → STFT → model → ISTFT → soundfile.write;
- batchsep with --workers 1 and --workers 2 (embedded Ray, actor pool, streaming chunked path).
Ray start-up is excluded (a warm-up run on two files happens first, then the bench waits until the machine
is idle again: the warm-up's actors use 1-2 s of CPU to exit); actor start-up is included (each actor is a
new process that imports Ray Data and torch; the first results come 3.7-4.2 s after the start). Each Ray
run also prints when its first results were committed (actor start-up, model load, first shard) and its speed
from then on, so the fixed start-up cost and the steady throughput can be told apart, and (on Linux) the CPU
seconds each kind of process used during the run: the model actors, and everything else that Ray needs (this
driver, raylet, GCS, Ray Data's helper actors, agents). With one worker that overhead runs on the idle second
core; with two it competes with the actors, which is what keeps 1 -> 2 worker scaling below 2x on 2 cores.
The CPU split reads /proc just before the run and just after its last result (before Ray shuts down): a
process that has exited and been reaped by then is not counted. Ray Data's pool actors usually still run
(measured: each actor's CPU seconds matched its busy time in the results rows, 31.6 vs 31.7 s); when Ray Data
stopped one earlier (seen once in 9 runs), the line says how many actors were counted.

The two Ray runs alternate for ``--rounds`` rounds (1 worker, 2 workers, 1 worker, ...) and the summary uses each
one's median time: on this shared 2-core VM one run's speed varies by 3-5 %, which moves a single 1 -> 2 worker
ratio by up to 10 %; alternating spreads slow spells over both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from batchsep.distributed import runtime
from batchsep.distributed.data import RayDataExecutor
from batchsep.dsp import to_rate_mono
from batchsep.pipeline.enhance.driver import enhance
from batchsep.pipeline.enhance.enhancer import load_enhancer


def pick_files(data: Path, n: int, dest: Path, repeat: int = 1) -> float:
    """Copy the first ``n`` audio files of ``data`` to ``dest`` (``repeat`` copies under ``copy-K/``)."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in {".flac", ".wav"})[:n]
    seconds = 0.0
    for k in range(repeat):
        for p in files:
            target = dest / (f"copy-{k}" if repeat > 1 else "") / p.relative_to(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target)
            seconds += sf.info(p).duration
    return seconds


def naive(src: Path, out: Path, model: str) -> float:
    torch.set_num_threads(1)
    enhancer, _, _ = load_enhancer(model)
    t0 = time.perf_counter()
    for p in sorted(src.rglob("*.flac")) + sorted(src.rglob("*.wav")):
        x, sr = sf.read(p, dtype="float32", always_2d=True)
        y = enhancer(to_rate_mono(x.T, sr, 16000)[None])[0]
        target = out / p.relative_to(src).with_suffix(".wav")
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, y, 16000, subtype="FLOAT")
    return time.perf_counter() - t0


def cpu_seconds() -> dict[int, tuple[float, str]]:
    """CPU seconds (user + system) and command line of every process (Linux ``/proc``; {} elsewhere)."""
    out: dict[int, tuple[float, str]] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = (
                Path(f"/proc/{d}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except (OSError, ValueError):
            continue  # not a process, or it ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        out[int(d)] = ((int(fields[11]) + int(fields[12])) / tick, cmd)
    return out


def cpu_split(
    before: dict[int, tuple[float, str]], after: dict[int, tuple[float, str]]
) -> tuple[float, float, int]:
    """(model actors, the rest of Ray incl. this driver): CPU seconds between two ``cpu_seconds`` snapshots,
    and how many actor processes were counted (one that Ray Data stopped before ``after`` is missing)."""
    actors = rest = 0.0
    n_actors = 0
    for pid, (cpu, cmd) in after.items():
        used = cpu - before.get(pid, (0.0, ""))[0]
        if "MapWorker" in cmd:
            actors += used
            n_actors += used > 0.5
        elif pid == os.getpid() or "ray" in cmd:
            rest += used
    return actors, rest, n_actors


def settle(limit_s: float = 30.0, busy_below: float = 0.05) -> None:
    """Wait (at most ``limit_s``) until the machine is idle: the warm-up run's actors take 1-2 s of CPU to
    exit after it ends, which would otherwise be charged to the timed run (Linux ``/proc/stat``; a no-op
    elsewhere)."""

    def busy(window_s: float = 0.5) -> float:
        def ticks() -> list[int]:
            with open("/proc/stat") as f:
                return [int(x) for x in f.readline().split()[1:]]

        a = ticks()
        time.sleep(window_s)
        d = [y - x for x, y in zip(a, ticks(), strict=True)]
        return 1.0 - (d[3] + d[4]) / max(1, sum(d))  # idle + iowait

    if not os.path.exists("/proc/stat"):
        return
    t = time.perf_counter()
    while busy() > busy_below and time.perf_counter() - t < limit_s:
        pass


def with_ray(
    src: Path, out: Path, model: str, workers: int, warm: Path
) -> tuple[float, float, float, tuple[float, float, int]]:
    """(wall seconds, seconds to the first committed shard, x real time after it, CPU split)."""
    runtime.init(num_cpus=workers)
    try:
        enhance(
            str(warm), str(out) + "-warm", model=model, executor=RayDataExecutor(workers=workers)
        )
        settle()
        commits: list[tuple[float, float]] = []  # (time, audio seconds) of each committed shard
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        s = enhance(
            str(src),
            str(out),
            model=model,
            executor=RayDataExecutor(workers=workers),
            num_threads=1,
            on_progress=lambda n, sec: commits.append((time.perf_counter(), sec)),
        )
        dt = time.perf_counter() - t0
        cpu = cpu_split(cpu0, cpu_seconds())
        assert s.files_failed == 0, s.errors
    finally:
        runtime.shutdown()
    t_first = commits[0][0] - t0
    steady = sum(sec for _, sec in commits[1:]) / (commits[-1][0] - commits[0][0])
    return dt, t_first, steady, cpu


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", default=str(here.parent / "shared" / "data"))
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--model", default="default")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="enhance REPEAT copies of the files (a larger corpus: start-up weighs less)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating 1- and 2-worker runs per setting; the summary uses the medians",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, warm = Path(tmp) / "in", Path(tmp) / "warm"
        seconds = pick_files(Path(args.data), args.files, src, args.repeat)
        pick_files(Path(args.data), 2, warm)
        print(
            f"{args.files * args.repeat} files, {seconds / 60:.1f} min of audio, model={args.model}, "
            f"{os.cpu_count()} cores, {args.rounds} round(s)"
        )
        t_naive = naive(src, Path(tmp) / "naive", args.model)
        shutil.rmtree(Path(tmp) / "naive")
        print(f"naive loop (1 process):  {seconds / t_naive:7.1f}x real time  [{t_naive:.1f} s]")
        runs: dict[int, list[tuple[float, float, float, tuple[float, float, int]]]] = {1: [], 2: []}
        for k in range(args.rounds):
            for w in (1, 2):
                out = Path(tmp) / f"w{w}"
                dt, first, steady, (actors, rest, counted) = r = with_ray(
                    src, out, args.model, w, warm
                )
                shutil.rmtree(out)  # 2000 outputs are ~0.6 GB
                shutil.rmtree(str(out) + "-warm")
                runs[w].append(r)
                print(
                    f"round {k + 1}, batchsep --workers {w}: {seconds / dt:7.1f}x real time  [{dt:.1f} s]; "
                    f"first results after {first:.1f} s, {steady:.1f}x real time from then on"
                    + (
                        f"; CPU: model actors {actors:.1f} s, the rest of Ray (driver, raylet, GCS, "
                        f"Ray Data helpers) {rest:.1f} s"
                        + (
                            f" (only {counted} of {w} actors counted: Ray Data stopped one before "
                            "the end of the run)"
                            if counted < w
                            else ""
                        )
                        if actors
                        else ""
                    )
                )
        med = {w: statistics.median(r[0] for r in rs) for w, rs in runs.items()}
        steady_med = {w: statistics.median(r[2] for r in rs) for w, rs in runs.items()}
        print(f"median of {args.rounds} round(s):")
        for w in (1, 2):
            print(
                f"  batchsep --workers {w}:   {seconds / med[w]:7.1f}x real time  [{med[w]:.1f} s]  "
                f"({t_naive / med[w]:.2f}x the naive loop); {steady_med[w]:.1f}x after the first results"
            )
        per_round = [a[0] / b[0] for a, b in zip(runs[1], runs[2], strict=True)]
        print(
            f"scaling 1 -> 2 workers: {med[1] / med[2]:.2f}x end to end "
            f"({steady_med[2] / steady_med[1]:.2f}x after the first results); "
            f"per round: {', '.join(f'{x:.2f}x' for x in per_round)}"
        )
        assert np.isfinite(med[1])


if __name__ == "__main__":
    main()
