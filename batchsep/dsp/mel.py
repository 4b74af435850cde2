"""Log-mel features for emotion models: dB log-power mel spectrogram, fixed 128 frames, normalised.

Seed 003 feeds its VAE an 80 × 128 image: 16 kHz audio, voice-activity trimmed, an 80-band mel power
spectrogram in dB, padded (or cropped) to 128 frames "so that the complete statement is encoded". The
report does not give the STFT, so batchsep picks ``n_fft = 1024`` (64 ms: ≥ 2 FFT bins under the
narrowest of 80 mel bands up to 8 kHz) and ``hop_length = 400`` (25 ms), hence 128 frames = 3.2 s.
Measured on 200 random RAVDESS files (16 kHz) after :func:`~batchsep.dsp.vad.trim_silence`: median
1.78 s, 95th percentile 2.82 s, maximum 3.44 s; the raw files last 3.1-4.8 s (median 3.6 s, about 1 s
of leading silence). So 128 frames hold the whole trimmed statement for > 99 % of files.

The STFT is :func:`batchsep.dsp.stft.stft` (torch, Hann window, centred frames:
``n_frames = 1 + n_samples // hop_length``); the mel filterbank is librosa's (Slaney scale and area
normalisation, its defaults; computed by :func:`batchsep.dsp.spectral.mel_basis`, equal to librosa's),
built once per parameter set and cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from batchsep.config import Config, register_config
from batchsep.dsp.spectral import mel_basis
from batchsep.dsp.stft import stft
from batchsep.dsp.vad import trim_silence
from batchsep.dsp.validate import ArrayLike, check_positive, check_sample_rate, validate_audio
from batchsep.errors import ParameterError

CropMode = Literal["centre", "start", "random"]

AMIN = 1e-10  # power floor before the logarithm (librosa's ``amin``)


@register_config("emotion_features")
@dataclass(frozen=True)
class EmotionFeatureConfig(Config):
    """How an utterance becomes the ``[n_mels, n_frames]`` input of the emotion models.

    Defaults follow seed 003 (16 kHz, 80 mels, dB, 128 frames); see the module docstring for the STFT.
    """

    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 400
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0
    n_frames: int = 128
    trim: bool = True
    normalize: bool = True

    def __post_init__(self) -> None:
        check_sample_rate(self.sample_rate)
        for name in ("n_mels", "n_fft", "hop_length", "n_frames"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name}={getattr(self, name)} must be >= 1")
        if self.hop_length > self.n_fft:
            raise ParameterError(f"hop_length={self.hop_length} must be <= n_fft={self.n_fft}")
        check_positive("top_db", self.top_db)
        _check_band(self.sample_rate, self.fmin, self.fmax)

    @property
    def duration_s(self) -> float:
        """Seconds of audio that ``n_frames`` centred frames cover: ``n_frames · hop / sr``."""
        return self.n_frames * self.hop_length / self.sample_rate


def _check_band(sample_rate: int, fmin: float, fmax: float | None) -> float:
    top = sample_rate / 2 if fmax is None else fmax
    if not (0.0 <= fmin < top <= sample_rate / 2):
        raise ParameterError(
            f"fmin={fmin}, fmax={fmax}: need 0 <= fmin < fmax <= sample_rate/2 = {sample_rate / 2}"
        )
    return float(top)


@functools.lru_cache(maxsize=32)
def mel_filterbank(
    *, sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """librosa's mel filterbank (:func:`batchsep.dsp.spectral.mel_basis`), cached; read-only float32.

    Returns
    -------
    np.ndarray [shape=(n_mels, n_fft // 2 + 1)], float32
    """
    top = _check_band(check_sample_rate(sample_rate), fmin, fmax)
    return mel_basis(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=top)


def power_to_db(power: torch.Tensor, *, top_db: float = 80.0) -> torch.Tensor:
    """``10·log10(max(P, amin))`` relative to each item's maximum, clipped ``top_db`` below it.

    Parameters
    ----------
    power : torch.Tensor [shape=(..., n_mels, n_frames)], non-negative

    Returns
    -------
    torch.Tensor [same shape]
        Values in ``[-top_db, 0]``; the maximum of every ``[n_mels, n_frames]`` item is 0 dB.
    """
    check_positive("top_db", top_db)
    db = 10.0 * torch.log10(power.clamp_min(AMIN))
    peak = db.amax(dim=(-2, -1), keepdim=True)
    return (db - peak).clamp_min(-top_db)


def log_mel(
    x: ArrayLike,
    *,
    sample_rate: int = 16000,
    n_mels: int = 80,
    n_fft: int = 1024,
    hop_length: int = 400,
    fmin: float = 0.0,
    fmax: float | None = None,
    top_db: float = 80.0,
) -> ArrayLike:
    """Log-power mel spectrogram in dB, relative to each utterance's loudest bin.

    Parameters
    ----------
    x : np.ndarray or torch.Tensor [shape=(..., n_samples)], real floating point
        Audio at ``sample_rate``.
    sample_rate : int
        Rate of ``x`` in Hz (no resampling is done here; see :func:`batchsep.dsp.to_rate_mono`).
    n_mels, n_fft, hop_length : int
        Mel bands, FFT size and hop (Hann window, centred frames).
    fmin, fmax : float
        Band edges of the filterbank in Hz; ``fmax=None`` means ``sample_rate / 2``.
    top_db : float
        Dynamic range kept below each item's maximum.

    Returns
    -------
    S_db : same kind as ``x`` [shape=(..., n_mels, 1 + n_samples // hop_length)]
        float32, or float64 for float64 input.
        Values in ``[-top_db, 0]``, maximum exactly 0 per item; digital silence gives all zeros.

    Raises
    ------
    ParameterError
        On non-finite, empty or integer audio, or invalid parameters.

    Examples
    --------
    >>> S = log_mel(np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    >>> S.shape, float(S.max()), bool(S.min() >= -80)
    ((80, 41), 0.0, True)
    """
    validate_audio(x, name="x")
    if isinstance(x, torch.Tensor) and x.is_complex():
        raise ParameterError(f"x dtype={x.dtype} must be real")
    for name, value in (("n_mels", n_mels), ("n_fft", n_fft), ("hop_length", hop_length)):
        if value < 1:
            raise ParameterError(f"{name}={value} must be >= 1")
    if hop_length > n_fft:
        raise ParameterError(f"hop_length={hop_length} must be <= n_fft={n_fft}")
    was_numpy = isinstance(x, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    fb_np = mel_filterbank(
        sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax
    )
    spec = stft(t, n_fft=n_fft, hop_length=hop_length, window="hann")
    if not isinstance(spec, torch.Tensor):  # pragma: no cover - stft keeps the tensor kind
        raise ParameterError("stft returned a non-tensor for a tensor input")
    power = spec.real.square() + spec.imag.square()
    fb = torch.from_numpy(fb_np.copy()).to(device=power.device, dtype=power.dtype)
    mel = torch.matmul(fb, power)
    out = power_to_db(mel, top_db=top_db)
    return out.numpy() if was_numpy else out


def fix_frames(
    m: ArrayLike,
    n_frames: int = 128,
    *,
    mode: CropMode = "centre",
    rng: np.random.Generator | None = None,
    pad_value: float | None = None,
) -> ArrayLike:
    """Pad or crop the last (time) axis to exactly ``n_frames`` frames.

    Parameters
    ----------
    m : np.ndarray or torch.Tensor [shape=(..., n_mels, T)]
        A (batch of) log-mel spectrogram(s).
    n_frames : int
        Output length.
    mode : {"centre", "start", "random"}
        Where the ``T`` input frames sit in the output (padding) or which window is kept (cropping):
        centred, at the start, or at an offset drawn uniformly from ``rng`` (one offset for the batch).
    rng : np.random.Generator, optional
        Required for ``mode="random"``.
    pad_value : float, optional
        Value of padded frames; default: the minimum of each ``[n_mels, T]`` item (its silence level,
        ``-top_db`` for :func:`log_mel` output).

    Returns
    -------
    same kind as ``m`` [shape=(..., n_mels, n_frames)]

    Raises
    ------
    ParameterError
        On ``n_frames < 1``, an input with fewer than 2 dimensions or no frames, an unknown mode, or
        ``mode="random"`` without ``rng``.

    Examples
    --------
    >>> fix_frames(np.zeros((80, 50)), 128).shape, fix_frames(np.zeros((80, 300)), 128).shape
    ((80, 128), (80, 128))
    """
    if n_frames < 1:
        raise ParameterError(f"n_frames={n_frames} must be >= 1")
    if not isinstance(m, np.ndarray | torch.Tensor) or m.ndim < 2 or m.shape[-1] < 1:
        shape = getattr(m, "shape", None)
        raise ParameterError(f"m with shape={shape} must be an array [..., n_mels, T] with T >= 1")
    if mode not in ("centre", "start", "random"):
        raise ParameterError(f"mode={mode!r} must be one of ['centre', 'start', 'random']")
    if mode == "random" and rng is None:
        raise ParameterError("mode='random' needs rng (a numpy Generator)")
    n_in = int(m.shape[-1])
    slack = abs(n_frames - n_in)
    if rng is not None and mode == "random":
        offset = int(rng.integers(0, slack + 1))
    else:
        offset = slack // 2 if mode == "centre" else 0
    if n_in >= n_frames:
        return m[..., offset : offset + n_frames]
    after = n_frames - n_in - offset
    was_numpy = isinstance(m, np.ndarray)
    t = torch.from_numpy(m) if isinstance(m, np.ndarray) else m
    if pad_value is None:
        fill = t.amin(dim=(-2, -1), keepdim=True)
    else:
        fill = torch.full((1,) * t.ndim, float(pad_value), dtype=t.dtype, device=t.device)
    shape = (*t.shape[:-1], n_frames)
    out = fill.expand(shape).clone()
    out[..., offset : n_frames - after] = t
    return out.numpy() if was_numpy else out


def normalize_utterance(m: ArrayLike, *, eps: float = 1e-5) -> ArrayLike:
    """Per-utterance mean/variance normalisation over each ``[n_mels, n_frames]`` item.

    Parameters
    ----------
    m : np.ndarray or torch.Tensor [shape=(..., n_mels, n_frames)]
    eps : float
        Added to the standard deviation (a constant input maps to zeros).

    Returns
    -------
    same kind as ``m`` [same shape]: zero mean and unit variance per item.

    Examples
    --------
    >>> y = normalize_utterance(np.arange(12.0).reshape(3, 4))
    >>> round(float(y.mean()), 6), round(float(y.std()), 4)
    (0.0, 1.0)
    """
    check_positive("eps", eps)
    if not isinstance(m, np.ndarray | torch.Tensor) or m.ndim < 2:
        shape = getattr(m, "shape", None)
        raise ParameterError(f"m with shape={shape} must be an array [..., n_mels, n_frames]")
    if isinstance(m, np.ndarray):
        mean = m.mean(axis=(-2, -1), keepdims=True)
        std = m.std(axis=(-2, -1), keepdims=True)
        return (m - mean) / (std + eps)
    mean_t = m.mean(dim=(-2, -1), keepdim=True)
    std_t = m.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (m - mean_t) / (std_t + eps)


def emotion_features(
    x: ArrayLike,
    config: EmotionFeatureConfig | None = None,
    *,
    mode: CropMode = "centre",
    rng: np.random.Generator | None = None,
) -> ArrayLike:
    """The emotion models' input from audio: trim → log-mel → ``n_frames`` frames → normalise.

    Parameters
    ----------
    x : np.ndarray or torch.Tensor [shape=(n_samples,)], or [shape=(..., n_samples)] when
        ``config.trim`` is False; audio at ``config.sample_rate``.
    config : EmotionFeatureConfig, optional
        With ``trim``, leading/trailing silence is cut by :func:`batchsep.dsp.vad.trim_silence` (the whole
        signal is kept when nothing is active); with ``normalize``, :func:`normalize_utterance` is applied.
    mode, rng
        Passed to :func:`fix_frames`.

    Returns
    -------
    same kind as ``x`` [shape=(..., n_mels, n_frames)], float32 for float32 input

    Raises
    ------
    ParameterError
        On bad audio, or batched input with ``config.trim`` (items would differ in length).
    """
    c = config or EmotionFeatureConfig()
    if c.trim:
        if x.ndim != 1:
            raise ParameterError(
                f"x with shape={tuple(x.shape)}: trim=True needs one mono signal [n_samples]"
            )
        start, end = trim_silence(x, c.sample_rate)
        if end > start:
            x = x[start:end]
    m = log_mel(
        x, sample_rate=c.sample_rate, n_mels=c.n_mels, n_fft=c.n_fft, hop_length=c.hop_length,
        fmin=c.fmin, fmax=c.fmax, top_db=c.top_db,
    )  # fmt: skip
    m = fix_frames(m, c.n_frames, mode=mode, rng=rng)
    return normalize_utterance(m) if c.normalize else m


class LogMel(nn.Module):
    """Module form of :func:`emotion_features` (centre crop), configured by an EmotionFeatureConfig."""

    def __init__(self, config: EmotionFeatureConfig | None = None) -> None:
        super().__init__()
        self.config = config or EmotionFeatureConfig()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = emotion_features(x, self.config)
        if not isinstance(out, torch.Tensor):  # pragma: no cover - tensor in, tensor out
            raise ParameterError("emotion_features returned a non-tensor for a tensor input")
        return out
