"""Benchmark: how the enhance driver scales with the number of files (issue #22).

Run:  .venv/bin/python bench/scale.py [--files 2000] [--workers 2] [--corpus /tmp/batchsep-scale]
      .venv/bin/python bench/scale.py --files 200000      # the `heavy` run of docs/scaling.md
      .venv/bin/python bench/scale.py --files 20000 --package /tmp/before   # "before": an older checkout

One command: it writes a corpus of ``--files`` tiny WAVs (0.25 s, 16 kHz, 1 000 per folder) under
``--corpus`` once (kept for the next run), then runs, each in a fresh Python process:

1. ``enhance CORPUS OUT`` with the shipped enhancer on ``--workers`` Ray Data actors (embedded Ray);
2. the same command again: a no-op resume (every file is committed);
   (``--executor copy``: no model, no Ray: each output is a copy of its input, made in the driver's
   process, to measure the driver's own memory and time at 200 000 files on a busy 2-core machine);
3. with ``--manifest``: ``enhance MANIFEST OUT2`` from a Parquet listing of the corpus (``uri``, ``rel_path``).

Each process reports its own peak RSS (``ru_maxrss``: the driver only; the actors are other processes),
the RSS before ``enhance`` was called (imports), the time to the first committed shard, files/s over the
run, and the number of files under ``OUT/results``. ``--package DIR`` puts ``DIR`` first on ``sys.path``
(e.g. ``git archive <commit> batchsep | tar -x -C DIR``) to measure an older driver the same way.
Output: one JSON line per phase, then a table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

PER_FOLDER = 1000
SECONDS = 0.25
SR = 16000


def make_corpus(root: Path, n: int) -> None:
    """``n`` tiny WAVs under ``root`` (kept: a second call with the same ``n`` does nothing)."""
    import numpy as np
    import soundfile as sf

    stamp = root / ".complete"
    if stamp.exists() and stamp.read_text() == str(n):
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * SECONDS)) / SR
    variants = []
    for k in range(16):  # a tone in noise: the model has something to do
        x = 0.3 * np.sin(2 * np.pi * (200 + 40 * k) * t) + 0.05 * rng.standard_normal(t.size)
        buf = io.BytesIO()
        sf.write(buf, x.astype(np.float32), SR, format="WAV", subtype="PCM_16")
        variants.append(buf.getvalue())
    for i in range(n):
        folder = root / f"d{i // PER_FOLDER:04d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:07d}.wav").write_bytes(variants[i % 16])
    stamp.write_text(str(n))


def write_manifest(root: Path, path: Path) -> None:
    """A Parquet listing of the corpus (``uri``, ``rel_path``, ``bytes``), as a scan would (no decode)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    uris, rels, sizes = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(folder.iterdir()):
            uris.append(str(f))
            rels.append(f"{folder.name}/{f.name}")
            sizes.append(f.stat().st_size)
    pq.write_table(pa.table({"uri": uris, "rel_path": rels, "bytes": sizes}), path)


