"""Enhancing one file in bounded memory: its options and :func:`enhance_file` (the streaming reader and writer
are in :mod:`batchsep.pipeline.enhance.stream`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import soundfile as sf

from batchsep.dsp.chunking import overlap_add_stream
from batchsep.dsp.level import MODEL_LEVEL, InputLevel, check_input_level
from batchsep.errors import (
    AudioDecodeError,
    BatchsepError,
    ParameterError,
    StorageAccessError,
    StorageError,
    StorageFullError,
)
from batchsep.io import audio, schemas, storage
from batchsep.pipeline.common import interrupt
from batchsep.pipeline.enhance.multichannel import (
    REFINE,
    BeamformStream,
    MaskSource,
    beamform_pieces,
    check_multichannel,
)
from batchsep.pipeline.enhance.multiwindow import overlap_add_multi
from batchsep.pipeline.enhance.stream import MODEL_SR, CallbackFile, Reader, TagFeed, Writer
from batchsep.pipeline.enhance.tag import EmotionTagger

CANCEL_RATIO = 1e-3
"""A downmix this far (-30 dB) below its channels' mean energy is reported: they cancel out."""


def _below(energy: float, reference: float) -> str:
    """``"its level is 42 dB below the channels'"``, or ``"it is digital silence"``."""
    if energy == 0:
        return "it is digital silence"
    return f"its level is {10 * np.log10(reference / energy):.0f} dB below the channels'"


@dataclass(frozen=True)
class EnhanceOptions:
    """How files are enhanced and written (all plain values: travels to workers as a dict)."""

    out_sr: Literal["keep"] | int = "keep"
    fmt: Literal["wav", "flac", "ogg", "opus"] = "wav"
    subtype: str = "keep"
    """Sample format of the outputs: ``keep`` (a WAV keeps a 16/24-bit PCM input's; else 32-bit float WAV,
    24-bit FLAC, Vorbis ogg, Opus), ``PCM_16``, ``PCM_24``, ``FLOAT``, ``VORBIS`` or ``OPUS`` (see
    :func:`~batchsep.io.audio.output_subtype`)."""
    chunk_s: float = 30.0
    overlap_s: float = 0.5
    batch_windows: int = 4
    max_duration_s: float = 24 * 3600.0
    block_frames: int = 1 << 17
    input_level_db: InputLevel = MODEL_LEVEL
    """Level (dBFS) each window is brought to for the model: ``"model"``, the level the model was trained
    at (see :func:`~batchsep.dsp.level.resolve_input_level`); ``None`` feeds it the raw level."""
    multichannel: Literal["downmix", "keep", "beamform"] = "downmix"
    """What a file of several channels becomes (:mod:`batchsep.pipeline.enhance.multichannel`): ``downmix`` (mono,
    polarity-aligned), ``keep`` (each channel enhanced) or ``beamform`` (mask-based beamforming)."""
    beamformer: Literal["mvdr", "gev_ban", "mwf", "delay_and_sum"] = "mvdr"
    beam_forgetting: float | None = None
    """``None``: spatial statistics over the whole file (read ``2 + beam_refine`` times); λ in (0, 1):
    recursive, one pass."""
    beam_refine: int = REFINE
    """Rounds (0 to 3) of statistics estimated again from the model's mask of the beamformed signal."""
    beam_noise_power: float | None = None
    """The noise weight ``(1 - mask)^p``'s power ``p`` in (0, 4]; ``None``: the beamformer's own default
    (:func:`~batchsep.pipeline.enhance.multichannel.default_noise_power`: MWF 1, the others 2)."""
    beam_mask: Literal["model", "spatial", "guided"] = "model"
    """What the spatial statistics come from: the model's masks, or those refined by a spatial mixture
    model (``spatial``; ``guided``: the model's mask as each bin's prior), see
    :mod:`batchsep.pipeline.enhance.multichannel`."""
    beam_postmask: bool = True
    """Apply the model's single-channel mask to the beamformer's output too."""

    def __post_init__(self) -> None:
        if self.out_sr != "keep" and (not isinstance(self.out_sr, int) or self.out_sr <= 0):
            raise ParameterError(f"out_sr={self.out_sr!r} must be 'keep' or a positive integer")
        if self.fmt not in audio.ENCODE_FORMATS:
            raise ParameterError(f"fmt={self.fmt!r} must be one of {sorted(audio.ENCODE_FORMATS)}")
        audio.check_subtype(self.fmt, self.subtype)
        check_input_level(self.input_level_db)
        check_multichannel(
            self.multichannel, self.beamformer, self.beam_forgetting, refine=self.beam_refine,
            noise_power=self.beam_noise_power, mask=self.beam_mask,
        )  # fmt: skip
        if not 0 < self.overlap_s < self.chunk_s / 2:
            raise ParameterError(
                f"overlap_s={self.overlap_s} must be in (0, chunk_s/2={self.chunk_s / 2})"
            )


