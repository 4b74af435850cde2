"""Training-data augmentation maths: speed, pitch, room reverberation, telephone band, level, noise sums.

Pure array functions (no I/O, no randomness): every random value is drawn by the caller
(:mod:`batchsep.corpus.augment`) and passed in, so a rendering is a deterministic function of its draws.

- :func:`speed_perturb` — Kaldi-style speed perturbation (resampling: tempo and pitch change together).
- :func:`pitch_shift` — pitch shift at constant length (librosa's phase vocoder + soxr resampling).
- :func:`shoebox_rir` — a room impulse response of a shoebox room by the image-source method
  (``pyroomacoustics``, deterministic: no randomised images, no ray tracing, one thread).
- :func:`split_rir` — cut an RIR at its direct path into the full response and its early part (the
  direct path and the reflections of the first ``early_ms``), both aligned so the direct path is at lag 0.
- :func:`convolve_aligned` — convolve with an aligned RIR, keeping the input's length and timing.
- :func:`telephone_band` — resample through 8 kHz (soxr) and band-pass (Butterworth, ~300–3400 Hz).
- :func:`rms_dbfs` / :func:`level_gain` — RMS level and the gain reaching a target level.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

from batchsep.errors import ParameterError

TELEPHONE_RATE = 8000


def speed_length(n_samples: int, factor: float) -> int:
    """Length of ``n_samples`` after :func:`speed_perturb` by ``factor`` (``round(n / factor)``, ≥ 1)."""
    return max(1, math.floor(n_samples / factor + 0.5))


def speed_perturb(x: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (``factor`` 1.1: 1/1.1 of the length, pitch up by 10 %).

    Parameters
    ----------
    x : np.ndarray [shape=(n_samples,)]
    factor : float
        Speed factor (> 0); 1 returns ``x`` (as float64).
    sample_rate : int
        Rate of ``x`` (and of the output).

    Returns
    -------
    np.ndarray [shape=(speed_length(n_samples, factor),)], float64
    """
    if not factor > 0:
        raise ParameterError(f"speed factor={factor} must be > 0")
    x = np.asarray(x, dtype=np.float64)
    if factor == 1.0:
        return x
    # The samples of a signal sampled at factor·sr, resampled to sr: factor times fewer samples.
    y = soxr.resample(x, float(sample_rate) * factor, float(sample_rate), quality="HQ")
    return _fit(np.asarray(y, dtype=np.float64), speed_length(x.shape[0], factor))


def pitch_shift(x: np.ndarray, semitones: float, sample_rate: int) -> np.ndarray:
    """Shift the pitch of ``x`` by ``semitones`` keeping its length and tempo (float64 output)."""
    x = np.asarray(x, dtype=np.float64)
    if semitones == 0.0:
        return x
    import librosa

    y = librosa.effects.pitch_shift(x, sr=sample_rate, n_steps=semitones, res_type="soxr_hq")
    return _fit(np.asarray(y, dtype=np.float64), x.shape[0])


def shoebox_rir(
    room: tuple[float, float, float],
    source: tuple[float, float, float],
    mic: tuple[float, float, float],
    rt60: float,
    sample_rate: int,
    *,
    max_order: int = 40,
) -> np.ndarray:
    """Impulse response from ``source`` to ``mic`` in a shoebox ``room`` of reverberation time ``rt60``.

    Wall absorption and the image order come from Sabine's formula
    (``pyroomacoustics.inverse_sabine``); the order is capped at ``max_order`` (the cap shortens the
    tail of long RT60s in large rooms a little, and bounds the cost: ~0.05 s per RIR at 40).

    Parameters
    ----------
    room : (float, float, float)
        Room dimensions in metres.
    source, mic : (float, float, float)
        Positions in metres, inside the room.
    rt60 : float
        Reverberation time in seconds.
    sample_rate : int
    max_order : int
        Largest image-source order.

    Returns
    -------
    np.ndarray [shape=(n_taps,)], float64
        The RIR, including ``pyroomacoustics``' fractional-delay filter delay (see :func:`split_rir`).
    """
    import pyroomacoustics as pra

    pra.constants.set("num_threads", 1)  # a fixed summation order: bit-identical RIRs
    absorption, order = pra.inverse_sabine(rt60, list(room))
    shoebox = pra.ShoeBox(
        list(room), fs=sample_rate, materials=pra.Material(absorption),
        max_order=int(min(order, max_order)), use_rand_ism=False, air_absorption=False,
    )  # fmt: skip
    shoebox.add_source(list(source))
    shoebox.add_microphone(list(mic))
    shoebox.compute_rir()
    return np.asarray(shoebox.rir[0][0], dtype=np.float64)


