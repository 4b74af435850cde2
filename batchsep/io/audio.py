"""Audio decode/encode from bytes or file objects (so it works on S3 objects as well as local files).

Everything libsndfile reads is accepted (WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, CAF, W64, ...). Samples are
returned as float32 arrays of shape ``(channels, n_samples)``. Every way a file can be unusable — empty,
truncated, not audio at all, no frames, NaN/Inf samples — becomes an :class:`AudioDecodeError` whose message
says why, in words a user understands.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import soundfile as sf

from batchsep.errors import AudioDecodeError, ParameterError

AUDIO_SUFFIXES = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
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
"""File name suffixes treated as audio by scans (case-insensitive)."""

ENCODE_FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}
BLOCK_FRAMES = 1 << 18  # 262144 frames per streamed block (~16 s at 16 kHz)


@dataclass(frozen=True)
class AudioInfo:
    """Header facts about an audio stream plus statistics measured while reading it.

    ``frames`` is the number of frames actually decoded (a truncated file reports fewer than its header).
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


def _readable_reason(exc: Exception) -> str:
    msg = str(exc)
    if "Format not recognised" in msg or "unknown format" in msg.lower():
        return "not a recognised audio format (corrupt, truncated header, or not audio)"
    if "unimplemented format" in msg.lower():
        return "audio encoding not supported by libsndfile"
    if isinstance(exc, sf.LibsndfileError):
        return f"cannot decode audio: {getattr(exc, 'error_string', msg)}"
    return f"cannot decode audio: {msg or type(exc).__name__}"


def _open(source: bytes | IO[bytes]) -> sf.SoundFile:
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise AudioDecodeError("empty file (0 bytes)")
        source = io.BytesIO(bytes(source))
    try:
        return sf.SoundFile(source)
    except Exception as e:
        raise AudioDecodeError(_readable_reason(e)) from e


def iter_blocks(
    source: bytes | IO[bytes], *, block_frames: int = BLOCK_FRAMES
) -> Iterator[tuple[sf.SoundFile, np.ndarray]]:
    """Stream ``[channels, n]`` float32 blocks of at most ``block_frames`` frames (bounded memory).

    Raises AudioDecodeError on undecodable data or non-finite samples.
    """
    if block_frames < 1:
        raise ParameterError(f"block_frames={block_frames} must be >= 1")
    with _open(source) as f:
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except Exception as e:
                raise AudioDecodeError(_readable_reason(e)) from e
            if block.shape[0] == 0:
                return
            if not np.isfinite(block).all():
                bad = int(np.size(block) - np.count_nonzero(np.isfinite(block)))
                raise AudioDecodeError(
                    f"audio contains {bad} NaN/Inf samples near frame {f.tell()}"
                )
            yield f, block.T


def probe(source: bytes | IO[bytes]) -> AudioInfo:
    """Read a whole stream block by block and return its facts; raise AudioDecodeError if unusable.

    Raises
    ------
    AudioDecodeError
        Empty file, undecodable data, 0 frames, or NaN/Inf samples.
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
    with _open(source) as f:
        if max_frames is not None and f.frames > max_frames:
            raise AudioDecodeError(
                f"file too long: {f.frames} frames ({f.frames / f.samplerate:.0f} s) > limit {max_frames}"
            )
        sr = f.samplerate
        try:
            data = f.read(dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioDecodeError(_readable_reason(e)) from e
    if data.shape[0] == 0:
        raise AudioDecodeError("no audio frames (0 samples)")
    if not np.isfinite(data).all():
        raise AudioDecodeError("audio contains NaN/Inf samples")
    return Audio(np.ascontiguousarray(data.T), sr)


def encode(samples: np.ndarray, sample_rate: int, *, fmt: str = "wav") -> bytes:
    """Encode ``[channels, n]`` or ``[n]`` float samples as ``fmt`` ("wav": 32-bit float, "flac": 24-bit).

    Values outside [-1, 1] are kept by float WAV; FLAC clips them (integer format).
    """
    if fmt not in ENCODE_FORMATS:
        raise ParameterError(f"format={fmt!r} must be one of {sorted(ENCODE_FORMATS)}")
    container, subtype = ENCODE_FORMATS[fmt]
    arr: Any = np.asarray(samples, dtype=np.float32)
    if arr.ndim not in (1, 2):
        raise ParameterError(f"samples ndim={arr.ndim} must be 1 or 2")
    if container == "FLAC":
        arr = np.clip(arr, -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, arr.T if arr.ndim == 2 else arr, sample_rate, format=container, subtype=subtype)
    return buf.getvalue()
