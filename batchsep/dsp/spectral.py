"""librosa's spectral features in numpy and scipy.fft: the same numbers, without numba's compile.

These are ports of the librosa 0.11 functions that :mod:`batchsep.dsp.emotion_stats` and
:func:`batchsep.dsp.mel.mel_filterbank` used, restricted to the arguments used here (centred frames,
Hann window, zero padding, Slaney mel scale). librosa compiles numba kernels the first time it is
imported and used (about 18 s on a 2-core machine, cached in its ``__pycache__`` afterwards), which
made a new user's first ``batchsep enhance`` (emotion tagging included) about 4× slower than the second.
The ports follow librosa's operations and dtypes step by step, so results agree with librosa to float
rounding (tests/unit/dsp/test_spectral.py checks each one against librosa on real speech); the STFT,
the MFCCs of a given dB spectrogram and YIN are bit-identical. FFTs are scipy.fft's, as librosa's (imported on first use, ~0.25 s of
CPU: numpy.fft would save that once per process, but its float32 transforms are 2× slower on YIN's
frames and round differently). No BLAS call either: on a busy 2-core machine OpenBLAS's threads made
librosa's small mel product 50× slower.

Spectrograms are ``[n_bins, n_frames]`` (frequency first), as in librosa; frames are centred:
``n_frames = 1 + n_samples // hop_length``.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from batchsep.errors import ParameterError


def fft_frequencies(*, sr: float, n_fft: int) -> np.ndarray:
    """Centre frequency (Hz) of each of the ``1 + n_fft // 2`` bins of a real FFT."""
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


def _frames(x: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """A read-only ``[frame_length, n_frames]`` view of ``x`` (librosa's ``util.frame`` layout)."""
    if x.shape[-1] < frame_length:
        raise ParameterError(
            f"signal of {x.shape[-1]} samples is shorter than a frame ({frame_length})"
        )
    return np.lib.stride_tricks.sliding_window_view(x, frame_length)[::hop_length].T


def hann(n: int) -> np.ndarray:
    """Periodic Hann window of ``n`` points (``scipy.signal.get_window("hann", n)``), float64."""
    return (0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, n + 1)))[:n]


