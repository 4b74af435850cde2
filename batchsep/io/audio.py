"""Audio decode/encode from bytes or file objects (so it works on S3 objects as well as local files).

Everything libsndfile reads is accepted (WAV, FLAC, OGG/Vorbis/Opus, AIFF, CAF, W64, ...), and through FFmpeg
(PyAV, :mod:`batchsep.io.avaudio`) what it does not: MP3, AAC/M4A, the audio track of MP4/MOV/WebM/Matroska,
WMA. Samples are returned as float32 arrays of shape ``(channels, n_samples)``. Every way a file can be unusable — empty,
truncated, not audio at all, no frames, NaN/Inf samples — becomes an :class:`AudioDecodeError` whose message
says why, in words a user understands.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TypeAlias

import numpy as np
import soundfile as sf

from batchsep.errors import AudioDecodeError, ParameterError
from batchsep.io import avaudio, containers
from batchsep.io.audio_out import ENCODE_FORMATS as ENCODE_FORMATS
from batchsep.io.audio_out import FORMAT_SUBTYPES as FORMAT_SUBTYPES
from batchsep.io.audio_out import KEPT_SUBTYPES as KEPT_SUBTYPES
from batchsep.io.audio_out import OPUS_RATES as OPUS_RATES
from batchsep.io.audio_out import SUBTYPES as SUBTYPES
from batchsep.io.audio_out import check_subtype as check_subtype
from batchsep.io.audio_out import clip_to_full_scale as clip_to_full_scale
from batchsep.io.audio_out import clips_on_write as clips_on_write
from batchsep.io.audio_out import encode as encode
from batchsep.io.audio_out import output_rate as output_rate
from batchsep.io.audio_out import output_subtype as output_subtype

# the output side (batchsep.io.audio_out) is re-exported above for its callers

AUDIO_SUFFIXES = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".m4a",
        ".m4b",
        ".aac",
        ".mp4",
        ".mov",
        ".webm",
        ".mka",
        ".mkv",
        ".wma",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".caf",
        ".w64",
        ".rf64",
        ".snd",
    }
)
"""File name suffixes treated as audio by every stage (case-insensitive): the one list; the others are
skipped as "not audio (by name)". MP3 and the compressed containers are decoded by FFmpeg (PyAV)."""

AV_FORMATS = frozenset({"MP3"})
"""Formats libsndfile opens that are decoded by FFmpeg instead: libsndfile's MP3 decoder (mpg123) prints its
errors on the worker's stderr, naming no file, and silently decodes a truncated file short; FFmpeg's messages
go into the file's row (see :class:`~batchsep.io.avaudio.AVStream`). MP3 data is recognised by its first
bytes (:func:`_looks_like_mp3`) and never opened by libsndfile: mpg123 prints while it parses the header."""


def _looks_like_mp3(head: bytes) -> bool:
    """An ID3 tag, or an MPEG audio frame sync (11 bits set) with layer III."""
    if head[:3] == b"ID3":
        return True
    sync = len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0
    return sync and (head[1] & 0x06) == 0x02


AudioStream: TypeAlias = "sf.SoundFile | avaudio.AVStream"
"""An open stream: ``samplerate``, ``channels``, ``frames``, ``format``, ``subtype``, ``read``. A
:class:`~batchsep.io.avaudio.AVStream`'s ``frames`` is declared, not exact (``frames_exact`` False)."""

BLOCK_FRAMES = 1 << 18  # 262144 frames per streamed block (~16 s at 16 kHz)


