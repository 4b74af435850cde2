"""Every per-file failure is a row; a failure that fails every further file stops the job, committed.

The full disk here is a real file that stops taking bytes (``OSError(ENOSPC)`` from its raw writes, under
Python's buffering): see ``tests/integration/test_enhance_full_disk.py`` for a real full file system.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from full_disk import full_disk
from parts_helpers import read_parts

from batchsep.errors import JobStoppedError, StorageFullError
from batchsep.io import schemas, storage
from batchsep.io.storage import TMP_PREFIX
from batchsep.pipeline.enhance.file import RUN_FATAL, EnhanceOptions, enhance_file, run_fatal
from batchsep.pipeline.enhance.summary import EnhanceSummary
from batchsep.pipeline.enhance.worker import EnhanceWorker, ShardTask

SR = 16000


def tone_file(path: Path, seconds: float = 1.0, freq: float = 440.0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, subtype="PCM_16")
    return str(path)


def identity(windows: np.ndarray) -> np.ndarray:
    return windows


def leftovers(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(TMP_PREFIX) or n.endswith(".wav"))


@pytest.mark.parametrize("limit", [0, 100, 30_000, 63_000])
@pytest.mark.parametrize("defer", [False, True])
def test_a_full_disk_is_the_files_error_row(tmp_path, monkeypatch, capfd, limit, defer):
    """Whether the disk fills at the header, mid-data or at the last flush (the output is 64 kB), in
    soundfile's C callback or when the output is published: the row names the file and the disk's
    error, is marked fatal for the run, and nothing is left in OUT, nor printed (no cffi traceback)."""
    src = tone_file(tmp_path / "in" / "a.wav")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = str(out_dir / "a.wav")
    full_disk(monkeypatch, limit)
    deferred = storage.DeferredWrites() if defer else None
    options = EnhanceOptions(subtype="FLOAT")  # 64 kB out (the 16-bit input's own: 32 kB)
    row = enhance_file(src, out, identity, options, deferred=deferred)
    if deferred is not None:
        failed = deferred.close()
        if row["status"] == schemas.STATUS_OK:  # the disk filled when the output was published
            assert list(failed) == [out]
            err = failed[out]
            row.update(status=schemas.STATUS_ERROR, error=str(err))
            row[RUN_FATAL] = run_fatal(err, output=True)
    assert row["status"] == schemas.STATUS_ERROR
    assert row["error"] == f"cannot write {out}: No space left on device"
    assert row[RUN_FATAL] == "full"
    assert leftovers(out_dir) == []
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "cffi" not in captured.err


def test_the_same_file_is_written_whole_when_there_is_room(tmp_path, monkeypatch):
    src = tone_file(tmp_path / "in" / "a.wav")
    full_disk(monkeypatch, 1 << 20)
    out = str(tmp_path / "a.wav")
    row = enhance_file(src, out, identity, EnhanceOptions())
    assert row["status"] == schemas.STATUS_OK and RUN_FATAL not in row
    assert sf.info(out).frames == SR


def test_a_library_failure_is_the_files_row_and_not_fatal(tmp_path):
    """Any exception of a library (here an assertion inside the model) is that file's error row."""
    src = tone_file(tmp_path / "in" / "a.wav")

    def broken(windows: np.ndarray) -> np.ndarray:
        raise AssertionError

    out_dir = tmp_path / "out"
    row = enhance_file(src, str(out_dir / "a.wav"), broken, EnhanceOptions())
    assert row["status"] == schemas.STATUS_ERROR
    assert row["error"] == "enhancement failed: AssertionError"
    assert RUN_FATAL not in row and row["output_uri"] is None
    assert not out_dir.exists() or leftovers(out_dir) == []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    from batchsep.io.checkpoint import write_checkpoint
    from batchsep.models import build_model, serialize

    torch.manual_seed(0)
    uri = str(tmp_path_factory.mktemp("model") / "lstm")
    write_checkpoint(uri, serialize(build_model("lstm", {"n_layers": 1, "hidden": 8})))
    return uri


