"""The enhance stage: stream each file through decode → 16 kHz → chunked model → original rate → encode.

Everything here is Ray-free. :class:`~batchsep.pipeline.enhance.worker.EnhanceWorker` is the
callable that a Ray Data actor pool (or the serial executor) holds: it loads the model once
(:mod:`batchsep.pipeline.enhance.enhancer`) and enhances one shard of files per call, returning one result
row per file. :func:`enhance` is the driver: it lists the input (or reads a scan's manifest), skips files
already committed in ``results/`` (the commit record, :mod:`batchsep.pipeline.enhance.record`, read as a compact
index by :mod:`batchsep.pipeline.enhance.plan`), forms the remaining shards batch by batch as it dispatches
them, commits one results part per finished shard, atomically, and compacts the parts as it goes.
Output audio is written atomically before its row is returned, so a file is either done (row
committed, audio complete) or will be redone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from batchsep.dsp.level import MODEL_LEVEL, resolve_input_level
from batchsep.errors import JobStoppedError, ParameterError, StorageError
from batchsep.io import lease, parquet, schemas, storage
from batchsep.io.storage import FileEntry
from batchsep.pipeline.common import jobinfo, progress
from batchsep.pipeline.enhance import record, zoo
from batchsep.pipeline.enhance.file import RUN_FATAL, EnhanceOptions, run_fatal
from batchsep.pipeline.enhance.outfolder import (
    check_same_settings,
    discard_results,
    enhance_inputs,
    note_renamed,
    stamp_rows,
)
from batchsep.pipeline.enhance.plan import Batch, batches, plan_resume
from batchsep.pipeline.enhance.record import RESULTS_DIR
from batchsep.pipeline.enhance.summary import EnhanceSummary
from batchsep.pipeline.enhance.worker import ShardTask, serial_executor
from batchsep.pipeline.runner import ShardExecutor
from batchsep.pipeline.scan.driver import InputFilter

MAX_AUTO_SHARD = 32


def auto_shard_size(n_files: int, *, min_shards: int = 16) -> int:
    """Files per shard for ``n_files``: at least ``min_shards`` shards (work for every actor of a pool,
    even as it ends) and at most ``MAX_AUTO_SHARD`` files each (a lost worker redoes little). Larger
    shards cost less per file: each shard is one Ray Data batch and one committed results part
    (``bench/enhance.py``: 2 workers ran 280x real time with 4 files a shard, 390x with 16-32)."""
    return max(1, min(MAX_AUTO_SHARD, n_files // min_shards))


def _level_used(options: EnhanceOptions, meta: dict[str, Any]) -> float | None:
    """The level the model sees windows at; zoo models stream at the input's own level (None)."""
    if not meta.get("zoo"):
        return resolve_input_level(options.input_level_db, meta)
    if options.input_level_db not in (MODEL_LEVEL, None):
        raise ParameterError(
            f"input_level_db={options.input_level_db!r}: the zoo model {meta['model_name']!r} sees the "
            "input at its own level (the level option applies to batchsep's own mask models)"
        )
    return None


