"""Benchmark: scan throughput (files/s and hours of audio per second) with 1 and 2 Ray workers.

Run:  .venv/bin/python bench/scan.py [DATA_DIR]   (default ../shared/data)

Each configuration runs in a fresh embedded Ray (start-up excluded: a warm-up scan runs first) and the
ratio 2 workers / 1 worker is printed from the same run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from batchsep.distributed import runtime
from batchsep.pipeline.scan.driver import scan


def run(data: str, workers: int) -> tuple[float, float, float]:
    runtime.init(num_cpus=workers)
    try:
        with tempfile.TemporaryDirectory() as out:
            runner = runtime.RayRunner(max_in_flight=2 * workers)
            scan(data, out + "/warm", runner=runner, shard_size=32)  # warm workers and page cache
            t0 = time.perf_counter()
            s = scan(data, out + "/run", runner=runner, shard_size=32)
            dt = time.perf_counter() - t0
    finally:
        runtime.shutdown()
    return s.files / dt, s.hours / dt, dt


def main() -> None:
    data = (
        sys.argv[1]
        if len(sys.argv) > 1
        else str(Path(__file__).resolve().parents[1] / "../shared/data")
    )
    results = {w: run(data, w) for w in (1, 2)}
    for w, (fps, hps, dt) in results.items():
        print(
            f"workers={w}: {fps:8.1f} files/s  {hps * 3600:8.1f} s-audio/s ({hps:.3f} h/s)  [{dt:.2f} s]"
        )
    print(f"speed-up 2 vs 1 workers: {results[2][0] / results[1][0]:.2f}x")


if __name__ == "__main__":
    main()
