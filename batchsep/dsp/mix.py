"""Mixing speech and noise at an exact signal-to-noise ratio."""

from __future__ import annotations

import math

import numpy as np

from batchsep.dsp.validate import validate_audio
from batchsep.errors import ParameterError


def energy(x: np.ndarray) -> float:
    """Sum of squares of ``x`` in float64."""
    return float(np.sum(np.square(x, dtype=np.float64)))


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """SNR in dB between a signal and an (already scaled) noise: 10·log10(‖s‖² / ‖n‖²).

    A silent ``signal`` gives ``-inf``; a silent ``noise`` raises ParameterError (SNR undefined).
    """
    es, en = energy(signal), energy(noise)
    if en == 0.0:
        raise ParameterError("noise is digital silence; SNR undefined")
    if es == 0.0:
        return -math.inf
    return 10.0 * math.log10(es / en)


def fit_length(noise: np.ndarray, n_samples: int, *, offset: int = 0) -> np.ndarray:
    """Loop (tile) or crop ``noise`` to ``n_samples`` samples, starting at ``offset``.

    Parameters
    ----------
    noise : np.ndarray [shape=(n_noise,)]
    n_samples : int
        Output length.
    offset : int
        Start sample in ``noise`` (taken modulo its length).

    Returns
    -------
    np.ndarray [shape=(n_samples,)]
    """
    validate_audio(noise, name="noise", max_ndim=1)
    if n_samples < 1:
        raise ParameterError(f"n_samples={n_samples} must be >= 1")
    n = noise.shape[-1]
    idx = (np.arange(n_samples) + offset) % n
    return noise[idx]


def mix_at_snr(
    speech: np.ndarray, noise: np.ndarray, snr: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale ``noise`` so that speech/noise energy ratio is exactly ``snr`` dB, and add it.

    Parameters
    ----------
    speech : np.ndarray [shape=(n_samples,)]
    noise : np.ndarray [shape=(n_samples,)]
        Same length as ``speech`` (see :func:`fit_length`).
    snr : float
        Target SNR in dB.

    Returns
    -------
    mixture : np.ndarray [shape=(n_samples,)]
    scaled_noise : np.ndarray [shape=(n_samples,)]
        ``mixture == speech + scaled_noise``.
    noise_gain : float
        Factor applied to ``noise``.

    Raises
    ------
    ParameterError
        If lengths differ, or speech or noise is all zeros (no SNR is defined).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s, n = rng.standard_normal(1000), rng.standard_normal(1000)
    >>> m, nn, g = mix_at_snr(s, n, 5.0)
    >>> round(snr_db(s, nn), 9)
    5.0
    """
    validate_audio(speech, name="speech", max_ndim=1)
    validate_audio(noise, name="noise", max_ndim=1)
    if speech.shape != noise.shape:
        raise ParameterError(f"speech shape {speech.shape} != noise shape {noise.shape}")
    if not np.isfinite(snr):
        raise ParameterError(f"snr={snr!r} must be finite")
    es, en = energy(speech), energy(noise)
    if es == 0.0:
        raise ParameterError("speech is digital silence; SNR undefined")
    if en == 0.0:
        raise ParameterError("noise is digital silence; SNR undefined")
    gain = float(np.sqrt(es / (en * 10.0 ** (snr / 10.0))))
    scaled = (noise.astype(np.float64) * gain).astype(speech.dtype)
    return speech + scaled, scaled, gain