def stft(x: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """Short-time Fourier transform: periodic Hann window, frames centred on zero-padded audio.

    Parameters
    ----------
    x : np.ndarray [shape=(n_samples,)], float32 or float64
    n_fft, hop_length : int

    Returns
    -------
    np.ndarray [shape=(1 + n_fft // 2, 1 + n_samples // hop_length)]
        complex64 for float32 input, else complex128 (Fortran order, as librosa's).
    """
    import scipy.fft

    if x.ndim != 1 or n_fft < 2 or hop_length < 1:
        raise ParameterError(
            f"x shape={x.shape}, n_fft={n_fft}, hop_length={hop_length}: need 1-D x"
        )
    frames = _frames(np.pad(x, n_fft // 2), n_fft, hop_length)
    dtype = np.complex64 if x.dtype == np.float32 else np.complex128
    out = np.zeros((1 + n_fft // 2, frames.shape[1]), dtype=dtype, order="F")
    out[:] = scipy.fft.rfft(hann(n_fft)[:, None] * frames, axis=-2)
    return out


_F_SP = 200.0 / 3  # Hz per mel below 1 kHz
_MIN_LOG_MEL = 1000.0 / _F_SP  # the mel value of 1 kHz, where the log region starts
_LOGSTEP = np.log(6.4) / 27.0  # log(Hz) per mel above 1 kHz


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above; at least 1-D."""
    f = np.array(f, dtype=np.float64, ndmin=1)
    mels = f / _F_SP
    log_t = f >= 1000.0
    mels[log_t] = _MIN_LOG_MEL + np.log(f[log_t] / 1000.0) / _LOGSTEP
    return mels


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.array(m, dtype=np.float64, ndmin=1)
    hz = _F_SP * m
    log_t = m >= _MIN_LOG_MEL
    hz[log_t] = 1000.0 * np.exp(_LOGSTEP * (m[log_t] - _MIN_LOG_MEL))
    return hz


@functools.lru_cache(maxsize=32)
def mel_basis(
    *, sr: float, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Mel filterbank with librosa's defaults (Slaney scale, Slaney area normalisation), cached.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2)], float32, read-only
    """
    top = float(sr) / 2 if fmax is None else float(fmax)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin)[0], hz_to_mel(top)[0], n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_frequencies(sr=sr, n_fft=n_fft))
    lower = -ramps[:n_mels] / fdiff[:n_mels, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    weights.setflags(write=False)
    return weights


def melspectrogram(S: np.ndarray, *, sr: float, n_mels: int) -> np.ndarray:
    """Mel power spectrogram ``[n_mels, n_frames]`` of a power spectrogram ``S`` (:func:`mel_basis`).

    Each band sums only its filter's non-zero bins, in numpy's own loops: no BLAS call, whose threads
    made this 50× slower on a busy 2-core machine (librosa's ``einsum``; equal to float rounding).
    """
    basis = mel_basis(sr=sr, n_fft=2 * (S.shape[-2] - 1), n_mels=n_mels)
    out = np.zeros((n_mels, S.shape[-1]), dtype=np.result_type(S.dtype, basis.dtype))
    for m, row in enumerate(basis):
        nz = np.flatnonzero(row)
        if nz.size:
            lo, hi = nz[0], nz[-1] + 1
            out[m] = np.einsum("f,ft->t", row[lo:hi], S[lo:hi])
    return out


def power_to_db(
    S: np.ndarray, *, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0
) -> np.ndarray:
    """``10·log10(max(S, amin) / ref)``, floored ``top_db`` below the array's maximum (librosa's rule)."""
    log_spec: np.ndarray = 10.0 * np.log10(np.maximum(amin, S))
    log_spec -= 10.0 * np.log10(np.maximum(amin, np.abs(ref)))
    if top_db is not None:
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def mfcc(S_db: np.ndarray, *, n_mfcc: int) -> np.ndarray:
    """The first ``n_mfcc`` coefficients of the orthonormal DCT-II of a dB mel spectrogram, per frame."""
    import scipy.fft

    out: np.ndarray = scipy.fft.dct(S_db, axis=-2, type=2, norm="ortho")[..., :n_mfcc, :]
    return out


@functools.lru_cache(maxsize=8)
def _savgol_coef(order: int, width: int) -> np.ndarray:
    """Weights giving the ``order``-th derivative, at the centre, of the degree-``order`` least-squares fit."""
    k = np.arange(-(width // 2), width // 2 + 1, dtype=np.float64)
    coef = np.linalg.pinv(np.vander(k, order + 1, increasing=True))[order] * math.factorial(order)
    coef.setflags(write=False)
    return coef


def delta(data: np.ndarray, *, order: int = 1, width: int = 9) -> np.ndarray:
    """Savitzky-Golay derivative of order ``order`` along the last axis (librosa's ``delta``).

    A polynomial of degree ``order`` is fitted to each ``width`` frames; its ``order``-th derivative is a
    constant, so the first and last ``width // 2`` frames take the value of the first and last full window
    (scipy's ``mode="interp"``).

    Raises
    ------
    ParameterError
        ``width`` not odd and >= 3, or longer than the data.
    """
    if width < 3 or width % 2 != 1 or width > data.shape[-1] or order < 1:
        raise ParameterError(
            f"width={width} must be odd, >= 3 and <= {data.shape[-1]}; order={order} >= 1"
        )
    half, n = width // 2, data.shape[-1] - width + 1
    coef = _savgol_coef(order, width)
    inner = sum(coef[j] * data[..., j : j + n].astype(np.float64) for j in range(width))
    out = np.concatenate(
        [np.repeat(inner[..., :1], half, -1), inner, np.repeat(inner[..., -1:], half, -1)], axis=-1
    )
    return out.astype(data.dtype, copy=False)


def _normalize_l1(S: np.ndarray) -> np.ndarray:
    """Each column divided by its sum (columns summing to ~0 are left as they are); S's dtype."""
    length = np.sum(np.abs(S).astype(float), axis=-2, keepdims=True)
    length[length < np.finfo(S.dtype).tiny] = 1.0
    out = np.empty_like(S)
    out[:] = S / length
    return out


def spectral_centroid(S: np.ndarray, *, sr: float) -> np.ndarray:
    """Magnitude-weighted mean frequency (Hz) of each frame of a magnitude spectrogram: ``[n_frames]``."""
    freq = fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1))
    out: np.ndarray = np.sum(freq[:, None] * _normalize_l1(S), axis=-2)
    return out


def spectral_bandwidth(S: np.ndarray, *, sr: float) -> np.ndarray:
    """Magnitude-weighted standard deviation (Hz) of frequency around the centroid: ``[n_frames]``."""
    freq = fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1))
    deviation = np.abs(np.subtract.outer(spectral_centroid(S, sr=sr), freq).swapaxes(-2, -1))
    out: np.ndarray = np.sum(_normalize_l1(S) * deviation**2, axis=-2) ** 0.5
    return out


def spectral_rolloff(S: np.ndarray, *, sr: float, roll_percent: float = 0.85) -> np.ndarray:
    """Lowest bin frequency (Hz) below which ``roll_percent`` of each frame's magnitude lies."""
    freq = fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1))
    total = np.cumsum(S, axis=-2)
    ind = np.where(total < roll_percent * total[-1:], np.nan, 1)
    out: np.ndarray = np.nanmin(ind * freq[:, None], axis=-2)
    return out