def split_rir(
    rir: np.ndarray, sample_rate: int, *, early_ms: float = 50.0, pre_samples: int = 40
) -> tuple[np.ndarray, np.ndarray, int]:
    """Normalise an RIR and cut it at its direct path into (full, early) responses.

    The direct path is the largest tap; both outputs start ``pre_samples`` before it (keeping the
    fractional-delay filter's pre-ringing) and are scaled so the direct path has gain 1. ``early`` keeps
    the taps up to ``early_ms`` after the direct path, the rest zero.

    Returns
    -------
    full, early : np.ndarray [shape=(n_taps,)]
    lag : int
        Index of the direct path in both (``pre_samples`` unless the RIR starts earlier): convolve with
        :func:`convolve_aligned` and this lag to keep the dry signal's timing.
    """
    rir = np.asarray(rir, dtype=np.float64)
    if rir.ndim != 1 or rir.size == 0 or not np.any(rir):
        raise ParameterError("rir must be a non-zero 1-D array")
    peak = int(np.argmax(np.abs(rir)))
    start = max(0, peak - pre_samples)
    full = rir[start:] / rir[peak]
    lag = peak - start
    early = full.copy()
    early[lag + round(early_ms * sample_rate / 1000.0) + 1 :] = 0.0
    return full, early, lag


def convolve_aligned(x: np.ndarray, h: np.ndarray, lag: int = 0) -> np.ndarray:
    """``(x * h)[lag : lag + len(x)]``: the convolution, as long as ``x`` and advanced by ``lag``.

    With an RIR from :func:`split_rir` the direct path of the output lines up with ``x``; a single
    delta at ``lag`` returns ``x`` exactly.
    """
    from scipy.signal import fftconvolve, oaconvolve

    x = np.asarray(x, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    nz = np.flatnonzero(h)
    if nz.size == 1:  # a (scaled) delta: exact, no FFT rounding
        y = np.zeros(x.shape[0] + h.shape[0] - 1)
        y[nz[0] : nz[0] + x.shape[0]] = x * h[nz[0]]
    else:
        conv = oaconvolve if h.shape[0] * 8 < x.shape[0] else fftconvolve
        y = conv(x, h)
    return np.ascontiguousarray(y[lag : lag + x.shape[0]])


def telephone_band(
    x: np.ndarray,
    sample_rate: int,
    *,
    low_hz: float = 300.0,
    high_hz: float = 3400.0,
    order: int = 4,
) -> np.ndarray:
    """Pass ``x`` through a telephone channel: resample to 8 kHz, band-pass, resample back.

    Linear (``telephone_band(a + b) == telephone_band(a) + telephone_band(b)`` up to soxr's float32
    rounding, about −100 dB); the
    8 kHz round trip removes everything above 4 kHz, the Butterworth band-pass (``order`` per edge,
    causal, like a real channel) what is below ``low_hz`` and above ``high_hz``.

    Returns
    -------
    np.ndarray [shape=(n_samples,)], float64, at ``sample_rate``
    """
    from scipy.signal import butter, sosfilt

    if not 0 < low_hz < high_hz < TELEPHONE_RATE / 2:
        raise ParameterError(f"telephone band [{low_hz}, {high_hz}] Hz must lie in (0, 4000)")
    x = np.asarray(x, dtype=np.float64)
    y = x if sample_rate == TELEPHONE_RATE else soxr.resample(x, sample_rate, TELEPHONE_RATE, "HQ")
    sos = butter(order, [low_hz, high_hz], btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    y = sosfilt(sos, y)
    if sample_rate != TELEPHONE_RATE:
        y = soxr.resample(y, TELEPHONE_RATE, sample_rate, "HQ")
    return _fit(np.asarray(y, dtype=np.float64), x.shape[0])


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of ``x`` in dBFS (full scale = 1.0; a sine of peak 1 is −3.01 dBFS); −inf if silent."""
    ms = float(np.mean(np.square(np.asarray(x, dtype=np.float64))))
    return 10.0 * math.log10(ms) if ms > 0 else -math.inf


def level_gain(x: np.ndarray, target_dbfs: float) -> float:
    """The gain that brings ``x``'s RMS level to ``target_dbfs``."""
    level = rms_dbfs(x)
    if not math.isfinite(level):
        raise ParameterError("signal is digital silence; its level cannot be set")
    return 10.0 ** ((target_dbfs - level) / 20.0)


def add_noise_at(
    noise: np.ndarray, second: np.ndarray, relative_db: float
) -> tuple[np.ndarray, float]:
    """``noise + g·second`` with ``g`` putting ``second`` ``relative_db`` dB relative to ``noise``.

    Returns the sum and ``g``.
    """
    e1 = float(np.sum(np.square(noise, dtype=np.float64)))
    e2 = float(np.sum(np.square(second, dtype=np.float64)))
    if e1 == 0.0 or e2 == 0.0:
        raise ParameterError("noise is digital silence; its relative level is undefined")
    g = math.sqrt(e1 / e2) * 10.0 ** (relative_db / 20.0)
    return np.asarray(noise, dtype=np.float64) + g * np.asarray(second, dtype=np.float64), g


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``y`` to ``n`` samples."""
    if y.shape[0] >= n:
        return np.ascontiguousarray(y[:n])
    return np.pad(y, (0, n - y.shape[0]))
