"""The enhance stage: stream each file through decode → 16 kHz → chunked model → original rate → encode.

Everything here is Ray-free. :class:`EnhanceWorker` is the callable that a Ray Data actor pool (or the serial
executor) holds: it loads the model once (:mod:`batchsep.pipeline.enhancer`) and enhances one shard of files
per call, returning one result row per file. :func:`enhance` is the driver: it lists the input, skips files
already committed in ``results/part-*.parquet`` (the commit record, :mod:`batchsep.pipeline.outfolder`), runs
the remaining shards through an executor and commits one results part per finished shard, atomically. Output
audio is written atomically before its row is returned, so a file is either done (row committed, audio
complete) or will be redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import soundfile as sf
import soxr
import torch

from batchsep.errors import AudioDecodeError, BatchsepError, ParameterError, StorageError
from batchsep.io import audio, checkpoint, parquet, schemas, storage
from batchsep.pipeline import jobinfo
from batchsep.pipeline.chunking import overlap_add_stream
from batchsep.pipeline.enhancer import MaskEnhancer, load_enhancer
from batchsep.pipeline.level import MODEL_LEVEL, InputLevel, check_input_level, resolve_input_level
from batchsep.pipeline.outfolder import (
    RESULTS_DIR,
    check_same_settings,
    committed_rows,
    enhance_inputs,
    forget_missing_outputs,
    note_renamed,
    output_rel_paths,
)
from batchsep.pipeline.runner import shards
from batchsep.pipeline.tag import EmotionTagger

MODEL_SR = 16000
CLIP_LEVEL = 0.999


@dataclass(frozen=True)
class EnhanceOptions:
    """How files are enhanced and written (all plain values: travels to workers as a dict)."""

    out_sr: Literal["keep"] | int = "keep"
    fmt: Literal["wav", "flac"] = "wav"
    chunk_s: float = 30.0
    overlap_s: float = 0.5
    batch_windows: int = 4
    max_duration_s: float = 24 * 3600.0
    block_frames: int = 1 << 17
    input_level_db: InputLevel = MODEL_LEVEL
    """Level (dBFS) each window is brought to for the model: ``"model"``, the level the model was trained
    at (see :func:`~batchsep.pipeline.level.resolve_input_level`); ``None`` feeds it the raw level."""

    def __post_init__(self) -> None:
        if self.out_sr != "keep" and (not isinstance(self.out_sr, int) or self.out_sr <= 0):
            raise ParameterError(f"out_sr={self.out_sr!r} must be 'keep' or a positive integer")
        if self.fmt not in audio.ENCODE_FORMATS:
            raise ParameterError(f"fmt={self.fmt!r} must be one of {sorted(audio.ENCODE_FORMATS)}")
        check_input_level(self.input_level_db)
        if not 0 < self.overlap_s < self.chunk_s / 2:
            raise ParameterError(
                f"overlap_s={self.overlap_s} must be in (0, chunk_s/2={self.chunk_s / 2})"
            )


def _fail(row: dict[str, Any], err: BaseException) -> dict[str, Any]:
    row.update(status=schemas.STATUS_ERROR, error=str(err) or type(err).__name__, output_uri=None)
    return row


class _Reader:
    """Streams a decoded file as mono 16 kHz blocks, measuring what it reads."""

    def __init__(self, f: sf.SoundFile, block_frames: int) -> None:
        self.f, self.block_frames = f, block_frames
        self.frames = self.clipped = self.nonzero = 0
        self.seconds = 0.0
        sr = f.samplerate
        self.resampler = (
            soxr.ResampleStream(sr, MODEL_SR, 1, dtype="float32") if sr != MODEL_SR else None
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        """Blocks via :func:`audio.read_blocks` (readable decode errors, exact first NaN/Inf frame)."""
        t = time.perf_counter()
        for b in audio.read_blocks(self.f, self.block_frames):
            last = b.shape[0] < self.block_frames
            self.frames += b.shape[0]
            self.clipped += int(np.count_nonzero(np.abs(b) >= CLIP_LEVEL))
            self.nonzero += int(np.count_nonzero(b))
            mono = b.mean(axis=1) if b.shape[1] > 1 else b[:, 0]
            if self.resampler is not None:
                mono = self.resampler.resample_chunk(mono, last=last)
            self.seconds += time.perf_counter() - t
            if mono.size:
                yield mono
            if last:
                return
            t = time.perf_counter()
        if self.resampler is not None:  # the stream ended on a block boundary: flush the resampler
            mono = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self.seconds += time.perf_counter() - t
            if mono.size:
                yield mono


class _Writer:
    """Resamples 16 kHz pieces to the output rate and writes exactly ``n_out`` samples (or nothing).

    Integer formats (FLAC) clip samples outside [-1, 1]; ``clipped`` counts them (float WAV keeps them).
    """

    def __init__(self, f: sf.SoundFile | None, out_sr: int, n_out: int, fmt: str) -> None:
        self.f, self.n_out, self.fmt, self.written = f, n_out, fmt, 0
        self.clips, self.clipped = audio.clips_on_write(fmt), 0
        self.resampler = (
            soxr.ResampleStream(MODEL_SR, out_sr, 1, dtype="float32")
            if out_sr != MODEL_SR
            else None
        )

    def write(self, y: np.ndarray, *, last: bool = False) -> None:
        if self.f is None:
            return
        if self.resampler is not None:
            y = self.resampler.resample_chunk(y, last=last)
        y = y[: max(0, self.n_out - self.written)]
        if self.clips:
            y, n = audio.clip_to_full_scale(y)
            self.clipped += n
        self.f.write(y)
        self.written += y.shape[0]

    def close(self) -> None:
        self.write(np.zeros(0, np.float32), last=True)
        if self.f is not None and self.written < self.n_out:  # resampler rounding: pad the end
            self.f.write(np.zeros(self.n_out - self.written, np.float32))


def enhance_file(
    uri: str,
    out_uri: str | None,
    enhancer: Callable[[np.ndarray], np.ndarray] | None,
    options: EnhanceOptions,
    *,
    tagger: EmotionTagger | None = None,
) -> dict[str, Any]:
    """Enhance one file in bounded memory and write it atomically; never raises for bad input.

    With ``tagger`` the enhanced 16 kHz signal is also tagged with emotions (per voiced segment and per
    file). ``enhancer=None`` and ``out_uri=None`` tag the input as it is and write no audio
    (``batchsep tag``).
    """
    t0 = time.perf_counter()
    t_model = 0.0
    row: dict[str, Any] = {"input_uri": uri, "output_uri": out_uri, "status": schemas.STATUS_OK}

    def timed(fn: Callable[..., Any], *args: Any) -> Any:
        nonlocal t_model
        t = time.perf_counter()
        out = fn(*args)
        t_model += time.perf_counter() - t
        return out

    try:
        with contextlib.ExitStack() as stack:
            fin = stack.enter_context(storage.open_input(uri))
            f = stack.enter_context(audio.open_stream(fin))  # empty, not audio, truncated: refused
            in_sr, frames = f.samplerate, f.frames
            row.update(sample_rate=in_sr, channels=f.channels, duration_s=frames / in_sr)
            if frames <= 0:
                raise AudioDecodeError("no audio frames (0 samples)")
            if frames / in_sr > options.max_duration_s:
                raise AudioDecodeError(
                    f"file too long: {frames / in_sr:.0f} s > max_duration_s={options.max_duration_s:.0f}"
                )
            out_sr = in_sr if options.out_sr == "keep" else int(options.out_sr)
            row["out_sample_rate"] = out_sr
            out_file = None
            if out_uri is not None:
                fmt, subtype = audio.ENCODE_FORMATS[options.fmt]
                fout = stack.enter_context(storage.atomic_writer(out_uri))
                out_file = stack.enter_context(
                    sf.SoundFile(
                        fout, "w", samplerate=out_sr, channels=1, format=fmt, subtype=subtype
                    )
                )
            n_out = frames if out_sr == in_sr else round(frames * out_sr / in_sr)
            writer = _Writer(out_file, out_sr, n_out, options.fmt)
            reader = _Reader(f, options.block_frames)
            pieces: Iterable[np.ndarray] = reader
            if enhancer is not None:
                pieces = overlap_add_stream(
                    reader, lambda w: timed(enhancer, w), chunk=round(options.chunk_s * MODEL_SR),
                    overlap=round(options.overlap_s * MODEL_SR), batch=options.batch_windows,
                )  # fmt: skip
            tags = tagger.stream() if tagger is not None else None
            for y in pieces:
                if tags is not None:
                    timed(tags.feed, y)
                writer.write(y)
            if reader.frames == 0:
                raise AudioDecodeError("no audio frames (0 samples)")
            writer.close()
    except (AudioDecodeError, StorageError, ParameterError) as e:
        return _fail(row, e)
    except (sf.LibsndfileError, RuntimeError, ValueError, MemoryError) as e:
        return _fail(row, BatchsepError(f"enhancement failed: {type(e).__name__}: {e}"))
    warnings = []
    if reader.nonzero == 0:
        warnings.append("input is digital silence" + (" (output is silence)" if out_uri else ""))
    if reader.clipped:
        warnings.append(f"input is clipped ({reader.clipped} samples at full scale)")
    if writer.clipped:
        warnings.append(f"output clipped to full scale ({writer.clipped} samples)")
    if tags is not None:
        emotion = timed(tags.result)
        if emotion.pop("emotion_warning"):
            warnings.append("no voiced audio to tag with an emotion")
        row.update(emotion)
    t_total = time.perf_counter() - t0
    row.update(
        warning="; ".join(warnings) or None, duration_s=reader.frames / in_sr,
        t_decode_s=reader.seconds, t_model_s=t_model, t_total_s=t_total,
        t_write_s=max(0.0, t_total - reader.seconds - t_model),
    )  # fmt: skip
    return row


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: a shard id and its files ``(input uri, rel_path, output uri)``."""

    shard: int
    files: tuple[tuple[str, str, str], ...]


