"""The enhance stage: stream each file through decode → 16 kHz → chunked model → original rate → encode.

Everything here is Ray-free. :class:`EnhanceWorker` is the callable that a Ray Data actor pool (or the serial
executor) holds: it loads the model once and enhances one shard of files per call, returning one result row
per file. :func:`enhance` is the driver: it lists the input, skips files already committed in
``results/part-*.parquet`` (the commit record), runs the remaining shards through an executor and commits
one results part per finished shard, atomically. Output audio is written atomically before its row is
returned, so a file is either done (row committed, audio complete) or will be redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import soundfile as sf
import soxr
import torch

from batchsep.dsp.stft import StftConfig, istft, stft
from batchsep.errors import AudioDecodeError, BatchsepError, ParameterError, StorageError
from batchsep.io import audio, checkpoint, parquet, schemas, storage
from batchsep.io.storage import FileEntry
from batchsep.models.base import MaskModel, deserialize
from batchsep.pipeline import jobinfo
from batchsep.pipeline.chunking import overlap_add_stream
from batchsep.pipeline.level import (
    INPUT_LEVEL_DB,
    MAX_LEVEL_GAIN_DB,
    MODEL_LEVEL,
    InputLevel,
    check_input_level,
    resolve_input_level,
)
from batchsep.pipeline.runner import shards
from batchsep.pipeline.scan import list_audio
from batchsep.pipeline.tag import EmotionTagger

RESULTS_DIR = "results"
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


def level_gain(x: torch.Tensor, level_db: float) -> torch.Tensor:
    """Per-row gain ``[B]`` that brings the RMS of ``x`` ``[B, n]`` to ``level_db`` dBFS, within
    ±``MAX_LEVEL_GAIN_DB`` (digital silence gets the largest gain, harmlessly)."""
    rms = x.pow(2).mean(dim=-1).sqrt()
    limit = 10.0 ** (MAX_LEVEL_GAIN_DB / 20.0)
    return (10.0 ** (level_db / 20.0) / rms.clamp_min(1e-12)).clamp(1.0 / limit, limit)


class MaskEnhancer:
    """A mask model applied in the STFT domain: windows ``[B, n]`` at 16 kHz → enhanced ``[B, n]``.

    The model estimates each window's mask from its magnitudes brought to ``input_level_db`` (see
    :data:`INPUT_LEVEL_DB`; ``None``: as they are); the mask multiplies the window's own STFT.
    """

    def __init__(
        self,
        model: MaskModel,
        *,
        stft_config: StftConfig | None = None,
        device: str = "cpu",
        input_level_db: float | None = INPUT_LEVEL_DB,
    ) -> None:
        if input_level_db == MODEL_LEVEL:
            raise ParameterError(
                "MaskEnhancer needs input_level_db in dBFS or None ('model' is resolved by load_enhancer)"
            )
        check_input_level(input_level_db)
        self.model = model.to(device).eval()
        self.stft_config = stft_config or StftConfig()
        self.device = device
        self.input_level_db = input_level_db

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray) -> np.ndarray:
        c = self.stft_config
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        X = stft(x, n_fft=c.n_fft, hop_length=c.hop_length, window=c.window)
        mag = X.abs()
        if self.input_level_db is not None:
            mag = mag * level_gain(x, self.input_level_db)[:, None, None]
        mask = self.model(mag)
        y = istft(
            mask * X, length=x.shape[-1], n_fft=c.n_fft, hop_length=c.hop_length, window=c.window
        )
        return y.cpu().numpy()


def load_enhancer(
    model_uri: str, *, device: str = "cpu", input_level_db: InputLevel = MODEL_LEVEL
) -> tuple[MaskEnhancer, str, str]:
    """Load a model folder (or ``default``) → (enhancer, model name, weights sha256).

    ``input_level_db``: ``"model"`` (default) normalises to the level the model records (its training
    mixtures' median), else to :data:`INPUT_LEVEL_DB`; a number in dBFS; ``None`` for the raw level.
    """
    payload = checkpoint.read_checkpoint(model_uri)
    level = resolve_input_level(input_level_db, payload)
    model = deserialize(payload)
    if not isinstance(model, MaskModel):
        raise ParameterError(
            f"{model_uri}: model {payload['model_name']!r} is not an enhancement model"
        )
    stft_cfg = (
        StftConfig.from_dict(payload.get("stft", {})) if payload.get("stft") else StftConfig()
    )
    return (
        MaskEnhancer(model, stft_config=stft_cfg, device=device, input_level_db=level),
        payload["model_name"],
        payload["sha256"],
    )


def output_rel_paths(rel_paths: Sequence[str], fmt: str) -> dict[str, str]:
    """Output path of every input: same relative path, suffix ``.fmt``.

    Inputs that would collide (``a.wav`` and ``a.flac``) keep their suffix (``a.wav.wav``, ``a.flac.wav``),
    so no output ever overwrites another file's.
    """
    simple = {r: os.path.splitext(r)[0] + "." + fmt for r in rel_paths}
    counts: dict[str, int] = {}
    for out in simple.values():
        counts[out] = counts.get(out, 0) + 1
    return {r: (out if counts[out] == 1 else f"{r}.{fmt}") for r, out in simple.items()}


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


def committed_rows(out_uri: str) -> list[dict[str, Any]]:
    table = parquet.read_parts(storage.join(out_uri, RESULTS_DIR))
    return [] if table is None else table.to_pylist()


MAX_AUTO_SHARD = 32


def enhance_inputs(in_uri: str, out_uri: str) -> tuple[list[FileEntry], int]:
    """Audio files under ``in_uri`` to enhance into ``out_uri``, and the number of non-audio files skipped.

    An output folder inside the input folder is left out of the listing (a re-run must not enhance its own
    outputs); the input folder itself as output is refused (outputs would replace their inputs).

    Raises
    ------
    StorageError
        Input missing or unlistable.
    ParameterError
        ``out_uri`` is ``in_uri``.
    """
    src, dst = storage.normalize(in_uri), storage.normalize(out_uri)
    if src == dst:
        raise ParameterError(
            f"OUT {out_uri} is the input folder: outputs would replace their inputs; give another folder"
        )
    entries, non_audio = list_audio(in_uri)
    if dst.startswith(src.rstrip("/") + "/"):
        entries = [e for e in entries if not storage.normalize(e.uri).startswith(dst + "/")]
    return entries, non_audio


SETTINGS_KEYS = (
    "model",
    "model_sha256",
    "emotion",
    "emotion_sha256",
    "options",
    "input_level_db_used",
)
"""What an enhance run's outputs depend on: a re-run that resumes must use the same (job.json's spec)."""


def check_same_settings(out_uri: str, spec: Mapping[str, Any]) -> None:
    """Refuse to resume into ``out_uri`` with other settings than the run that committed its results
    (outputs would mix two settings, and job.json would describe only the last). Keys a run recorded
    before they existed are not compared."""
    before = jobinfo.read_job_json(out_uri).get("stages", {}).get("enhance", {}).get("spec")
    if not before:
        return
    changed = []
    for key in SETTINGS_KEYS:
        old, new = before.get(key), spec.get(key)
        if key not in before or old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed += [
                f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(old.keys() & new.keys())
                if old.get(k) != new.get(k) and k != "input_level_db"  # compared as the level used
            ]
        else:
            changed.append(f"{key}: {old!r} -> {new!r}")
    if changed:
        raise ParameterError(
            f"{out_uri} holds results made with other settings ({'; '.join(changed)}): re-run with the "
            "same settings to resume, --overwrite to start over, or give another OUT"
        )


def _forget_missing_outputs(
    out_uri: str, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Committed rows whose output file still exists, and how many did not: those rows are removed from
    their results part (rewritten atomically; deleted when empty) so the files are enhanced again."""
    present = {storage.normalize(e.uri) for e in storage.list_files(out_uri)}
    lost = [
        r
        for r in rows
        if r["status"] == schemas.STATUS_OK
        and r.get("output_uri")
        and storage.normalize(r["output_uri"]) not in present
    ]
    if not lost:
        return rows, 0
    lost_keys = {(int(r["shard"]), r["rel_path"]) for r in lost}
    results_uri = storage.join(out_uri, RESULTS_DIR)
    for shard in sorted({k[0] for k in lost_keys}):
        kept = [
            r for r in rows if int(r["shard"]) == shard and (shard, r["rel_path"]) not in lost_keys
        ]
        part = parquet.part_uri(results_uri, shard)
        if kept:
            parquet.write_table(part, schemas.table_from_rows(kept, schemas.ENHANCE_RESULTS))
        else:
            storage.delete(part)
    return [r for r in rows if (int(r["shard"]), r["rel_path"]) not in lost_keys], len(lost)


