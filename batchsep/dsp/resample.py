"""Sample-rate conversion (soxr, high quality) and channel downmix, at the pipeline's edge."""

from __future__ import annotations

import numpy as np
import soxr

from batchsep.dsp.validate import check_sample_rate, validate_audio
from batchsep.errors import ParameterError


def to_mono(x: np.ndarray) -> np.ndarray:
    """Average the channels of ``x``.

    Parameters
    ----------
    x : np.ndarray [shape=(n_samples,) or (channels, n_samples)]

    Returns
    -------
    np.ndarray [shape=(n_samples,)], same dtype

    Examples
    --------
    >>> to_mono(np.ones((2, 4), dtype=np.float32)).shape
    (4,)
    """
    validate_audio(x, max_ndim=2)
    if x.ndim == 1:
        return x
    return x.mean(axis=0, dtype=np.float64).astype(x.dtype, copy=False)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with soxr's high-quality filter.

    Parameters
    ----------
    x : np.ndarray [shape=(n_samples,) or (channels, n_samples)], float32/float64
    orig_sr, target_sr : int
        Input and output sample rates in Hz.

    Returns
    -------
    np.ndarray [shape=(..., round(n_samples * target_sr / orig_sr))], same dtype

    Raises
    ------
    ParameterError
        On invalid rates or non-finite audio.
    """
    orig_sr = check_sample_rate(orig_sr, "orig_sr")
    target_sr = check_sample_rate(target_sr, "target_sr")
    validate_audio(x, max_ndim=2)
    if x.dtype not in (np.float32, np.float64):
        raise ParameterError(f"x dtype={x.dtype} must be float32 or float64")
    if orig_sr == target_sr:
        return x
    # soxr expects (frames, channels)
    y = soxr.resample(np.ascontiguousarray(x.T), orig_sr, target_sr, quality="HQ")
    return np.ascontiguousarray(y.T)


def to_rate_mono(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Downmix to mono, then resample to ``target_sr``; float32 output of shape (n_samples,)."""
    return resample(to_mono(x).astype(np.float32, copy=False), orig_sr, target_sr)


def resample_stream(orig_sr: int, target_sr: int, channels: int = 1) -> soxr.ResampleStream | None:
    """A streaming resampler from ``orig_sr`` to ``target_sr`` (soxr, float32), or None when the rates are equal.

    Its state carries across chunks: ``resample_chunk(x, last=False)`` per chunk (``x`` of shape
    ``(n,)`` for one channel, ``(n, channels)`` otherwise), ``last=True`` on the final one (an empty
    chunk flushes the filter). This is how a file is resampled in bounded memory.

    Examples
    --------
    >>> rs = resample_stream(48000, 16000)
    >>> y = np.concatenate([rs.resample_chunk(np.zeros(4800, np.float32)),
    ...                     rs.resample_chunk(np.zeros(0, np.float32), last=True)])
    >>> y.shape
    (1600,)
    >>> resample_stream(16000, 16000) is None
    True
    """
    if orig_sr == target_sr:
        return None
    return soxr.ResampleStream(orig_sr, target_sr, channels, dtype="float32")
