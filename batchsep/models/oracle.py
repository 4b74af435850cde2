"""Oracle masks (seed 002): IBM, IRM, IAM and PSF computed from the references, as upper bounds.

These "models" need the clean speech, so they only serve as upper bounds in evaluation. With ``S`` the
clean STFT, ``N`` the noise STFT and ``X = S + N`` the mixture:

- ``ibm``: 1 where |S|² > |N|² (0 dB threshold), else 0
- ``irm``: |S| / (|S| + |N|)
- ``iam``: |S| / |X| truncated to [0, 1]
- ``psf``: |S|/|X|·cos(θ_X − θ_S) truncated to [0, 1]

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> clean = rng.standard_normal(8000).astype(np.float32)
>>> noisy = clean + 0.1 * rng.standard_normal(8000).astype(np.float32)
>>> oracle_enhance(noisy, clean, kind="psf").shape
(8000,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from batchsep.config import Config, register_config
from batchsep.dsp.masks import iam, ibm, irm, psf
from batchsep.dsp.stft import StftConfig, istft, stft
from batchsep.dsp.validate import ArrayLike, validate_audio
from batchsep.errors import BatchsepError, ParameterError
from batchsep.models.base import MODELS, BatchsepModel

OracleKind = Literal["ibm", "irm", "iam", "psf"]
ORACLE_KINDS: tuple[str, ...] = ("ibm", "irm", "iam", "psf")


def _to_tensor(a: ArrayLike) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a


def _check_kind(kind: str) -> None:
    if kind not in ORACLE_KINDS:
        raise ParameterError(f"kind={kind!r} must be one of {list(ORACLE_KINDS)}")


def oracle_mask(kind: str, S: Any, N: Any) -> Any:
    """Oracle mask ``kind`` from the clean STFT ``S`` and the noise STFT ``N``.

    Parameters
    ----------
    kind : {"ibm", "irm", "iam", "psf"}
    S, N : np.ndarray or torch.Tensor [shape=(..., F, T)], complex
        Clean-speech and noise STFTs; the mixture is ``S + N``.

    Returns
    -------
    Same kind as ``S`` [shape=(..., F, T)], real, in [0, 1]. Apply as ``mask * (S + N)``.

    Raises
    ------
    ParameterError
        On an unknown ``kind`` or mismatched shapes.
    """
    _check_kind(kind)
    if kind == "ibm":
        return ibm(S, N)
    if kind == "irm":
        return irm(S, N)
    if kind == "iam":
        return iam(S, S + N)
    return psf(S, S + N)


def oracle_enhance(
    noisy: ArrayLike,
    clean: ArrayLike,
    *,
    kind: str = "psf",
    stft_config: StftConfig | None = None,
) -> ArrayLike:
    """Enhance ``noisy`` with the oracle mask ``kind`` computed from ``clean`` (noise = noisy − clean).

    Parameters
    ----------
    noisy, clean : np.ndarray or torch.Tensor [shape=(..., n_samples)], real floating point
        Mixture and its clean speech, same shape.
    kind : {"ibm", "irm", "iam", "psf"}
    stft_config : StftConfig, optional
        Analysis/synthesis STFT (default: 512-point sqrt-Hann, hop 128).

    Returns
    -------
    Same kind and dtype as ``noisy`` [shape=(..., n_samples)]
        ``istft(mask · STFT(noisy))`` trimmed to the input length (no delay).

    Raises
    ------
    ParameterError
        On an unknown ``kind``, mismatched shapes, or invalid audio.
    """
    _check_kind(kind)
    validate_audio(noisy, name="noisy")
    validate_audio(clean, name="clean")
    if tuple(noisy.shape) != tuple(clean.shape):
        raise ParameterError(
            f"noisy shape {tuple(noisy.shape)} != clean shape {tuple(clean.shape)}"
        )
    c = stft_config or StftConfig()
    was_numpy = isinstance(noisy, np.ndarray)
    x = _to_tensor(noisy)
    s = _to_tensor(clean).to(x)
    n_fft, hop, window = c.n_fft, c.hop_length, c.window
    X = torch.as_tensor(stft(x, n_fft=n_fft, hop_length=hop, window=window))
    S = torch.as_tensor(stft(s, n_fft=n_fft, hop_length=hop, window=window))
    mask = oracle_mask(kind, S, X - S)
    y = istft(mask * X, length=x.shape[-1], n_fft=n_fft, hop_length=hop, window=window)
    y = torch.as_tensor(y).to(x.dtype)
    return y.numpy() if was_numpy else y


@register_config("oracle")
@dataclass(frozen=True)
class OracleConfig(Config):
    """Which oracle mask an :class:`OracleEnhancer` computes."""

    kind: OracleKind = "psf"

    def __post_init__(self) -> None:
        _check_kind(self.kind)


@MODELS.register("oracle")
class OracleEnhancer(BatchsepModel):
    """Oracle-mask "model": ``forward(noisy_stft, clean_stft) -> mask`` [B, F, T] (needs references).

    Not a :class:`~batchsep.models.base.MaskModel` (it cannot work from the mixture alone) and not
    trainable; it has no state, so it round-trips through serialize/deserialize via its config.
    """

    name = "oracle"
    config_class = OracleConfig
    config: OracleConfig

    def __init__(self, config: OracleConfig | None = None) -> None:
        super().__init__(config or OracleConfig())

    def forward(self, noisy_stft: torch.Tensor, clean_stft: torch.Tensor) -> torch.Tensor:
        """Mask [..., F, T] from the mixture and clean complex STFTs [..., F, T]."""
        if not (torch.is_tensor(noisy_stft) and noisy_stft.is_complex()):
            raise ParameterError("noisy_stft must be a complex torch.Tensor")
        if not (torch.is_tensor(clean_stft) and clean_stft.is_complex()):
            raise ParameterError("clean_stft must be a complex torch.Tensor")
        return oracle_mask(self.config.kind, clean_stft, noisy_stft - clean_stft)

    def enhance(
        self, noisy: ArrayLike, clean: ArrayLike, *, stft_config: StftConfig | None = None
    ) -> ArrayLike:
        """Waveform form: :func:`oracle_enhance` with this model's ``kind``."""
        return oracle_enhance(noisy, clean, kind=self.config.kind, stft_config=stft_config)

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Oracle masks are computed, not trained."""
        raise BatchsepError(f"oracle model (kind={self.config.kind!r}) is not trainable")