RUN_FATAL = "_run_fatal"
"""Key of a failed row whose cause fails every further file of the run too: ``"full"`` (no space left or
quota exceeded on the output's storage, or it is read-only) or ``"access"`` (the object store refused to
write the output: credentials revoked, access denied). Set by the worker (:func:`run_fatal`), which then
does not try the rest of its shard; the driver (:func:`batchsep.pipeline.enhance.driver.enhance`) removes it,
commits the shard and stops the job. Never committed: not a column of the results."""


def run_fatal(err: BaseException, *, output: bool) -> str | None:
    """The :data:`RUN_FATAL` kind of a file's failure ``err`` (None: that file's own). ``output``: the
    error is the output's (raised once the input was open, or by a deferred write): only then does a
    refused access mean that every further write is refused too."""
    if isinstance(err, StorageFullError):
        return "full"
    if output and isinstance(err, StorageAccessError):
        return "access"
    return None


def fail_row(
    row: dict[str, Any], err: BaseException, *, fatal: str | None = None
) -> dict[str, Any]:
    """Mark a result row failed with ``err`` as its reason (no output); ``fatal``: see :data:`RUN_FATAL`."""
    row.update(status=schemas.STATUS_ERROR, error=str(err) or type(err).__name__, output_uri=None)
    if fatal:
        row[RUN_FATAL] = fatal
    return row


def _streamed(
    blocks: Iterable[np.ndarray], stream: Any, timed: Callable[..., Any]
) -> Iterator[np.ndarray]:
    """Blocks through a streaming model's ``feed``/``flush`` (its state carries across the whole file)."""
    for block in blocks:
        y = timed(stream.feed, block)
        if y.size:
            yield y
    y = timed(stream.flush)
    if y.size:
        yield y


def _timed_pieces(
    pieces: Iterable[np.ndarray], readers: list[Reader], add_model_time: Callable[[float], None]
) -> Iterator[np.ndarray]:
    """``pieces``, the time spent making them counted as model time, less the ``readers``' decoding
    (which they count themselves)."""
    it = iter(pieces)
    while True:
        decoded = sum(r.seconds for r in readers)
        t = time.perf_counter()
        y = next(it, None)
        add_model_time(time.perf_counter() - t - (sum(r.seconds for r in readers) - decoded))
        if y is None:
            return
        yield y


