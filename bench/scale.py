"""Benchmark: how the enhance driver scales with the number of files (issue #22).

Run:  .venv/bin/python bench/scale.py [--files 2000] [--workers 2] [--corpus /tmp/batchsep-scale]
      .venv/bin/python bench/scale.py --files 200000 --executor copy --interrupt   # docs/scaling.md
      .venv/bin/python bench/scale.py --files 20000 --executor copy --interrupt --s3
      .venv/bin/python bench/scale.py --files 20000 --package /tmp/before   # "before": an older checkout

One command: it writes a corpus of ``--files`` tiny WAVs (0.25 s, 16 kHz, 1 000 per folder) under
``--corpus`` once (kept for the next run), then runs, each in a fresh Python process:

1. ``enhance CORPUS OUT`` with the shipped enhancer on ``--workers`` Ray Data actors (embedded Ray);
2. the same command again: a no-op resume (every file is committed);
   (``--executor copy``: no model, no Ray: each output is a copy of its input, made in the driver's
   process, to measure the driver's own memory and time at 200 000 files on a busy 2-core machine);
3. with ``--manifest``: ``enhance MANIFEST OUT2`` from a Parquet listing of the corpus (``uri``, ``rel_path``).

``--interrupt``: the first run stops after half the files (the copy executor raises, as a killed job
would stop), then a resume does the other half, then a no-op resume. ``--s3``: the corpus is uploaded to
the tests' S3 server (SeaweedFS on 127.0.0.1, started here) once per command, and every phase runs
``enhance s3://.../manifest.parquet s3://.../out`` (a manifest as input: the input prefix is never
listed; each phase reports what it listed).

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


def write_manifest(root: Path, path: Path, prefix: str | None = None) -> None:
    """A Parquet listing of the corpus (``uri``, ``rel_path``, ``bytes``), as a scan would (no decode);
    ``prefix``: the URIs name the same files under this S3 prefix."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    uris, rels, sizes = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(folder.iterdir()):
            rel = f"{folder.name}/{f.name}"
            uris.append(f"{prefix}/{rel}" if prefix else str(f))
            rels.append(rel)
            sizes.append(f.stat().st_size)
    pq.write_table(pa.table({"uri": uris, "rel_path": rels, "bytes": sizes}), path)


class Interrupted(Exception):
    """The first run of ``--interrupt`` stops here after ``SCALE_STOP_AFTER`` files, as a killed job."""


_COPIED = [0]  # files copied by this process (over every executor call)


def _copy(uri: str, rel: str, out: str, shard: int) -> dict:
    t = time.perf_counter()
    if uri.startswith("s3://"):
        from batchsep.io import storage

        storage.write_bytes(out, storage.read_bytes(uri))
    else:
        data = Path(uri).read_bytes()
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(data)
    return {
        "input_uri": uri, "rel_path": rel, "output_uri": out, "status": "ok",
        "duration_s": SECONDS, "sample_rate": SR, "channels": 1, "out_sample_rate": SR,
        "model_name": "copy", "shard": shard, "t_total_s": time.perf_counter() - t,
    }  # fmt: skip


def copy_executor(worker_kwargs: dict, tasks: object):  # type: ignore[no-untyped-def]
    """A stand-in for the model workers, in this process: each output is a copy of its input (no decode,
    no model, no fsync; on S3 16 copies at a time). It measures the driver (planning, commits,
    compaction, resume) alone. Raises :class:`Interrupted` once ``SCALE_STOP_AFTER`` files are done."""
    from concurrent.futures import ThreadPoolExecutor

    stop = int(os.environ.get("SCALE_STOP_AFTER") or 0)
    with ThreadPoolExecutor(16) as pool:
        for task in tasks:  # type: ignore[attr-defined]
            if stop and _COPIED[0] >= stop:
                raise Interrupted(f"stopped after {_COPIED[0]} files")
            files = task.files
            if files and files[0][0].startswith("s3://"):
                rows = list(pool.map(lambda f, s=task.shard: _copy(*f, s), files))
            else:
                rows = [_copy(uri, rel, out, task.shard) for uri, rel, out in files]
            _COPIED[0] += len(rows)
            yield task.shard, rows