class EnhanceWorker:
    """Loads the model once; ``worker(task)`` enhances a shard and returns its result rows.

    Ray-free: Ray Data holds one per actor; the serial executor holds one in-process.
    """

    def __init__(
        self,
        model_uri: str | None,
        options: dict[str, Any],
        *,
        device: str = "cpu",
        num_threads: int | None = None,
        emotion_uri: str | None = None,
    ) -> None:
        if num_threads:
            torch.set_num_threads(num_threads)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ParameterError(
                "device='cuda' requested but no CUDA device is visible to this worker"
            )
        self.options = EnhanceOptions(**options)
        self.enhancer: MaskEnhancer | None = None
        self.model_name: str | None = None
        self.model_sha: str | None = None
        if model_uri is not None:
            self.enhancer, self.model_name, self.model_sha = load_enhancer(
                model_uri, device=device, input_level_db=self.options.input_level_db
            )
        self.tagger = EmotionTagger(emotion_uri, device=device) if emotion_uri else None
        self.host = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, task: ShardTask) -> list[dict[str, Any]]:
        rows = []
        for uri, rel, out in task.files:
            target = out if self.enhancer is not None else None
            row = enhance_file(uri, target, self.enhancer, self.options, tagger=self.tagger)
            row.update(
                rel_path=rel,
                shard=task.shard,
                model_name=self.model_name,
                model_sha256=self.model_sha,
                emotion_model_sha256=self.tagger.model_sha if self.tagger else None,
                worker=self.host,
            )
            rows.append(row)
        return rows


