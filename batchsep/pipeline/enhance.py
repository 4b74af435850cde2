"""The enhance stage: stream each file through decode → 16 kHz → chunked model → original rate → encode.

Everything here is Ray-free. :class:`~batchsep.pipeline.enhance_worker.EnhanceWorker` is the
callable that a Ray Data actor pool (or the serial executor) holds: it loads the model once
(:mod:`batchsep.pipeline.enhancer`) and enhances one shard of files per call, returning one result
row per file. :func:`enhance` is the driver: it lists the input, skips files already committed in
``results/part-*.parquet`` (the commit record, :mod:`batchsep.pipeline.outfolder`), runs the
remaining shards through an executor and commits one results part per finished shard, atomically.
Output audio is written atomically before its row is returned, so a file is either done (row
committed, audio complete) or will be redone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from batchsep.errors import ParameterError
from batchsep.io import checkpoint, parquet, schemas, storage
from batchsep.pipeline import jobinfo
from batchsep.pipeline.enhance_file import EnhanceOptions
from batchsep.pipeline.enhance_worker import ShardExecutor, ShardTask, serial_executor
from batchsep.pipeline.level import resolve_input_level
from batchsep.pipeline.outfolder import (
    RESULTS_DIR,
    check_same_settings,
    committed_rows,
    discard_results,
    enhance_inputs,
    forget_failed,
    forget_missing_outputs,
    note_renamed,
    output_rel_paths,
)
from batchsep.pipeline.runner import shards


@dataclass
class EnhanceSummary:
    """Totals over every committed results row of the output folder (this run and earlier ones)."""

    out_uri: str
    files_ok: int = 0
    files_failed: int = 0
    files_skipped: int = 0
    hours: float = 0.0
    processing_s: float = 0.0
    wall_s: float = 0.0
    hours_run: float = 0.0
    """Hours of audio enhanced by this run (``hours`` also counts files done by earlier runs)."""
    files_run: int = 0
    """Files this run committed a row for (ok or failed)."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    non_audio_skipped: int = 0
    """Files under the input that are not audio (by name), left alone."""
    outputs_missing: int = 0
    """Files committed by an earlier run whose output had gone missing: enhanced again by this run."""
    failed_retried: int = 0
    """Files whose committed row said they failed, tried again by this run (``retry_failed``)."""
    input_level_db: float | None = None
    """The level (dBFS) the model saw each window at (None: the raw level, or no enhancement model)."""

    def count(self, rows: list[dict[str, Any]]) -> None:
        """Add committed results rows to the totals."""
        for r in rows:
            if r["status"] == schemas.STATUS_OK:
                self.files_ok += 1
                self.hours += float(r["duration_s"] or 0.0) / 3600.0
                self.processing_s += float(r["t_total_s"] or 0.0)
            else:
                self.files_failed += 1
                self.errors.append((r["rel_path"], r["error"]))

    @property
    def files(self) -> int:
        return self.files_ok + self.files_failed

    @property
    def x_real_time(self) -> float:
        """This run's audio over its wall time (start-up of Ray and of the models included)."""
        return self.hours_run * 3600.0 / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def x_real_time_per_worker(self) -> float:
        """Audio over the time spent on the files (decode → model → write), summed over workers."""
        return self.hours * 3600.0 / self.processing_s if self.processing_s > 0 else float("nan")


MAX_AUTO_SHARD = 32