def enhance_file(
    uri: str,
    out_uri: str | None,
    enhancer: Callable[[np.ndarray], np.ndarray] | None,
    options: EnhanceOptions,
    *,
    tagger: EmotionTagger | None = None,
    deferred: storage.DeferredWrites | None = None,
) -> dict[str, Any]:
    """Enhance one file in bounded memory and write it atomically; never raises for bad input.

    With ``deferred`` the output is made durable and given its name on that background thread: the row
    says ``ok`` before it is published, and the caller must ``deferred.wait()`` (and fail the rows whose
    write failed) before it hands the rows on.

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

    def add_model_time(seconds: float) -> None:
        nonlocal t_model
        t_model += seconds

    input_open = False  # then a StorageError is the output's (reads fail as AudioDecodeError)
    try:
        with contextlib.ExitStack() as stack:
            fin = stack.enter_context(storage.open_input(uri))
            input_open = True
            f = stack.enter_context(audio.open_stream(fin))  # empty, not audio, truncated: refused
            in_sr, frames = f.samplerate, f.frames
            row.update(sample_rate=in_sr, channels=f.channels, duration_s=frames / in_sr)
            exact = getattr(f, "frames_exact", True)  # False: a compressed stream's declared length
            if frames <= 0 and exact:
                raise AudioDecodeError("no audio frames (0 samples)")
            if frames / in_sr > options.max_duration_s:
                raise AudioDecodeError(
                    f"file too long: {frames / in_sr:.0f} s > max_duration_s={options.max_duration_s:.0f}"
                )
            out_sr = audio.output_rate(options.fmt, options.out_sr, in_sr)  # Opus: its own rates
            row["out_sample_rate"] = out_sr
            mode = options.multichannel if enhancer is not None and f.channels > 1 else "downmix"
            out_channels = f.channels if mode == "keep" else 1
            out_file = None
            if out_uri is not None:
                fmt = audio.ENCODE_FORMATS[options.fmt][0]
                subtype = audio.output_subtype(options.fmt, options.subtype, f.subtype)
                fout = stack.enter_context(storage.atomic_writer(out_uri, deferred=deferred))
                out_file = stack.enter_context(
                    sf.SoundFile(
                        CallbackFile(fout), "w", samplerate=out_sr, channels=out_channels, format=fmt,
                        subtype=subtype,
                    )
                )  # fmt: skip
            n_out = frames if out_sr == in_sr else round(frames * out_sr / in_sr)
            if not exact:  # known once decoded (below); until then every sample is written
                n_out = 1 << 62
            model_sr = int(getattr(enhancer, "sample_rate", MODEL_SR))  # a zoo model's own rate
            writer = Writer(out_file, out_sr, n_out, options.fmt, model_sr, out_channels)
            if out_file is not None:  # integer samples clip (counted): 16/24-bit WAV too
                writer.clips = audio.clips_on_write(options.fmt, subtype)
            reader = Reader(f, options.block_frames, model_sr, keep_channels=mode != "downmix")
            readers = [reader]
            pieces: Iterable[np.ndarray] = reader
            beam: BeamformStream | None = None
            chunk, overlap = round(options.chunk_s * model_sr), round(options.overlap_s * model_sr)
            if mode == "keep" and enhancer is not None:
                model = enhancer
                pieces = overlap_add_multi(
                    reader, lambda w: timed(model, w), chunk=chunk, overlap=overlap
                )
            elif mode == "beamform":
                # whole-file statistics: the first pass reads ``reader``; each refinement round
                # (beam_refine) and then the filtering pass read the file again from the start
                def reopen() -> Reader:
                    fin2 = stack.enter_context(storage.open_input(uri))
                    f2 = stack.enter_context(audio.open_stream(fin2))
                    readers.append(Reader(f2, options.block_frames, model_sr, keep_channels=True))
                    return readers[-1]

                beam = BeamformStream(
                    MaskSource(enhancer, model_sr), options.beamformer,
                    forgetting=options.beam_forgetting, overlap=overlap,
                    refine=options.beam_refine, noise_power=options.beam_noise_power,
                    mask=options.beam_mask,
                )  # fmt: skip
                pieces = _timed_pieces(
                    beamform_pieces(reader, reopen, beam, chunk=chunk, overlap=overlap),
                    readers, add_model_time,
                )  # fmt: skip
            if enhancer is not None and (
                mode == "downmix" or (mode == "beamform" and options.beam_postmask)
            ):
                if hasattr(enhancer, "stream"):  # streaming: no windows
                    pieces = _streamed(pieces, enhancer.stream(), timed)
                else:
                    pieces = overlap_add_stream(
                        pieces, lambda w: timed(enhancer, w), chunk=round(options.chunk_s * MODEL_SR),
                        overlap=round(options.overlap_s * MODEL_SR), batch=options.batch_windows,
                    )  # fmt: skip
            tags = TagFeed(tagger.stream(), model_sr) if tagger is not None else None
            for y in pieces:
                if tags is not None:
                    timed(tags.feed, y if y.ndim == 1 else y.mean(axis=1))
                writer.write(y)
            if reader.frames == 0:
                raise AudioDecodeError("no audio frames (0 samples)")
            if not exact:  # the output has the decoded length
                writer.n_out = round(reader.frames * out_sr / in_sr)
            writer.close()
            if tags is not None:
                timed(tags.close)
            # the tags' last window, before the output is published: a failure leaves no output
            emotion = timed(tags.result) if tags is not None else None
    except (AudioDecodeError, StorageError, ParameterError) as e:
        interrupt.reraise_if_interrupted(e)  # a Ctrl-C swallowed by soundfile's C callback
        return fail_row(row, e, fatal=run_fatal(e, output=input_open))
    except Exception as e:  # a decoder, encoder, model or library failure: this file's own
        interrupt.reraise_if_interrupted(e)
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        return fail_row(row, BatchsepError(f"enhancement failed: {reason}"))
    # a Ctrl-C swallowed by a C callback that made nothing fail (soundfile's vio_tell): stop the run here
    if interrupt.interrupted():  # (this file not reported done; a re-run redoes it)
        raise KeyboardInterrupt
    warnings = list(getattr(f, "warnings", ()))  # the decoder's messages (FFmpeg), this file's own
    if beam is not None:
        warnings.append(beam.description(row["channels"]))
        warnings += beam.warnings
        row["ref_channel"] = beam.ref
    elif mode == "keep":
        warnings.append(f"{row['channels']} channels enhanced one by one (as many in the output)")
    elif row["channels"] > 1:
        inverted = ", ".join(str(c + 1) for c in reader.inverted)
        warnings.append(
            f"{row['channels']} channels downmixed to mono"
            + (
                f" (channel{'s' if len(reader.inverted) > 1 else ''} {inverted} inverted: "
                "out of phase with channel 1)"
                if inverted
                else ""
            )
        )
        if reader.energy > 0 and reader.mono_energy < CANCEL_RATIO * reader.energy:
            warnings.append(
                "the channels cancel in the mono downmix (out of phase?): "
                + _below(reader.mono_energy, reader.energy)
            )
    if reader.nonzero == 0:
        warnings.append("input is digital silence" + (" (output is silence)" if out_uri else ""))
    if reader.over:
        warnings.append(f"input exceeds full scale ({reader.over} float samples beyond ±1.0)")
    elif reader.clipped:
        warnings.append(f"input is clipped ({reader.clipped} samples at full scale)")
    if writer.clipped:
        warnings.append(f"output clipped to full scale ({writer.clipped} samples)")
    if emotion is not None:
        emotion_warning = emotion.pop("emotion_warning")
        if (
            emotion_warning
        ):  # no voiced audio, or a low-confidence tag (batchsep.pipeline.enhance.tag)
            warnings.append(emotion_warning)
        row.update(emotion)
    t_total = time.perf_counter() - t0
    t_decode = sum(r.seconds for r in readers)
    row.update(
        warning="; ".join(warnings) or None, duration_s=reader.frames / in_sr,
        t_decode_s=t_decode, t_model_s=t_model, t_total_s=t_total,
        t_write_s=max(0.0, t_total - t_decode - t_model),
    )  # fmt: skip
    return row