def _note_renamed(rows: list[dict[str, Any]], out_rel: Mapping[str, str], fmt: str) -> None:
    """Warn in the rows of files whose output name keeps the input suffix (see :func:`output_rel_paths`)."""
    for r in rows:
        rel = r["rel_path"]
        if (
            r["status"] == schemas.STATUS_OK
            and out_rel[rel] != os.path.splitext(rel)[0] + "." + fmt
        ):
            note = f"output named {out_rel[rel]}: another input has the same name without suffix"
            r["warning"] = f"{r['warning']}; {note}" if r.get("warning") else note


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
    on_progress: Callable[[int, float], None] | None = None,
) -> EnhanceSummary:
    """Enhance every audio file under ``in_uri`` into ``out_uri`` (same relative paths).

    ``emotion``: an emotion model (``default-emotion`` or a URI) that tags the enhanced audio;
    ``model=None`` with ``emotion`` set tags the input without enhancing it (no audio written).
    ``shard_size``: files per unit of work, commit and retry (default :func:`auto_shard_size`).

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
    spec = {
        "in_uri": in_uri,
        "out_uri": out_uri,
        "model": model,
        "model_sha256": metas[model]["sha256"] if model else None,
        "emotion": emotion,
        "emotion_sha256": metas[emotion]["sha256"] if emotion else None,
        "device": device,
        "options": asdict(options),
        "input_level_db_used": (
            resolve_input_level(options.input_level_db, metas[model]) if model else None
        ),
    }
    results_uri = storage.join(out_uri, RESULTS_DIR)
    if not resume:
        for e in storage.list_files(results_uri) if storage.exists(results_uri) else []:
            storage.delete(e.uri)
    storage.remove_stale_temps(out_uri)
    done_rows = committed_rows(out_uri)
    if done_rows:
        check_same_settings(out_uri, spec)
        done_rows, missing = _forget_missing_outputs(out_uri, done_rows)
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
    seconds_run = 0.0
    for shard_id, rows in executor(worker_kwargs, tasks):
        if model is not None:
            _note_renamed(rows, out_rel, options.fmt)
        table = schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS)
        parquet.write_table(parquet.part_uri(results_uri, shard_id), table)
        seconds = sum(float(r.get("duration_s") or 0.0) for r in rows)
        seconds_run += seconds
        if on_progress:
            on_progress(len(rows), seconds)
    summary = EnhanceSummary(
        out_uri=out_uri, files_skipped=len(entries) - len(todo), hours_run=seconds_run / 3600.0,
        non_audio_skipped=non_audio, outputs_missing=missing,
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
