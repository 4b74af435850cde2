"""Writing audio: the output formats (WAV, FLAC, Ogg Vorbis, Ogg Opus), their sample formats and rates,
clipping, and whole-signal encoding. Streamed outputs are written by the enhance worker with these
choices (:mod:`batchsep.pipeline.enhance.file`); :mod:`batchsep.io.audio` re-exports every name."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import soundfile as sf

from batchsep.errors import ParameterError

ENCODE_FORMATS = {
    "wav": ("WAV", "FLOAT"),
    "flac": ("FLAC", "PCM_24"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
}
"""Output formats (also the output file's suffix): (container, default sample format). ``ogg`` is Ogg
Vorbis, ``opus`` Ogg Opus (both lossy, encoded by the libsndfile in soundfile's wheel)."""
SUBTYPES = ("keep", "PCM_16", "PCM_24", "FLOAT", "VORBIS", "OPUS")
"""Output sample formats: ``keep`` (see :func:`output_subtype`), 16-bit, 24-bit, 32-bit float, and the
lossy codecs of ``ogg`` and ``opus``."""
FORMAT_SUBTYPES = {
    "wav": ("PCM_16", "PCM_24", "FLOAT"),
    "flac": ("PCM_16", "PCM_24"),
    "ogg": ("VORBIS",),
    "opus": ("OPUS",),
}
"""The sample formats each output format can store (besides ``keep``)."""
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
"""The sample rates Opus encodes; other rates are written at 48 kHz (see :func:`output_rate`)."""
KEPT_SUBTYPES = frozenset({"PCM_16", "PCM_24"})
"""Input sample formats a WAV output keeps by default (``keep``)."""


def check_subtype(fmt: str, subtype: str) -> None:
    """Refuse (ParameterError) a sample format ``subtype`` that is not one of :data:`SUBTYPES` or that
    ``fmt`` cannot store (:data:`FORMAT_SUBTYPES`: FLAC stores integers only, Ogg Vorbis and Opus their
    own codec only)."""
    if subtype not in SUBTYPES:
        raise ParameterError(f"subtype={subtype!r} must be one of {', '.join(SUBTYPES)}")
    allowed = FORMAT_SUBTYPES.get(fmt)
    if allowed is None:
        raise ParameterError(f"format={fmt!r} must be one of {', '.join(ENCODE_FORMATS)}")
    if subtype != "keep" and subtype not in allowed:
        why = {"flac": "integers only", "ogg": "lossy Vorbis only", "opus": "lossy Opus only"}
        reason = f" ({why[fmt]})" if fmt in why else ""
        raise ParameterError(
            f"subtype={subtype!r} cannot be stored as {fmt.upper()}{reason}: "
            f"{' or '.join(allowed)} (or keep)"
        )


def output_subtype(fmt: str, subtype: str, input_subtype: str | None) -> str:
    """The sample format an output of ``fmt`` is written in.

    ``keep``: a WAV output keeps a 16- or 24-bit PCM input's format (anything else: 32-bit float, which
    keeps every value); a FLAC output is 24-bit, an ogg output Vorbis, an opus output Opus. Integer
    formats are written without dither: values are rounded to the nearest step, and those outside
    [-1, 1] clipped (counted: see :func:`clips_on_write`); the lossy codecs are clipped alike.
    """
    if subtype == "keep":
        if fmt == "wav" and input_subtype in KEPT_SUBTYPES:
            return str(input_subtype)
        return ENCODE_FORMATS[fmt][1]
    return subtype


def output_rate(fmt: str, out_sr: str | int, in_sr: int) -> int:
    """The sample rate an output of ``fmt`` is written at: ``out_sr`` (``"keep"``: the input's ``in_sr``),
    except that Opus, which encodes only :data:`OPUS_RATES`, writes any other rate at 48 kHz (the
    caller resamples)."""
    sr = in_sr if out_sr == "keep" else int(out_sr)
    if fmt == "opus" and sr not in OPUS_RATES:
        return 48000
    return sr


def clips_on_write(fmt: str, subtype: str | None = None) -> bool:
    """True if output format ``fmt`` in sample format ``subtype`` (default: the format's own) stores
    integers or a lossy codec (Vorbis, Opus: players expect full scale), so samples outside [-1, 1] are
    clipped; False for float WAV."""
    return (subtype or ENCODE_FORMATS[fmt][1]) not in ("FLOAT", "DOUBLE")


def clip_to_full_scale(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """``samples`` clipped to [-1, 1] and the number of samples that were outside it."""
    n = int(np.count_nonzero(np.abs(samples) > 1.0))
    return (np.clip(samples, -1.0, 1.0) if n else samples), n


def encode(samples: np.ndarray, sample_rate: int, *, fmt: str = "wav") -> bytes:
    """Encode ``[channels, n]`` or ``[n]`` float samples as ``fmt`` (:data:`ENCODE_FORMATS`: "wav" 32-bit
    float, "flac" 24-bit, "ogg" Vorbis, "opus" Opus at a rate of :data:`OPUS_RATES` only).

    Values outside [-1, 1] are kept by float WAV; the other formats clip them.
    """
    if fmt not in ENCODE_FORMATS:
        raise ParameterError(f"format={fmt!r} must be one of {sorted(ENCODE_FORMATS)}")
    container, subtype = ENCODE_FORMATS[fmt]
    arr: Any = np.asarray(samples, dtype=np.float32)
    if arr.ndim not in (1, 2):
        raise ParameterError(f"samples ndim={arr.ndim} must be 1 or 2")
    if clips_on_write(fmt):
        arr, _ = clip_to_full_scale(arr)
    buf = io.BytesIO()
    sf.write(buf, arr.T if arr.ndim == 2 else arr, sample_rate, format=container, subtype=subtype)
    return buf.getvalue()