def copy_executor(worker_kwargs: dict, tasks: object):  # type: ignore[no-untyped-def]
    """A stand-in for the model workers, in this process: each output is a copy of its input (no decode,
    no model, no fsync). It measures the driver (planning, commits, compaction, resume) alone."""
    for task in tasks:  # type: ignore[attr-defined]
        rows = []
        for uri, rel, out in task.files:
            t = time.perf_counter()
            data = Path(uri).read_bytes()
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_bytes(data)
            rows.append({
                "input_uri": uri, "rel_path": rel, "output_uri": out, "status": "ok",
                "duration_s": SECONDS, "sample_rate": SR, "channels": 1, "out_sample_rate": SR,
                "model_name": "copy", "shard": task.shard, "t_total_s": time.perf_counter() - t,
            })  # fmt: skip
        yield task.shard, rows


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_phase(args: argparse.Namespace) -> None:
    """One enhance run in this process; prints its figures as one JSON line."""
    if args.package:
        sys.path.insert(0, args.package)
    import batchsep
    from batchsep.distributed.data import RayDataExecutor
    from batchsep.pipeline.enhance.driver import enhance

    rss_before = rss_mb()
    first: list[float] = []
    t0 = time.perf_counter()

    def on_progress(n: int, seconds: float, *_: object) -> None:
        if not first:
            first.append(time.perf_counter() - t0)

    summary = enhance(
        args.input,
        args.out,
        executor=copy_executor
        if args.executor == "copy"
        else RayDataExecutor(workers=args.workers),
        on_progress=on_progress,
    )
    wall = time.perf_counter() - t0
    results = Path(args.out) / "results"
    n_results = (
        sum(1 for p in results.iterdir() if p.suffix == ".parquet") if results.exists() else 0
    )
    print(
        json.dumps(
            {
                "phase": args.phase,
                "executor": args.executor,
                "package": os.path.dirname(os.path.dirname(batchsep.__file__)),
                "files": summary.files,
                "files_run": summary.files_run,
                "failed": summary.files_failed,
                "wall_s": round(wall, 2),
                "first_output_s": round(first[0], 2) if first else None,
                "files_per_s": round(summary.files_run / wall, 1) if summary.files_run else None,
                # time inside the workers (sum of the rows' t_total_s; with --executor copy the copies,
                # made in this process: the rest of the wall time is the driver's own)
                "worker_s": round(summary.processing_s, 1),
                "result_files": n_results,
                "rss_before_mb": round(rss_before, 1),
                "cpu_s": round(cpu_s(), 1),  # this process's CPU time (driver, and copies)
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        ),
        flush=True,
    )


def cluster_run(args: argparse.Namespace) -> None:
    """``--cluster N``: enhance ``--files`` files on a simulated cluster (``ray.cluster_utils.Cluster``:
    a head without CPUs and N one-CPU worker nodes, all on this machine) and count the files each node's
    model actor did (the rows name the worker's pid; Ray's state API names each actor's pid and node)."""
    from collections import Counter

    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    from batchsep.distributed.data import RayDataExecutor
    from batchsep.pipeline.enhance.driver import enhance
    from batchsep.pipeline.enhance.outfolder import committed_rows

    corpus = Path(args.corpus) / f"n{args.files}"
    make_corpus(corpus, args.files)
    out = Path(args.out or f"/tmp/batchsep-scale-out/cluster{args.cluster}-n{args.files}")
    shutil.rmtree(out, ignore_errors=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(args.cluster)]
        cluster.wait_for_nodes()
        t0 = time.perf_counter()
        summary = enhance(
            str(corpus),
            str(out),
            executor=RayDataExecutor(workers=args.cluster, address=cluster.address),
        )
        wall = time.perf_counter() - t0
        pid_node = {
            a.pid: a.node_id for a in list_actors(detail=True, limit=10_000) if a.pid
        }  # dead actors too (Ray keeps their state)
        names = {n.node_id: f"node{i + 1}" for i, n in enumerate(nodes)}
        per_node: Counter[str] = Counter()
        for r in committed_rows(str(out)):
            pid = int(str(r.get("worker") or ":0").rsplit(":", 1)[-1])
            per_node[names.get(pid_node.get(pid, ""), f"pid {pid} (node unknown)")] += 1
        print(json.dumps({"phase": f"cluster{args.cluster}", "files": summary.files,
                          "failed": summary.files_failed, "wall_s": round(wall, 1),
                          "files_per_node": dict(sorted(per_node.items()))}), flush=True)  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()


def child(args: argparse.Namespace, phase: str, input_uri: str, out: Path) -> dict[str, object]:
    cmd = [
        sys.executable, __file__, "--phase", phase, "--input", input_uri, "--out", str(out),
        "--workers", str(args.workers), "--executor", args.executor,
    ]  # fmt: skip
    if args.package:
        cmd += ["--package", args.package]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    print(line, flush=True)
    return dict(json.loads(line))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--executor", choices=["ray", "copy"], default="ray",
        help="ray: the shipped enhancer on --workers Ray Data actors; copy: no model, outputs are copies "
        "of the inputs, in the driver's process (the driver's own costs)",
    )  # fmt: skip
    p.add_argument("--corpus", default="/tmp/batchsep-scale")
    p.add_argument("--out", default=None, help="output folder (default: a fresh one under /tmp)")
    p.add_argument("--package", default=None, help="import batchsep from this folder (a 'before')")
    p.add_argument("--manifest", action="store_true", help="also run from a Parquet manifest")
    p.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="N",
        help="run on a simulated cluster of N one-CPU nodes and count files per node",
    )
    p.add_argument("--phase", default="all", help=argparse.SUPPRESS)
    p.add_argument("--input", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.cluster:
        cluster_run(args)
        return
    if args.phase != "all":
        run_phase(args)
        return
    corpus = Path(args.corpus) / f"n{args.files}"
    t = time.perf_counter()
    make_corpus(corpus, args.files)
    print(f"corpus {corpus}: {args.files} files ({time.perf_counter() - t:.0f} s)", flush=True)
    tag = ("before" if args.package else "after") + ("-copy" if args.executor == "copy" else "")
    out = Path(args.out or f"/tmp/batchsep-scale-out/{tag}-n{args.files}")
    shutil.rmtree(out, ignore_errors=True)
    rows = [child(args, "full", str(corpus), out), child(args, "resume", str(corpus), out)]
    if args.manifest:
        manifest = out.parent / f"{tag}-n{args.files}-manifest.parquet"
        write_manifest(corpus, manifest)
        out2 = out.parent / f"{tag}-n{args.files}-from-manifest"
        shutil.rmtree(out2, ignore_errors=True)
        rows.append(child(args, "manifest", str(manifest), out2))
    print(
        f"\n| {tag} | files | wall s | first output s | files/s | result files | driver RSS before / peak MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['phase']} | {r['files']} | {r['wall_s']} | {r['first_output_s']} | {r['files_per_s']} "
            f"| {r['result_files']} | {r['rss_before_mb']} / {r['peak_rss_mb']} |"
        )


if __name__ == "__main__":
    main()
