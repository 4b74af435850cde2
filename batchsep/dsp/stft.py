"""Short-time Fourier transform pair in torch, batched, with perfect reconstruction.

The reference configuration of the seeds (dr-nmf code) is 16 kHz, a 512-point square-root Hann window for
analysis *and* synthesis, hop 128, hence F = 257 frequency bins. Frames are centred (the signal is
reflect-padded by ``n_fft // 2``), so there is no delay: ``istft(stft(x), length=n) == x`` sample for sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import torch
from torch import nn

from batchsep.config import Config, register_config
from batchsep.dsp.validate import ArrayLike, validate_audio
from batchsep.errors import ParameterError

WindowName = Literal["sqrt_hann", "hann"]


@register_config("stft")
@dataclass(frozen=True)
class StftConfig(Config):
    """Parameters of the STFT used by features and models (defaults: the seeds' reference)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    window: WindowName = "sqrt_hann"

    def __post_init__(self) -> None:
        if self.n_fft < 2 or self.hop_length < 1 or self.hop_length > self.n_fft:
            raise ParameterError(
                f"n_fft={self.n_fft}, hop_length={self.hop_length}: need n_fft >= 2 and 1 <= hop <= n_fft"
            )
        if self.sample_rate <= 0:
            raise ParameterError(f"sample_rate={self.sample_rate} must be > 0")

    @property
    def n_freq(self) -> int:
        """Number of frequency bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1


def make_window(
    name: str, n_fft: int, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Periodic analysis/synthesis window ``name`` of length ``n_fft``."""
    hann = torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)
    if name == "sqrt_hann":
        return hann.sqrt()
    if name == "hann":
        return hann
    raise ParameterError(f"window={name!r} must be one of ['sqrt_hann', 'hann']")


def _check_params(n_fft: int, hop_length: int, window: str) -> None:
    if isinstance(n_fft, bool) or not isinstance(n_fft, int | np.integer) or n_fft < 2:
        raise ParameterError(f"n_fft={n_fft!r} must be an integer >= 2")
    if isinstance(hop_length, bool) or not isinstance(hop_length, int | np.integer):
        raise ParameterError(f"hop_length={hop_length!r} must be an integer")
    if not 1 <= hop_length <= n_fft:
        raise ParameterError(f"hop_length={hop_length} must be in [1, n_fft={n_fft}]")
    if window not in ("sqrt_hann", "hann"):
        raise ParameterError(f"window={window!r} must be one of ['sqrt_hann', 'hann']")


def _as_tensor(x: ArrayLike) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)), True
    return x, False