@pytest.mark.parametrize("defer", [False, True])
def test_the_worker_does_not_try_the_rest_of_a_shard_after_a_full_disk(
    tmp_path, monkeypatch, tiny_model, defer
):
    files = tuple(
        (tone_file(tmp_path / "in" / f"f{i}.wav"), f"f{i}.wav", str(tmp_path / "out" / f"f{i}.wav"))
        for i in range(3)
    )
    worker = EnhanceWorker(tiny_model, {}, num_threads=1, defer_writes=defer)
    full_disk(monkeypatch, 10_000)
    rows = worker(ShardTask(0, files))
    assert [r["rel_path"] for r in rows] == ["f0.wav", "f1.wav", "f2.wav"]
    assert all(r["status"] == schemas.STATUS_ERROR and r[RUN_FATAL] == "full" for r in rows)
    assert rows[0]["error"] == f"cannot write {files[0][2]}: No space left on device"
    if not defer:  # deferred: each file is tried, and fails when published
        assert rows[1]["error"] == f"not tried: f0.wav failed before it ({rows[0]['error']})"
    assert leftovers(tmp_path / "out") == []
    # the worker's later shards (a pool's actor runs ahead of the driver's commits) are not tried either,
    # even with room again: they must not fill the disk the driver commits the failing shard to
    monkeypatch.undo()
    more = ((tone_file(tmp_path / "in" / "g.wav"), "g.wav", str(tmp_path / "out" / "g.wav")),)
    (row,) = worker(ShardTask(1, more))
    assert row["error"].startswith("not tried: f0.wav failed before it (cannot write ")
    assert row[RUN_FATAL] == "full" and leftovers(tmp_path / "out") == []


def _rows(task: ShardTask, fatal_from: int | None) -> list[dict[str, Any]]:
    rows = []
    for uri, rel, out in task.files:
        row: dict[str, Any] = {
            "input_uri": uri, "rel_path": rel, "output_uri": out, "shard": task.shard,
            "status": schemas.STATUS_OK, "duration_s": 1.0, "t_total_s": 0.1,
        }  # fmt: skip
        if fatal_from is not None and task.shard >= fatal_from:
            row.update(status=schemas.STATUS_ERROR, output_uri=None, error="cannot write: full")
            row[RUN_FATAL] = "full"
        rows.append(row)
    return rows


def test_the_driver_commits_the_failing_shard_then_stops(tmp_path, tiny_model):
    """Shards 0 and 1 are committed (1 with its error rows, without the internal mark), shard 2 is never
    asked for, the executor is closed, and JobStoppedError carries the summary of what is committed."""
    from batchsep.pipeline.enhance.driver import enhance

    for i in range(6):
        tone_file(tmp_path / "in" / f"f{i}.wav", seconds=0.2)
    seen: list[int] = []
    closed: list[bool] = []

    def executor(
        worker_kwargs: dict[str, Any], tasks: Sequence[ShardTask]
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        try:
            for task in tasks:
                seen.append(task.shard)
                yield task.shard, _rows(task, fatal_from=tasks[1].shard)
        finally:
            closed.append(True)

    out = tmp_path / "out"
    with pytest.raises(JobStoppedError) as info:
        enhance(str(tmp_path / "in"), str(out), model=tiny_model, executor=executor, shard_size=2)
    message = str(info.value)
    assert message.startswith("stopped early (2 files not started): f2.wav: cannot write: full.")
    assert f"Free space on the storage of {out}" in message and "--retry-failed" in message
    assert len(seen) == 2 and closed == [True]
    summary = info.value.summary
    assert isinstance(summary, EnhanceSummary)
    assert (summary.files_ok, summary.files_failed, summary.files_run) == (2, 2, 4)
    table = read_parts(str(out / "results"))
    assert RUN_FATAL not in table.column_names
    rows = table.to_pylist()
    assert sorted(r["rel_path"] for r in rows) == [f"f{i}.wav" for i in range(4)]
    assert [r["status"] for r in sorted(rows, key=lambda r: r["rel_path"])] == ["ok"] * 2 + [
        "error"
    ] * 2


def test_a_commit_on_a_full_disk_stops_the_job(tmp_path, monkeypatch, tiny_model):
    from batchsep.pipeline.enhance.driver import enhance

    for i in range(4):
        tone_file(tmp_path / "in" / f"f{i}.wav", seconds=0.2)

    def executor(
        worker_kwargs: dict[str, Any], tasks: Sequence[ShardTask]
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        for task in tasks:
            yield task.shard, _rows(task, fatal_from=None)
            full_disk(monkeypatch, 0)  # after the first commit, the disk is full

    out = tmp_path / "out"
    with pytest.raises(JobStoppedError, match="cannot commit the results of 2 files") as info:
        enhance(str(tmp_path / "in"), str(out), model=tiny_model, executor=executor, shard_size=2)
    assert "No space left on device" in str(info.value)
    assert isinstance(info.value.summary, EnhanceSummary) and info.value.summary.files_ok == 2
    assert len(read_parts(str(out / "results"))) == 2


def test_run_fatal_kinds():
    from batchsep.errors import StorageAccessError, StorageError

    assert run_fatal(StorageFullError("x"), output=False) == "full"
    assert run_fatal(StorageAccessError("x"), output=True) == "access"
    assert run_fatal(StorageAccessError("x"), output=False) is None  # an input the store refuses
    assert run_fatal(StorageError("x"), output=True) is None  # one file's: a folder in the way
