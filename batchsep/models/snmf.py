"""The SNMF enhancer: fixed speech and noise dictionaries learnt by sparse NMF, masks by test-time inference.

The algorithms (fit, inference, ISTA, the β-divergence) are in :mod:`batchsep.models.nmf`.

Example
-------
>>> cfg = SnmfConfig(n_freq=20, rank_speech=4, rank_noise=4, n_iter_fit=20, n_iter_infer=10)
>>> cfg.rank_speech + cfg.rank_noise
8
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from batchsep.config import Config, register_config
from batchsep.errors import BatchsepError, ParameterError
from batchsep.models.base import MODELS, MaskModel
from batchsep.models.losses import msa, psa
from batchsep.models.nmf import (
    _check_beta,
    _check_nonneg_scalar,
    snmf_fit,
    snmf_infer,
)


@register_config("snmf")
@dataclass(frozen=True)
class SnmfConfig(Config):
    """Sparse-NMF enhancer: dictionary sizes, β, sparsity and iteration counts (seed 001)."""

    n_freq: int = 257
    rank_speech: int = 100
    rank_noise: int = 100
    beta: float = 2.0
    sparsity: float = 1.0
    n_iter_fit: int = 1000
    n_iter_infer: int = 200
    mask_eps: float = 1e-8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_freq", "rank_speech", "rank_noise", "n_iter_fit"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name}={getattr(self, name)} must be >= 1")
        if self.n_iter_infer < 0:
            raise ParameterError(f"n_iter_infer={self.n_iter_infer} must be >= 0")
        _check_beta(self.beta)
        _check_nonneg_scalar("sparsity", self.sparsity)
        _check_nonneg_scalar("mask_eps", self.mask_eps, positive=True)


def _as_frames(mags: torch.Tensor | Sequence[torch.Tensor], n_freq: int, name: str) -> torch.Tensor:
    """Concatenate spectrograms ``[F, T_i]`` (a list, or one ``[..., F, T]`` tensor) into ``[F, N]``."""
    items = [mags] if isinstance(mags, torch.Tensor) else list(mags)
    if not items:
        raise ParameterError(f"{name} is empty")
    frames = []
    for i, m in enumerate(items):
        if not isinstance(m, torch.Tensor) or m.ndim < 2 or m.shape[-2] != n_freq:
            shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise ParameterError(f"{name}[{i}] has shape {shape}; expected (..., {n_freq}, T)")
        frames.append(m.movedim(-2, 0).reshape(n_freq, -1))
    return torch.cat(frames, dim=1)


@MODELS.register("snmf")
class SnmfEnhancer(MaskModel):
    """Sparse-NMF speech enhancer: fixed speech/noise dictionaries, test-time MU inference.

    Buffers ``W_speech`` [F, rank_speech] and ``W_noise`` [F, rank_noise] (unit-norm columns) and
    ``fitted``; no trainable parameters. ``forward(mag [B, F, T]) -> mask [B, F, T]``.
    """

    name = "snmf"
    config_class = SnmfConfig
    config: SnmfConfig
    W_speech: torch.Tensor
    W_noise: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, config: SnmfConfig | None = None) -> None:
        super().__init__(config or SnmfConfig())
        c = self.config
        self.register_buffer("W_speech", torch.zeros(c.n_freq, c.rank_speech))
        self.register_buffer("W_noise", torch.zeros(c.n_freq, c.rank_noise))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def W(self) -> torch.Tensor:
        """Concatenated dictionary ``[W_speech, W_noise]`` [F, R]."""
        return torch.cat([self.W_speech, self.W_noise], dim=1)

    def fit_dictionaries(
        self,
        clean_mags: torch.Tensor | Sequence[torch.Tensor],
        noise_or_noisy_mags: torch.Tensor | Sequence[torch.Tensor],
        *,
        on_iter: Callable[[str, int, float], None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Learn ``W_speech`` on clean speech, then ``W_noise`` on noise (or noisy speech).

        ``on_iter(dictionary, i, objective)`` (``"speech"`` then ``"noise"``) is called after each iteration.

        Parameters
        ----------
        clean_mags, noise_or_noisy_mags : torch.Tensor [shape=(..., F, T)] or list of [F, T_i]
            Magnitude spectrograms; all frames are pooled. Unpadded lists are preferable.

        Returns
        -------
        dict
            ``{"speech": objective, "noise": objective}`` per iteration (float64).
        """
        c = self.config
        dev = self.W_speech.device
        Vs = _as_frames(clean_mags, c.n_freq, "clean_mags").to(dev, self.W_speech.dtype)
        Vn = _as_frames(noise_or_noisy_mags, c.n_freq, "noise_or_noisy_mags").to(Vs)
        beta, mu, n_iter = c.beta, c.sparsity, c.n_iter_fit

        def report(name: str) -> Callable[[int, float], None] | None:
            return None if on_iter is None else (lambda i, obj: on_iter(name, i, obj))

        rs = snmf_fit(Vs, rank=c.rank_speech, beta=beta, sparsity=mu, n_iter=n_iter, seed=c.seed,
                      on_iter=report("speech"))  # fmt: skip
        rn = snmf_fit(
            Vn,
            rank=c.rank_noise,
            beta=beta,
            sparsity=mu,
            n_iter=n_iter,
            W_fixed=rs.W,
            seed=c.seed + 1,
            on_iter=report("noise"),
        )
        self.W_speech.copy_(rs.W)
        self.W_noise.copy_(rn.W[:, c.rank_speech :])
        self.fitted.fill_(True)
        return {"speech": rs.objective, "noise": rn.objective}

    def activations(self, mag: torch.Tensor, *, n_iter: int | None = None) -> torch.Tensor:
        """Test-time activations H [B, R, T] of ``mag`` [B, F, T] (speech rows first)."""
        c = self.config
        if not bool(self.fitted):
            raise BatchsepError("SnmfEnhancer is not fitted: call fit_dictionaries() first")
        if mag.ndim != 3 or mag.shape[1] != c.n_freq:
            raise ParameterError(f"mag has shape {tuple(mag.shape)}; expected (B, {c.n_freq}, T)")
        n = c.n_iter_infer if n_iter is None else n_iter
        return snmf_infer(mag, self.W, beta=c.beta, sparsity=c.sparsity, n_iter=n)

    def forward(self, mag: torch.Tensor, *, n_iter: int | None = None) -> torch.Tensor:
        """Mask ``W_s H_s / (W_s H_s + W_n H_n)`` [B, F, T] for mixture magnitudes ``mag`` [B, F, T]."""
        H = self.activations(mag, n_iter=n_iter)
        rs = self.config.rank_speech
        W = self.W.to(mag)
        S = W[:, :rs] @ H[:, :rs]
        N = W[:, rs:] @ H[:, rs:]
        return S / (S + N + self.config.mask_eps)

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """MSA loss of the SNMF mask, for evaluation only (no gradient: SNMF is fitted, not trained)."""
        with torch.no_grad():
            mask = self(batch["noisy_mag"])
            loss = msa(mask, batch["noisy_mag"], batch["clean_mag"], batch.get("lengths"))
            logs = {"msa": float(loss)}
            if "noisy_stft" in batch and "clean_stft" in batch:
                p = psa(mask, batch["noisy_stft"], batch["clean_stft"], batch.get("lengths"))
                logs["psa"] = float(p)
        return loss, logs