def count_listings() -> dict[str, int]:
    """Count every listing this process makes (its URI), by wrapping batchsep's listing functions."""
    calls: dict[str, int] = {}
    try:
        from batchsep.io import listing
    except ImportError:  # an older package: not counted
        return calls
    for name in ("_walk_s3", "_list_s3", "_walk_local"):
        real = getattr(listing, name, None)
        if real is None:
            continue

        def counted(uri, *args, _real=real, **kwargs):  # type: ignore[no-untyped-def]
            key = listing.normalize(uri)
            calls[key] = calls.get(key, 0) + 1
            return _real(uri, *args, **kwargs)

        setattr(listing, name, counted)
    return calls


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def runqueue_wait_s() -> float:
    """Seconds this thread has waited for a CPU while runnable (``/proc/thread-self/schedstat``): on a
    loaded machine, the part of the wall time that is neither CPU nor I/O."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


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
    from batchsep.io import parquet, storage
    from batchsep.pipeline.enhance.driver import enhance

    listed = count_listings()
    rss_before = rss_mb()
    waited = runqueue_wait_s()
    cpu_before = cpu_s()
    first: list[float] = []
    t0 = time.perf_counter()

    def on_progress(n: int, seconds: float, *_: object) -> None:
        if not first:
            first.append(time.perf_counter() - t0)

    try:
        summary = enhance(
            args.input,
            args.out,
            executor=copy_executor
            if args.executor == "copy"
            else RayDataExecutor(workers=args.workers),
            on_progress=on_progress,
        )
    except Interrupted:
        summary = None
    wall = time.perf_counter() - t0
    waited = runqueue_wait_s() - waited
    cpu_enhance = cpu_s() - cpu_before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    listed = dict(listed)  # what enhance listed (not the counts below)
    results = storage.join(args.out, "results")
    names = (
        [e.uri for e in storage.list_files(results) if e.rel_path.endswith(".parquet")]
        if storage.exists(results)
        else []
    )
    committed = sum(parquet.num_rows(u) for u in names)
    files_run = summary.files_run if summary else _COPIED[0]
    print(
        json.dumps(
            {
                "phase": args.phase,
                "executor": args.executor,
                "package": os.path.dirname(os.path.dirname(batchsep.__file__)),
                "files": summary.files if summary else committed,
                "files_run": files_run,
                "stopped": summary is None,
                "failed": summary.files_failed if summary else 0,
                "committed_rows": committed,
                "wall_s": round(wall, 2),
                "first_output_s": round(first[0], 2) if first else None,
                "files_per_s": round(files_run / wall, 1) if files_run else None,
                # time inside the workers (sum of the rows' t_total_s; with --executor copy the copies,
                # made in this process: the rest of the wall time is the driver's own)
                "worker_s": round(summary.processing_s, 1) if summary else None,
                "result_files": len(names),
                "rss_before_mb": round(rss_before, 1),
                "cpu_s": round(cpu_s(), 1),  # this process's CPU time (driver, and copies)
                "cpu_enhance_s": round(cpu_enhance, 1),  # of which during enhance (no imports)
                "runqueue_wait_s": round(
                    waited, 1
                ),  # the main thread's wait for a CPU during enhance
                "load_avg": os.getloadavg()[0],
                "peak_rss_mb": round(peak, 1),
                "listed": listed,
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


def child(
    args: argparse.Namespace, phase: str, input_uri: str, out: str, stop_after: int = 0
) -> dict[str, object]:
    cmd = [
        sys.executable, __file__, "--phase", phase, "--input", input_uri, "--out", out,
        "--workers", str(args.workers), "--executor", args.executor,
    ]  # fmt: skip
    if args.package:
        cmd += ["--package", args.package]
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "SCALE_STOP_AFTER": str(stop_after)}
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    print(line, flush=True)
    return dict(json.loads(line))


def upload_corpus(corpus: Path, prefix: str) -> float:
    """Copy the corpus under the S3 ``prefix`` (32 uploads at a time); returns the seconds it took."""
    from concurrent.futures import ThreadPoolExecutor

    from batchsep.io import storage

    t = time.perf_counter()
    files = sorted(p for p in corpus.rglob("*.wav"))
    with ThreadPoolExecutor(32) as pool:
        list(
            pool.map(
                lambda p: storage.write_bytes(f"{prefix}/{p.relative_to(corpus)}", p.read_bytes()),
                files,
            )
        )
    return time.perf_counter() - t


def phases(args: argparse.Namespace, input_uri: str, out: str) -> list[dict[str, object]]:
    """The runs of one output folder: a first run and a no-op resume, or (``--interrupt``) a first run
    stopped half-way, the resume that finishes it, and a no-op resume."""
    if args.interrupt:
        return [
            child(args, "partial", input_uri, out, stop_after=args.files // 2),
            child(args, "resume", input_uri, out),
            child(args, "noop", input_uri, out),
        ]
    return [child(args, "full", input_uri, out), child(args, "noop", input_uri, out)]


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
        "--interrupt", action="store_true",
        help="stop the first run half-way (copy executor), then resume it, then a no-op resume",
    )  # fmt: skip
    p.add_argument(
        "--s3", action="store_true",
        help="run from a manifest on the tests' S3 server into an S3 OUT (the corpus is uploaded)",
    )  # fmt: skip
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
    if args.interrupt and args.executor != "copy":
        p.error("--interrupt needs --executor copy")
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
    tag += "-s3" if args.s3 else ""
    if args.s3:
        s3_runs(args, corpus, tag)
        return
    out = Path(args.out or f"/tmp/batchsep-scale-out/{tag}-n{args.files}")
    shutil.rmtree(out, ignore_errors=True)
    rows = phases(args, str(corpus), str(out))
    if args.manifest:
        manifest = out.parent / f"{tag}-n{args.files}-manifest.parquet"
        write_manifest(corpus, manifest)
        out2 = out.parent / f"{tag}-n{args.files}-from-manifest"
        shutil.rmtree(out2, ignore_errors=True)
        rows.append(child(args, "manifest", str(manifest), str(out2)))
    print_table(tag, rows)


def s3_runs(args: argparse.Namespace, corpus: Path, tag: str) -> None:
    """``--s3``: start the tests' S3 server, upload the corpus and a manifest of it, run the phases from
    the manifest into an S3 OUT."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from s3server import start_s3_server

    from batchsep.io import storage

    with tempfile.TemporaryDirectory(prefix="batchsep-scale-s3-") as tmp:
        server = start_s3_server(Path(tmp) / "s3")
        try:
            os.environ.update(server.env())
            bucket = f"s3://{server.new_bucket('scale')}"
            seconds = upload_corpus(corpus, f"{bucket}/in")
            print(f"uploaded {args.files} files to {bucket}/in in {seconds:.1f} s", flush=True)
            local = Path(tmp) / "manifest.parquet"
            write_manifest(corpus, local, prefix=f"{bucket}/in")
            manifest = f"{bucket}/run/manifest.parquet"
            storage.write_bytes(manifest, local.read_bytes())
            rows = phases(args, manifest, f"{bucket}/out")
            for r in rows:
                listed = r.get("listed") or {}
                inputs = {u: n for u, n in listed.items() if u.startswith(f"{bucket}/in")}
                print(
                    f"{r['phase']}: listed {listed}; under the input prefix: {inputs or 'nothing'}"
                )
            print_table(tag, rows)
        finally:
            server.stop()


def print_table(tag: str, rows: list[dict[str, object]]) -> None:
    print(
        f"\n| {tag} | files | files run | wall s | first output s | files/s | result files "
        "| driver RSS before / peak MB | CPU s in enhance | waited for a CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['phase']} | {r['files']} | {r['files_run']} | {r['wall_s']} | {r['first_output_s']} "
            f"| {r['files_per_s']} | {r['result_files']} | {r['rss_before_mb']} / {r['peak_rss_mb']} "
            f"| {r.get('cpu_enhance_s')} | {r.get('runqueue_wait_s')} |"
        )


if __name__ == "__main__":
    main()