@dataclass(frozen=True)
class AudioInfo:
    """Header facts about an audio stream plus statistics measured while reading it.

    ``frames`` is the number of frames actually decoded (WAVE data cut off before the size its header
    declares is refused: see :func:`truncation_reason`).
    """

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str
    peak: float
    rms_dbfs: float

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class Audio:
    """Decoded samples ``[channels, n_samples]`` (float32) and their sample rate."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


def is_audio_name(name: str) -> bool:
    """True if ``name`` has an audio suffix."""
    lower = name.lower()
    return any(lower.endswith(s) for s in AUDIO_SUFFIXES)


def _file_size(fobj: IO[bytes]) -> int | None:
    """Size in bytes of a seekable file object (its position is kept); None if it cannot seek."""
    try:
        pos = fobj.tell()
        end = fobj.seek(0, io.SEEK_END)
        fobj.seek(pos)
    except (OSError, ValueError, AttributeError):
        return None
    return int(end) if end is not None else None


def truncation_reason(fobj: IO[bytes]) -> str | None:
    """Why ``fobj`` is cut off before the end of its audio data, or None if it is complete (or unknown).

    For uncompressed containers (WAVE in RIFF/RIFX/RF64/BW64, Wave64, AIFF/AIFF-C, AU) the data size the
    header declares is compared with the bytes actually present: libsndfile silently decodes only the
    frames present. Reads only chunk headers (bounded memory, works on S3 file objects; see
    :mod:`batchsep.io.containers`) and restores the position of ``fobj``. Other formats return None:
    libsndfile reports their truncation as a decode error (see :func:`read_blocks`).
    """
    size = _file_size(fobj)
    if not size:
        return None
    pos = fobj.tell()
    try:
        extent = containers.data_extent(fobj, size)
    except (OSError, ValueError, struct.error):
        extent = None
    finally:
        fobj.seek(pos)
    if extent is None:
        return None
    declared, present, byte_rate, block_align = extent
    if declared - present < max(1, block_align):
        return None  # complete, or less than one frame missing
    if byte_rate > 0:
        return (
            f"truncated file: header declares {declared / byte_rate:.2f} s of audio, "
            f"{present / byte_rate:.2f} s present"
        )
    return f"truncated file: header declares {declared} bytes of audio, {present} bytes present"


def first_nonfinite_frame(block: np.ndarray) -> int | None:
    """Index of the first frame of ``block`` ``[frames, channels]`` holding a NaN/Inf sample, or None."""
    finite = np.isfinite(block)
    if finite.all():
        return None
    bad = ~finite.all(axis=1) if block.ndim == 2 else ~finite
    return int(np.argmax(bad))


def nonfinite_error(frame: int, sample_rate: int) -> AudioDecodeError:
    """The error for NaN/Inf samples whose first is at ``frame`` of the file."""
    return AudioDecodeError(
        f"audio contains NaN/Inf samples (first at frame {frame}, {frame / sample_rate:.2f} s)"
    )


def _readable_reason(exc: Exception) -> str:
    msg = str(exc)
    if "Format not recognised" in msg or "unknown format" in msg.lower():
        return "not a recognised audio format (corrupt, truncated header, or not audio)"
    if "unimplemented format" in msg.lower():
        return "audio encoding not supported by libsndfile"
    if isinstance(exc, sf.LibsndfileError):
        return f"cannot decode audio: {getattr(exc, 'error_string', msg)}"
    return f"cannot decode audio: {msg or type(exc).__name__}"


def _open_av(source: IO[bytes], start: int, sf_error: Exception | None) -> avaudio.AVStream:
    """``source`` (from byte ``start``) through FFmpeg; libsndfile's reason when neither can open it."""
    try:
        source.seek(start)
        return avaudio.AVStream(source)
    except (AudioDecodeError, OSError, ImportError) as e:
        if sf_error is None:
            raise AudioDecodeError(str(e) if isinstance(e, AudioDecodeError) else repr(e)) from e
        if isinstance(e, AudioDecodeError) and e.args and "no audio track" in str(e):
            raise
        raise AudioDecodeError(_readable_reason(sf_error)) from sf_error