def auto_shard_size(n_files: int, *, min_shards: int = 16) -> int:
    """Files per shard for ``n_files``: at least ``min_shards`` shards (work for every actor of a pool,
    even as it ends) and at most ``MAX_AUTO_SHARD`` files each (a lost worker redoes little). Larger
    shards cost less per file: each shard is one Ray Data batch and one committed results part
    (``bench/enhance.py``: 2 workers ran 280x real time with 4 files a shard, 390x with 16-32)."""
    return max(1, min(MAX_AUTO_SHARD, n_files // min_shards))


def enhance(
    in_uri: str,
    out_uri: str,
    *,
    model: str | None = "default",
    emotion: str | None = None,
    executor: ShardExecutor = serial_executor,
    options: EnhanceOptions | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    shard_size: int | None = None,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> EnhanceSummary:
    """Enhance every audio file under ``in_uri`` into ``out_uri`` (same relative paths).

    ``emotion``: an emotion model (``default-emotion`` or a URI) that tags the enhanced audio;
    ``model=None`` with ``emotion`` set tags the input without enhancing it (no audio written).
    ``retry_failed``: also do again the files whose committed row says they failed (their rows are
    replaced); by default a re-run keeps them.
    ``shard_size``: files per unit of work, commit and retry (default :func:`auto_shard_size`).
    ``on_start(phase, n_files)`` is called once with the number of files this run processes (those already
    committed are not counted), then ``on_progress(n_files, audio_seconds)`` per committed shard (the audio of
    the files enhanced, failed ones not counted).

    Raises
    ------
    StorageError
        Input missing/unlistable or output not writable (before any work).
    """
    t_start = time.perf_counter()
    options = options or EnhanceOptions()
    entries, non_audio = enhance_inputs(in_uri, out_uri)
    storage.check_writable(out_uri)
    if model is None and emotion is None:
        raise ParameterError("nothing to do: give an enhancement model, an emotion model, or both")
    # fail fast on a bad model URI, before any worker starts
    metas = {uri: checkpoint.read_checkpoint(uri) for uri in (model, emotion) if uri is not None}
    # each model in its role, checked here: a worker that cannot load it would fail on every shard
    from batchsep.pipeline.emotion_worker import EMOTION_MODELS

    if model is not None and metas[model]["model_name"] in EMOTION_MODELS:
        raise ParameterError(
            f"model {model!r} is the emotion model {metas[model]['model_name']!r}, not an enhancer "
            "(the shipped enhancer is 'default'; give an emotion model as the emotion model)"
        )
    if emotion is not None and metas[emotion]["model_name"] not in EMOTION_MODELS:
        raise ParameterError(
            f"emotion model {emotion!r} is the enhancer {metas[emotion]['model_name']!r}, not an "
            "emotion model (the shipped emotion model is 'default-emotion')"
        )
    level_used = resolve_input_level(options.input_level_db, metas[model]) if model else None
    spec = {  # absolute: a later evaluate (from any directory) finds the input's prepare run from it
        "in_uri": storage.normalize(in_uri),
        "out_uri": storage.normalize(out_uri),
        "model": model,
        "model_sha256": metas[model]["sha256"] if model else None,
        "emotion": emotion,
        "emotion_sha256": metas[emotion]["sha256"] if emotion else None,
        "device": device,
        "options": asdict(options),
        "input_level_db_used": level_used,
    }
    results_uri = storage.join(out_uri, RESULTS_DIR)
    if not resume:
        discard_results(out_uri)
    storage.remove_stale_temps(out_uri)
    done_rows = committed_rows(out_uri)
    if done_rows:
        check_same_settings(out_uri, spec)
        done_rows, missing = forget_missing_outputs(out_uri, done_rows)
    else:
        missing = 0
    retried = 0
    if done_rows and retry_failed:
        done_rows, retried = forget_failed(out_uri, done_rows, {e.rel_path for e in entries})
    done = {r["rel_path"] for r in done_rows}
    next_part = max((int(r["shard"]) for r in done_rows), default=-1) + 1
    out_rel = output_rel_paths([e.rel_path for e in entries], options.fmt)
    todo = [e for e in entries if e.rel_path not in done]
    shard_size = shard_size or auto_shard_size(len(todo))
    tasks = [
        ShardTask(
            next_part + i,
            tuple((e.uri, e.rel_path, storage.join(out_uri, out_rel[e.rel_path])) for e in group),
        )
        for i, group in enumerate(shards(todo, shard_size))
    ]
    worker_kwargs = {
        "model_uri": model,
        "options": asdict(options),
        "device": device,
        "num_threads": num_threads,
        "emotion_uri": emotion,
    }
    # recorded before any work: a re-run into this folder (after an interruption, too) is checked against it
    jobinfo.write_job_json(out_uri, "enhance", {**spec, "shard_size": shard_size})
    if on_start:
        skipped = len(entries) - len(todo)
        phase = "enhance" if model is not None else "tag"
        on_start(f"{phase} ({skipped} done before)" if skipped else phase, len(todo))
    # totals over the commit record: the rows committed before this run, then each shard this run commits
    summary = EnhanceSummary(
        out_uri=out_uri, files_skipped=len(entries) - len(todo), non_audio_skipped=non_audio,
        outputs_missing=missing, failed_retried=retried, input_level_db=level_used,
    )  # fmt: skip
    summary.count(done_rows)
    seconds_run = 0.0
    for shard_id, rows in executor(worker_kwargs, tasks):
        if model is not None:
            note_renamed(rows, out_rel, options.fmt)
        table = schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS)
        parquet.write_table(parquet.part_uri(results_uri, shard_id), table)
        summary.count(rows)
        seconds = sum(  # audio processed: a failed file's declared duration is not
            float(r.get("duration_s") or 0.0) for r in rows if r["status"] == schemas.STATUS_OK
        )
        summary.files_run += len(rows)
        seconds_run += seconds
        if on_progress:
            on_progress(len(rows), seconds)
    summary.errors.sort()
    summary.hours_run = seconds_run / 3600.0
    summary.wall_s = time.perf_counter() - t_start
    if tasks:  # for reports: the end-to-end speed, start-up included
        jobinfo.record_run(
            out_uri, "enhance",
            {"wall_s": round(summary.wall_s, 3), "audio_s": round(seconds_run, 3),
             "files": sum(len(t.files) for t in tasks)},
        )  # fmt: skip
    return summary