def spectral_flatness(S: np.ndarray, *, amin: float = 1e-10) -> np.ndarray:
    """Geometric over arithmetic mean of each frame's power (``S`` is a magnitude spectrogram)."""
    p = np.maximum(amin, S**2.0)
    out: np.ndarray = np.exp(np.mean(np.log(p), axis=-2)) / np.mean(p, axis=-2)
    return out


def spectral_contrast(
    S: np.ndarray, *, sr: float, fmin: float = 200.0, n_bands: int = 6, quantile: float = 0.02
) -> np.ndarray:
    """Peak-to-valley level (dB) in ``n_bands + 1`` octave bands from ``fmin``: ``[n_bands + 1, n_frames]``.

    Peak and valley are the means of the top and bottom ``quantile`` of each band's magnitudes; the
    levels go through :func:`power_to_db` (reference 1, 80 dB floor) as in librosa.
    """
    freq = fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1))
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    if fmin <= 0 or np.any(octa[:-1] >= 0.5 * sr):
        raise ParameterError(f"fmin={fmin}, n_bands={n_bands}: bands must lie in (0, sr/2)")
    valley = np.zeros((n_bands + 1, S.shape[-1]))
    peak = np.zeros_like(valley)
    for k, (f_low, f_high) in enumerate(itertools.pairwise(octa)):
        band = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(band)
        if k > 0:
            band[idx[0] - 1] = True
        if k == n_bands:
            band[idx[-1] + 1 :] = True
        sub = S[band]
        if k < n_bands:
            sub = sub[:-1]
        n = max(int(np.rint(quantile * np.sum(band))), 1)
        srt = np.sort(sub, axis=-2)
        valley[k] = np.mean(srt[:n], axis=-2)
        peak[k] = np.mean(srt[-n:], axis=-2)
    return power_to_db(peak) - power_to_db(valley)