@overload
def stft(
    x: np.ndarray, *, n_fft: int = ..., hop_length: int = ..., window: str = ...
) -> np.ndarray: ...
@overload
def stft(
    x: torch.Tensor, *, n_fft: int = ..., hop_length: int = ..., window: str = ...
) -> torch.Tensor: ...
def stft(
    x: ArrayLike,
    *,
    n_fft: int = 512,
    hop_length: int = 128,
    window: str = "sqrt_hann",
) -> ArrayLike:
    """Complex STFT of real signals, batched over leading axes.

    Parameters
    ----------
    x : np.ndarray or torch.Tensor [shape=(..., n_samples)], real floating point
    n_fft, hop_length : int
        Frame length and hop in samples (reference: 512 and 128 at 16 kHz).
    window : {"sqrt_hann", "hann"}

    Returns
    -------
    X : same kind as ``x`` [shape=(..., n_fft // 2 + 1, n_frames)], complex64 or complex128
        ``n_frames = 1 + n_samples // hop_length`` (centred frames); a signal of at most
        ``n_fft // 2`` samples is zero-padded to ``n_fft // 2 + 1`` first, hence
        ``n_frames = 1 + max(n_samples, n_fft // 2 + 1) // hop_length`` in general.

    Raises
    ------
    ParameterError
        On non-finite, empty, integer, complex or half-precision input, or invalid parameters.

    Examples
    --------
    >>> stft(np.zeros(16000, dtype=np.float32)).shape
    (257, 126)
    """
    _check_params(n_fft, hop_length, window)
    validate_audio(x, name="x")
    t, was_numpy = _as_tensor(x)
    if t.dtype not in (torch.float32, torch.float64):
        raise ParameterError(f"x dtype={x.dtype} must be real float32 or float64")
    batch_shape = t.shape[:-1]
    flat = t.reshape(-1, t.shape[-1])
    if flat.shape[-1] <= n_fft // 2:  # reflect padding needs more than n_fft // 2 samples
        flat = torch.nn.functional.pad(flat, (0, n_fft // 2 + 1 - flat.shape[-1]))
    win = make_window(window, n_fft, device=t.device, dtype=t.dtype)
    spec = torch.stft(
        flat,
        n_fft,
        hop_length=hop_length,
        window=win,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    spec = spec.reshape(*batch_shape, *spec.shape[-2:])
    return spec.numpy() if was_numpy else spec


@overload
def istft(
    X: np.ndarray, *, length: int, n_fft: int = ..., hop_length: int = ..., window: str = ...
) -> np.ndarray: ...
@overload
def istft(
    X: torch.Tensor, *, length: int, n_fft: int = ..., hop_length: int = ..., window: str = ...
) -> torch.Tensor: ...
def istft(
    X: ArrayLike,
    *,
    length: int,
    n_fft: int = 512,
    hop_length: int = 128,
    window: str = "sqrt_hann",
) -> ArrayLike:
    """Inverse of :func:`stft` (weighted overlap-add), batched over leading axes.

    Parameters
    ----------
    X : np.ndarray or torch.Tensor [shape=(..., n_fft // 2 + 1, n_frames)], complex
    length : int
        Number of output samples (the original signal length).

    Returns
    -------
    x : same kind as ``X`` [shape=(..., length)], real
    """
    _check_params(n_fft, hop_length, window)
    if length < 1:
        raise ParameterError(f"length={length} must be >= 1")
    t, was_numpy = _as_tensor(X)
    if not t.is_complex():
        raise ParameterError(f"X dtype={t.dtype} must be complex")
    if t.shape[-2] != n_fft // 2 + 1:
        raise ParameterError(f"X has {t.shape[-2]} bins; n_fft={n_fft} needs {n_fft // 2 + 1}")
    batch_shape = t.shape[:-2]
    flat = t.reshape(-1, *t.shape[-2:])
    real_dtype = torch.float64 if t.dtype == torch.complex128 else torch.float32
    win = make_window(window, n_fft, device=t.device, dtype=real_dtype)
    covered = hop_length * (flat.shape[-1] - 1) + n_fft - n_fft // 2  # samples the frames reach
    y = torch.istft(
        flat, n_fft, hop_length=hop_length, window=win, center=True, length=min(length, covered)
    )
    if length > covered:  # zero tail, without torch's warning about padding
        y = torch.nn.functional.pad(y, (0, length - covered))
    y = y.reshape(*batch_shape, length)
    return y.numpy() if was_numpy else y


class Stft(nn.Module):
    """Module form of :func:`stft`, configured by a :class:`StftConfig`."""

    def __init__(self, config: StftConfig | None = None) -> None:
        super().__init__()
        self.config = config or StftConfig()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        return stft(x, n_fft=c.n_fft, hop_length=c.hop_length, window=c.window)


class Istft(nn.Module):
    """Module form of :func:`istft`."""

    def __init__(self, config: StftConfig | None = None) -> None:
        super().__init__()
        self.config = config or StftConfig()

    def forward(self, X: torch.Tensor, length: int) -> torch.Tensor:
        c = self.config
        return istft(X, length=length, n_fft=c.n_fft, hop_length=c.hop_length, window=c.window)


def level_db_from_magnitudes(mag: np.ndarray, n_samples: int, config: StftConfig) -> float:
    """RMS level (dBFS) of a signal of ``n_samples`` samples from its one-sided STFT magnitudes ``[T, F]``.

    Parseval per frame, ``Σ_k |X_m(k)|² = n_fft · Σ_n w²(n) x²(n + m·hop)`` over all ``n_fft`` bins, and
    overlapping frames covering each sample with ``Σ_m w²(n − m·hop) = Σ w² / hop`` (exact for Hann-family
    windows at hop ≤ n_fft/2, the seeds' setting), give ``Σ x² = Σ_{m,k} |X_m(k)|² / (n_fft · Σ w² / hop)``.
    Reflect-padding at the ends adds a few frames' worth: within 0.1 dB for signals over ~0.5 s.
    """
    if n_samples <= 0 or mag.size == 0:
        raise ParameterError(f"need a non-empty signal (n_samples={n_samples}, mag {mag.shape})")
    power = np.square(np.asarray(mag, dtype=np.float64))
    weights = np.full(
        power.shape[-1], 2.0
    )  # bins 1 .. n_fft/2 - 1 stand for their mirror images too
    weights[0] = 1.0
    if config.n_fft % 2 == 0:
        weights[-1] = 1.0
    w2 = float(make_window(config.window, config.n_fft, dtype=torch.float64).square().sum())
    energy = float((power * weights).sum()) / (config.n_fft * w2 / config.hop_length)
    return 10.0 * float(np.log10(max(energy / n_samples, 1e-20)))