def enhance(
    in_uri: str,
    out_uri: str,
    *,
    model: str | None = "default",
    emotion: str | None = None,
    executor: ShardExecutor[ShardTask] = serial_executor,
    options: EnhanceOptions | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    prune_missing: bool = False,
    shard_size: int | None = None,
    where: InputFilter | None = None,
    check_outputs: bool = True,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> EnhanceSummary:
    """Enhance every audio file under ``in_uri`` into ``out_uri`` (same relative paths).

    ``in_uri``: a folder or prefix (listed), or a Parquet file listing the inputs (a scan's
    ``RUN/manifest.parquet``, or any with a ``uri`` column): nothing is listed then. ``where`` filters the
    inputs (a glob; a duration range and ``ok_only`` with a manifest).
    ``check_outputs``: on a resume, find the outputs gone missing with one listing of ``out_uri``
    (default); False trusts the commit record (a missing output is then only noticed by the reader).

    ``emotion``: an emotion model (``default-emotion`` or a URI) that tags the enhanced audio;
    ``model=None`` with ``emotion`` set tags the input without enhancing it (no audio written).
    ``retry_failed``: also do again the files whose committed row says they failed (their rows are
    replaced); by default a re-run keeps them.
    ``prune_missing``: remove the rows (and outputs) of inputs that are no longer there; by default they
    are kept as their record. Either way they are not counted in the summary's totals.
    ``shard_size``: files per unit of work, commit and retry (default :func:`auto_shard_size`).
    ``executor``: runs the shards (a :class:`~batchsep.pipeline.runner.ShardExecutor`; default: this process).
    ``on_start(phase, n_files)`` is called once with the number of files this run processes (those already
    committed are not counted), then ``on_progress(n_files, audio_seconds)`` per committed shard (the audio of
    the files enhanced, failed ones not counted).

    The run holds the lease on ``out_uri`` (:mod:`batchsep.io.lease`) from before it reads the commit
    record until it returns or fails: one run at a time writes a folder. A file whose input changed since
    its row (size or modification time) is done again; a record holding more than one row of a file (two
    runs at once before leases, a hand edit) is repaired, the newest row kept.

    Raises
    ------
    StorageError
        Input missing/unlistable or output not writable (before any work).
    OutputBusyError
        Another live run holds ``out_uri``'s lease (or took it over from this one).
    JobStoppedError
        A file failed in a way that fails every further file too (the output's storage is full, the
        object store refuses the writes), or a shard's results could not be committed: the shards done
        (that file's included) are committed, the rest is not started; ``.summary`` counts what is done.
    """
    created = storage.first_missing_folder(out_uri)  # removed again if the run writes nothing
    storage.check_writable(out_uri)
    try:
        held = lease.acquire(out_uri)
    except BaseException:
        storage.remove_if_empty(created)
        raise
    try:
        return _enhance(
            in_uri, out_uri, held, model=model, emotion=emotion, executor=executor,
            options=options, device=device, num_threads=num_threads, resume=resume,
            retry_failed=retry_failed, prune_missing=prune_missing, shard_size=shard_size,
            where=where, check_outputs=check_outputs, on_start=on_start, on_progress=on_progress,
        )  # fmt: skip
    finally:
        # what interrupted writes left (a worker killed mid-file), while the lease is still this run's (no
        # other run's then; taken over, the temporaries may be the new holder's)
        if held.stop():
            with contextlib.suppress(StorageError):
                storage.remove_stale_temps(out_uri)
        held.release()
        # a refused input (missing, corrupt manifest) leaves no empty OUT behind
        storage.remove_if_empty(created)


def _leased(
    executor: ShardExecutor[ShardTask],
    held: lease.Lease,
    inputs: Callable[[int], Mapping[str, FileEntry]],
) -> ShardExecutor[ShardTask]:
    """``executor``, its rows stamped for the commit record (run id, commit time, the input's size and
    modification time as listed: ``inputs(shard)``); stops with OutputBusyError before a commit should the
    lease be lost."""

    def run(
        worker_kwargs: dict[str, Any], tasks: Sequence[ShardTask]
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        results = executor(worker_kwargs, tasks)
        try:
            for shard_id, rows in results:
                held.check()
                yield shard_id, stamp_rows(rows, held.run_id, inputs(shard_id))
        finally:
            _close(results)

    return run


def _enhance(
    in_uri: str,
    out_uri: str,
    held: lease.Lease,
    *,
    model: str | None,
    emotion: str | None,
    executor: ShardExecutor[ShardTask],
    options: EnhanceOptions | None,
    device: str,
    num_threads: int | None,
    resume: bool,
    retry_failed: bool,
    prune_missing: bool,
    shard_size: int | None,
    where: InputFilter | None,
    check_outputs: bool,
    on_start: Callable[[str, int], None] | None,
    on_progress: Callable[[int, float], None] | None,
) -> EnhanceSummary:
    """:func:`enhance`, with ``out_uri``'s lease ``held``."""
    t_start = time.perf_counter()
    options = options or EnhanceOptions()
    listing, non_audio = enhance_inputs(in_uri, out_uri, where)
    if model is None and emotion is None:
        raise ParameterError("nothing to do: give an enhancement model, an emotion model, or both")
    # fail fast on a bad model URI, before any worker starts
    # (a zoo name: its package installed and its files' checksums right, or a ParameterError)
    metas = {uri: zoo.read_model_meta(uri) for uri in (model, emotion) if uri is not None}
    # each model in its role, checked here: a worker that cannot load it would fail on every shard
    from batchsep.models.emotion import EMOTION_MODELS  # not the training stack: ~0.2 s of imports

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
    level_used = _level_used(options, metas[model]) if model else None
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
    run_id = held.run_id
    if not resume:
        discard_results(out_uri)
    else:  # even with no row yet: a run stopped before its first commit may have left outputs
        check_same_settings(out_uri, spec)
    # with the lease held, every temporary in OUT is of a run that is gone
    storage.remove_stale_temps(out_uri)
    plan = plan_resume(
        out_uri, listing, retry_failed=retry_failed, prune_missing=prune_missing,
        check_outputs=check_outputs,
    )  # fmt: skip
    n_todo = plan.n_todo
    pa.default_memory_pool().release_unused()  # what planning freed (the index, the listing of OUT)
    shard_size = shard_size or auto_shard_size(n_todo)
    worker_kwargs = {
        "model_uri": model,
        "options": asdict(options),
        "device": device,
        "num_threads": num_threads,
        "emotion_uri": emotion,
    }
    # recorded before any work: a re-run into this folder (after an interruption, too) is checked against it
    jobinfo.write_job_json(
        out_uri, "enhance", {**spec, "shard_size": shard_size}, skipped=non_audio
    )
    n_inputs = listing.num_rows
    if on_start:
        skipped = n_inputs - n_todo
        phase = "enhance" if model is not None else "tag"
        on_start(f"{phase} ({skipped} done before)" if skipped else phase, n_todo)
    # totals over the commit record: the rows committed before this run of the inputs there now, then
    # each shard this run commits
    summary = EnhanceSummary(
        out_uri=out_uri, files_skipped=n_inputs - n_todo, non_audio_skipped=len(non_audio),
        skipped_names=non_audio, outputs_missing=plan.outputs_missing,
        failed_retried=plan.failed_retried, input_level_db=level_used,
        inputs_changed=plan.inputs_changed, inputs_gone=plan.inputs_gone,
        inputs_gone_pruned=prune_missing, rows_repaired=plan.rows_repaired, run_id=run_id,
        files_ok=plan.files_ok, files_failed=plan.files_failed, hours=plan.hours,
        processing_s=plan.processing_s, errors=plan.errors,
    )  # fmt: skip
    batch: Batch | None = (
        None  # the shards dispatched: their files' listed identity until committed
    )
    leased = _leased(executor, held, lambda shard: batch.entries(shard) if batch else {})
    seconds_run = 0.0
    stopped: str | None = None  # why the job stopped before its end: the JobStoppedError's message
    parts_run = 0
    recent: list[tuple[str, pa.Table]] = []  # parts committed since the last compaction, as written
    for batch in batches(
        listing, plan.todo, out_uri, options.fmt, shard_size=shard_size, first_shard=plan.next_shard
    ):
        results = leased(worker_kwargs, batch.tasks)
        try:
            for shard_id, rows in results:
                # a failure that fails every further file too (RUN_FATAL, set by the worker): commit, stop
                fatal = [(r.pop(RUN_FATAL), r) for r in rows if r.get(RUN_FATAL)]
                if model is not None:
                    note_renamed(rows, _out_rel(out_uri, batch.task(shard_id)), options.fmt)
                table = schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS)
                part = parquet.part_uri(results_uri, shard_id, run_id)
                try:
                    parquet.write_table(part, table)
                except StorageError as e:  # nowhere to commit: no further shard can be either
                    stopped = _stop_message(
                        run_fatal(e, output=True), f"cannot commit the results of {len(rows)} files: {e}",
                        out_uri, n_todo - summary.files_run,
                    )  # fmt: skip
                    break
                summary.count(rows)
                seconds = sum(  # audio processed: a failed file's declared duration is not
                    float(r.get("duration_s") or 0.0)
                    for r in rows
                    if r["status"] == schemas.STATUS_OK
                )
                summary.files_run += len(rows)
                seconds_run += seconds
                progress.report(on_progress, len(rows), seconds, progress.failed_rows(rows))
                if fatal:
                    kind, row = fatal[0]
                    stopped = _stop_message(
                        kind,
                        f"{row['rel_path']}: {row['error']}",
                        out_uri,
                        n_todo - summary.files_run,
                    )
                    break
                parts_run += 1
                recent.append((part, table))
                if len(recent) >= record.COMPACT_PARTS:  # a crash leaves few parts to read back
                    held.check()
                    record.compact_committed(out_uri, *zip(*recent, strict=True))
                    recent.clear()
        finally:  # also when stopped early: a Ray Data job stops its actors, the shards in flight are not run
            _close(results)
        if stopped:
            break
    batch = None
    summary.errors.sort()
    summary.hours_run = seconds_run / 3600.0
    if stopped:  # job.json's runs record finished runs (and the storage may refuse the write)
        summary.wall_s = time.perf_counter() - t_start
        raise JobStoppedError(stopped, summary)
    if parts_run:
        held.check()
        record.compact_at_end(out_uri)
    summary.wall_s = time.perf_counter() - t_start
    if n_todo:  # for reports: the end-to-end speed, start-up included
        jobinfo.record_run(
            out_uri, "enhance",
            {"wall_s": round(summary.wall_s, 3), "audio_s": round(seconds_run, 3), "files": n_todo},
        )  # fmt: skip
    return summary


def _out_rel(out_uri: str, task: ShardTask) -> dict[str, str]:
    """The output name (relative to ``out_uri``) of each file of ``task``, by its relative path."""
    n = len(storage.join(out_uri, "x")) - 1
    return {rel: out[n:] for _uri, rel, out in task.files}


STOP_ADVICE = {
    "full": "free space on the storage of {out} (or raise its quota)",
    "access": "make {out} writable again (the error says why: credentials, rights, endpoint, network)",
}
"""What to do before re-running a job stopped by a :data:`RUN_FATAL` failure, by its kind."""


def _stop_message(kind: str | None, cause: str, out_uri: str, not_started: int) -> str:
    """The message of the JobStoppedError of a job stopped early by ``cause``."""
    advice = STOP_ADVICE.get(kind or "", "fix the cause").format(out=out_uri)
    files = f"{not_started} file{'' if not_started == 1 else 's'}"
    left = f" ({files} not started)" if not_started else ""
    return (
        f"stopped early{left}: {cause}. {advice[0].upper()}{advice[1:]}, then re-run the same "
        "command with --retry-failed: it does the files not started and again those that failed"
    )


def _close(results: Iterator[Any]) -> None:
    """Stop an executor's generator that was not run to its end (its ``finally`` blocks run now)."""
    close = getattr(results, "close", None)
    if close is not None:
        close()