def zero_crossing_rate(x: np.ndarray, *, frame_length: int, hop_length: int) -> np.ndarray:
    """Share of sign changes per centred frame (edge-padded; |x| <= 1e-10 counts as 0): ``[n_frames]``."""
    frames = _frames(np.pad(x, frame_length // 2, mode="edge"), frame_length, hop_length)
    neg = np.signbit(np.where(np.abs(frames) <= 1e-10, 0, frames))
    crossings = np.zeros(frames.shape, bool)
    crossings[1:] = neg[1:] != neg[:-1]
    out: np.ndarray = np.mean(crossings, axis=-2)
    return out


def _cmnd(frames: np.ndarray, min_period: int, max_period: int) -> np.ndarray:
    """YIN's cumulative mean normalised difference for lags ``min_period..max_period``, per frame."""
    import scipy.fft

    n_pad = scipy.fft.next_fast_len(2 * frames.shape[-2] - 1, real=True)
    spec = scipy.fft.rfft(frames, n=n_pad, axis=-2)
    acf = scipy.fft.irfft(spec.real**2 + spec.imag**2, n=n_pad, axis=-2)[: max_period + 1]
    d = np.cumsum(np.square(frames), axis=-2)
    k = slice(1, max_period + 1)
    d[0] = 0
    d[k] = 2 * (acf[0:1] - acf[k]) - d[: k.stop - 1]
    numerator = d[min_period : max_period + 1]
    cum_mean = np.cumsum(d[k], axis=-2) / np.arange(1, max_period + 1)[:, None]
    denominator = cum_mean[min_period - 1 : max_period]
    out: np.ndarray = numerator / (denominator + np.finfo(denominator.dtype).tiny)
    return out


def _parabolic_shifts(y: np.ndarray) -> np.ndarray:
    """Offset of the vertex of the parabola through each point and its neighbours along axis 0."""
    a = (y[2:] + y[:-2]).astype(np.float64) - 2.0 * y[1:-1].astype(np.float64)
    b = (y[2:] - y[:-2]).astype(np.float64) / 2
    shifts = np.zeros_like(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        shifts[1:-1] = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
    return shifts


def yin(
    x: np.ndarray, *, fmin: float, fmax: float, sr: float, frame_length: int, hop_length: int,
    trough_threshold: float = 0.1,
) -> np.ndarray:  # fmt: skip
    """YIN fundamental frequency (Hz) of each centred, zero-padded frame: ``[1 + n_samples // hop]``.

    The first lag whose normalised difference is a local minimum below ``trough_threshold`` (else the
    global minimum), refined by parabolic interpolation. There is no voicing decision.

    Raises
    ------
    ParameterError
        ``0 < fmin < fmax <= sr / 2`` does not hold, or a period of ``fmin`` does not fit a frame.
    """
    if not 0 < fmin < fmax <= sr / 2 or sr / fmin >= frame_length - 1:
        raise ParameterError(
            f"fmin={fmin}, fmax={fmax}, frame_length={frame_length} do not fit sr={sr}"
        )
    frames = _frames(np.pad(x, frame_length // 2), frame_length, hop_length)
    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), frame_length - 1)
    d = _cmnd(frames, min_period, max_period)
    shifts = _parabolic_shifts(d)
    trough = np.zeros(d.shape, bool)
    trough[1:-1] = (d[1:-1] < d[:-2]) & (d[1:-1] <= d[2:])
    trough[-1] = d[-1] < d[-2]
    trough[0] = d[0] < d[1]
    below = trough & (d < trough_threshold)
    period = np.argmax(below, axis=0)
    none = ~below.any(axis=0)
    period[none] = np.argmin(d, axis=0)[none]
    exact = min_period + period + np.take_along_axis(shifts, period[None], axis=0)[0]
    out: np.ndarray = sr / exact
    return out


def lpc(y: np.ndarray, *, order: int) -> np.ndarray:
    """Linear-prediction coefficients by Burg's method along the last axis: ``[..., order + 1]``, ``a[0] = 1``.

    Frames may be stacked on leading axes; each is fitted on its own.
    """
    if order < 1 or y.shape[-1] <= order:
        raise ParameterError(f"order={order} must be >= 1 and below the frame length {y.shape[-1]}")
    a = np.zeros((*y.shape[:-1], order + 1), dtype=y.dtype)
    a[..., 0] = 1
    a_prev = a.copy()
    fwd, bwd = y[..., 1:], y[..., :-1]
    den = np.sum(fwd**2 + bwd**2, axis=-1)
    eps = np.finfo(y.dtype).tiny
    for i in range(order):
        k = np.sum(bwd * fwd, axis=-1) * -2 / (den + eps)
        a_prev, a = a, a_prev
        a[..., 1 : i + 2] = a_prev[..., 1 : i + 2] + k[..., None] * a_prev[..., i::-1]
        fwd, bwd = fwd + k[..., None] * bwd, bwd + k[..., None] * fwd
        den = (1.0 - k**2) * den - bwd[..., -1] ** 2 - fwd[..., 0] ** 2
        fwd, bwd = fwd[..., 1:], bwd[..., :-1]
    return a


def poly_roots(a: np.ndarray) -> list[np.ndarray]:
    """Roots of each row's polynomial (highest power first): ``np.roots`` of every row, batched.

    Rows with a zero leading or trailing coefficient go through ``np.roots`` one by one (it strips them);
    the others share one stacked eigenvalue call on their companion matrices (as ``np.roots`` builds them).
    """
    a = np.atleast_2d(a)
    n = a.shape[-1] - 1
    if a.shape[0] == 0 or n < 1:
        return [np.roots(row) for row in a]
    plain = (a[:, 0] != 0) & (a[:, -1] != 0)
    comp = np.zeros((int(plain.sum()), n, n), dtype=np.result_type(a.dtype, np.float64))
    comp[:, np.arange(1, n), np.arange(n - 1)] = 1.0
    comp[:, 0, :] = -a[plain, 1:] / a[plain, :1]
    stacked = iter(np.linalg.eigvals(comp)) if comp.size else iter(())
    return [next(stacked) if p else np.roots(row) for row, p in zip(a, plain, strict=True)]