def open_stream(source: bytes | IO[bytes]) -> AudioStream:
    """Open ``source`` for reading; raise AudioDecodeError with a readable reason if it is unusable.

    Empty input, data neither libsndfile nor FFmpeg can open, and WAVE data cut off before the size its
    header declares (:func:`truncation_reason`) are all refused here, before any sample is read.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    if _file_size(source) == 0:
        raise AudioDecodeError("empty file (0 bytes)")
    start = source.tell()
    head = source.read(4)
    source.seek(start)
    if _looks_like_mp3(head) and avaudio.available():
        return _open_av(source, start, None)
    try:
        f = sf.SoundFile(source)
    except Exception as e:
        if not avaudio.available():
            raise AudioDecodeError(_readable_reason(e)) from e
        return _open_av(source, start, e)
    if f.format in AV_FORMATS and avaudio.available():
        f.close()
        return _open_av(source, start, None)
    reason = truncation_reason(source)
    if reason is not None:
        f.close()
        raise AudioDecodeError(reason)
    return f


def _read_error(f: AudioStream, frames_done: int, exc: Exception) -> AudioDecodeError:
    """A read that fails before the frames the header declares means a truncated or corrupt file."""
    reason = _readable_reason(exc)
    if f.frames > frames_done and f.samplerate > 0:
        detail = reason.removeprefix("cannot decode audio: ")
        reason = (
            f"truncated or corrupt file: header declares {f.frames / f.samplerate:.2f} s of audio, "
            f"decoding failed somewhere after {frames_done / f.samplerate:.2f} s ({detail})"
        )
    return AudioDecodeError(reason)


def read_blocks(f: AudioStream, block_frames: int) -> Iterator[np.ndarray]:
    """Read an open stream as float32 blocks ``[frames, channels]`` of ``block_frames`` frames (the last
    one shorter; an empty block is never yielded); stops after the first short block.

    Raises AudioDecodeError (readable reason) on a decode error or on NaN/Inf samples, naming the
    first bad frame exactly.
    """
    if block_frames < 1:
        raise ParameterError(f"block_frames={block_frames} must be >= 1")
    done = 0
    while True:
        try:
            block = f.read(block_frames, dtype="float32", always_2d=True)
        except Exception as e:
            raise _read_error(f, done, e) from e
        n = block.shape[0]
        if n == 0:
            return
        bad = first_nonfinite_frame(block)
        if bad is not None:
            raise nonfinite_error(done + bad, f.samplerate)
        done += n
        yield block
        if n < block_frames:
            return


def iter_blocks(
    source: bytes | IO[bytes], *, block_frames: int = BLOCK_FRAMES
) -> Iterator[tuple[AudioStream, np.ndarray]]:
    """Stream ``[channels, n]`` float32 blocks of at most ``block_frames`` frames (bounded memory).

    Raises AudioDecodeError on undecodable data or non-finite samples.
    """
    if block_frames < 1:
        raise ParameterError(f"block_frames={block_frames} must be >= 1")
    with open_stream(source) as f:
        for block in read_blocks(f, block_frames):
            yield f, block.T


def probe(source: bytes | IO[bytes]) -> AudioInfo:
    """Read a whole stream block by block and return its facts; raise AudioDecodeError if unusable.

    Raises
    ------
    AudioDecodeError
        Empty file, undecodable or truncated data, 0 frames, or NaN/Inf samples.
    """
    frames, peak, sumsq = 0, 0.0, 0.0
    sr = ch = 0
    fmt = subtype = ""
    for f, block in iter_blocks(source):
        sr, ch, fmt, subtype = f.samplerate, f.channels, f.format, f.subtype
        frames += block.shape[1]
        peak = max(peak, float(np.abs(block).max()))
        sumsq += float(np.square(block, dtype=np.float64).sum())
    if frames == 0:
        raise AudioDecodeError("no audio frames (0 samples)")
    mean_sq = sumsq / (frames * ch)
    rms_dbfs = 10.0 * math.log10(mean_sq) if mean_sq > 0 else -math.inf
    return AudioInfo(sr, ch, frames, fmt, subtype, peak, rms_dbfs)


def decode(source: bytes | IO[bytes], *, max_frames: int | None = None) -> Audio:
    """Decode a whole stream to float32 ``[channels, n_samples]``.

    Parameters
    ----------
    source : bytes or binary file object
    max_frames : int, optional
        Refuse (AudioDecodeError) streams longer than this, before reading their samples.

    Raises
    ------
    AudioDecodeError
        As :func:`probe`, or when the stream is longer than ``max_frames``.
    """
    with open_stream(source) as f:
        if max_frames is not None and f.frames > max_frames:
            raise AudioDecodeError(
                f"file too long: {f.frames} frames ({f.frames / f.samplerate:.0f} s) > limit {max_frames}"
            )
        sr = f.samplerate
        try:
            data = f.read(dtype="float32", always_2d=True)
        except Exception as e:
            raise _read_error(f, 0, e) from e
    if data.shape[0] == 0:
        raise AudioDecodeError("no audio frames (0 samples)")
    bad = first_nonfinite_frame(data)
    if bad is not None:
        raise nonfinite_error(bad, sr)
    return Audio(np.ascontiguousarray(data.T), sr)