class ShardExecutor(Protocol):
    """Runs ``EnhanceWorker(**worker_kwargs)`` over tasks; yields ``(shard, rows)`` as shards finish."""

    def __call__(
        self, worker_kwargs: dict[str, Any], tasks: Sequence[ShardTask]
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]: ...


def serial_executor(
    worker_kwargs: dict[str, Any], tasks: Sequence[ShardTask]
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Run every shard in this process with one worker (tests, ``--local``)."""
    if not tasks:
        return
    worker = EnhanceWorker(**worker_kwargs)
    for task in tasks:
        yield task.shard, worker(task)


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
    """Hours of audio committed by this run (``hours`` also counts files done by earlier runs)."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    non_audio_skipped: int = 0
    """Files under the input that are not audio (by name), left alone."""
    outputs_missing: int = 0
    """Files committed by an earlier run whose output had gone missing: enhanced again by this run."""
    input_level_db: float | None = None
    """The level (dBFS) the model saw each window at (None: the raw level, or no enhancement model)."""

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
    shard_size: int | None = None,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> EnhanceSummary:
    """Enhance every audio file under ``in_uri`` into ``out_uri`` (same relative paths).

    ``emotion``: an emotion model (``default-emotion`` or a URI) that tags the enhanced audio;
    ``model=None`` with ``emotion`` set tags the input without enhancing it (no audio written).
    ``shard_size``: files per unit of work, commit and retry (default :func:`auto_shard_size`).
    ``on_start(phase, n_files)`` is called once with the number of files this run processes (those already
    committed are not counted), then ``on_progress(n_files, audio_seconds)`` per committed shard.

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
        for e in storage.list_files(results_uri) if storage.exists(results_uri) else []:
            storage.delete(e.uri)
    storage.remove_stale_temps(out_uri)
    done_rows = committed_rows(out_uri)
    if done_rows:
        check_same_settings(out_uri, spec)
        done_rows, missing = forget_missing_outputs(out_uri, done_rows)
    else:
        missing = 0
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
    seconds_run = 0.0
    for shard_id, rows in executor(worker_kwargs, tasks):
        if model is not None:
            note_renamed(rows, out_rel, options.fmt)
        table = schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS)
        parquet.write_table(parquet.part_uri(results_uri, shard_id), table)
        seconds = sum(float(r.get("duration_s") or 0.0) for r in rows)
        seconds_run += seconds
        if on_progress:
            on_progress(len(rows), seconds)
    summary = EnhanceSummary(
        out_uri=out_uri, files_skipped=len(entries) - len(todo), hours_run=seconds_run / 3600.0,
        non_audio_skipped=non_audio, outputs_missing=missing,
        input_level_db=level_used,
    )  # fmt: skip
    for r in committed_rows(out_uri):
        if r["status"] == schemas.STATUS_OK:
            summary.files_ok += 1
            summary.hours += float(r["duration_s"] or 0.0) / 3600.0
            summary.processing_s += float(r["t_total_s"] or 0.0)
        else:
            summary.files_failed += 1
            summary.errors.append((r["rel_path"], r["error"]))
    summary.wall_s = time.perf_counter() - t_start
    return summary


def task_to_json(task: ShardTask) -> str:
    return json.dumps(asdict(task))


def task_from_json(text: str) -> ShardTask:
    d = json.loads(text)
    return ShardTask(int(d["shard"]), tuple(tuple(f) for f in d["files"]))  # type: ignore[misc]
