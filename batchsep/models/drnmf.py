"""Deep recurrent NMF (DR-NMF, seed 001): warm-start ISTA for sparse NMF unfolded into a network.

For every frame ``x_t`` [F] the network runs K layers ``h ← ReLU(h + W_kᵀ(x_t − W_k h)/α_k − λ_k/α_k)``
starting from the previous frame's output ``h_{t−1}`` (``h_{−1} = 0``): the warm start is the recurrence.
Each layer has its own (untied) dictionary ``W_k`` [F, R] and scalars ``α_k`` (inverse step size) and
``λ_k`` (sparsity). All are kept positive by optimising logs; ``W_k = exp(Ŵ_k)`` column-normalised. The mask
is ``W_s h_s / (W_s h_s + W_n h_n + ε)`` with the speech/noise column blocks of the last layer's ``W_K``.
Initialised from sparse NMF (:meth:`DrnmfEnhancer.from_snmf`) every layer reproduces ISTA exactly.

Per layer the update is affine before the ReLU, ``h A_k + (W_kᵀ x_t − λ_k)/α_k`` with
``A_k = I − W_kᵀW_k/α_k``: ``A_k`` and the input terms for all frames are computed once, outside the time
loop, which then costs K small ``[B, R] @ [R, R]`` products per frame.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from batchsep.config import Config, register_config
from batchsep.errors import BatchsepError, ParameterError
from batchsep.models.base import MODELS, MaskModel
from batchsep.models.losses import mask_loss
from batchsep.models.nmf import normalize_columns
from batchsep.models.snmf import SnmfEnhancer

W_FLOOR = 1e-8
"""Smallest dictionary entry before taking logs (multiplicative updates can produce exact zeros)."""


@register_config("drnmf")
@dataclass(frozen=True)
class DrnmfConfig(Config):
    """DR-NMF sizes and initial ISTA parameters (reference: K ∈ {2, 5}, λ = 1, α = 50 for r = 100)."""

    n_freq: int = 257
    rank_speech: int = 100
    rank_noise: int = 100
    n_layers: int = 5
    lam: float = 1.0
    alpha: float = 50.0
    loss: Literal["msa", "psa"] = "msa"
    mask_eps: float = 1e-8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_freq", "rank_speech", "rank_noise", "n_layers"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("lam", "alpha", "mask_eps"):
            v = getattr(self, name)
            if not (0 < v < math.inf):
                raise ParameterError(f"{name}={v!r} must be finite and > 0")
        if self.loss not in ("msa", "psa"):
            raise ParameterError(f"loss={self.loss!r} must be one of ['msa', 'psa']")

    @property
    def rank(self) -> int:
        """Total number of atoms ``rank_speech + rank_noise``."""
        return self.rank_speech + self.rank_noise


def lipschitz_constant(W: torch.Tensor) -> float:
    """Largest eigenvalue of ``WᵀW`` for ``W`` [F, R]: the smallest α for which ISTA converges."""
    return float(torch.linalg.matrix_norm(W.double(), ord=2) ** 2)


@MODELS.register("drnmf")
class DrnmfEnhancer(MaskModel):
    """DR-NMF mask estimator: ``forward(mag [B, F, T]) -> mask [B, F, T]`` in [0, 1].

    Parameters (all trainable): ``log_W`` [K, F, R], ``log_alpha`` [K], ``log_lam`` [K]. Speech atoms
    are the first ``rank_speech`` columns. Causal: frame t depends on frames <= t only, so end padding
    never changes valid frames.
    """

    name = "drnmf"
    config_class = DrnmfConfig
    config: DrnmfConfig

    def __init__(self, config: DrnmfConfig | None = None) -> None:
        super().__init__(config or DrnmfConfig())
        c = self.config
        gen = torch.Generator().manual_seed(c.seed)
        W0 = normalize_columns(torch.rand(c.n_freq, c.rank, generator=gen) + 0.1)
        self.log_W = nn.Parameter(W0.log().expand(c.n_layers, -1, -1).clone())
        self.log_alpha = nn.Parameter(torch.full((c.n_layers,), math.log(c.alpha)))
        self.log_lam = nn.Parameter(torch.full((c.n_layers,), math.log(c.lam)))

    @classmethod
    def from_snmf(
        cls,
        source: SnmfEnhancer | torch.Tensor,
        *,
        lam: float | None = None,
        alpha: float | None = None,
        n_layers: int = 5,
        rank_speech: int | None = None,
        loss: Literal["msa", "psa"] = "msa",
    ) -> DrnmfEnhancer:
        """A DR-NMF network whose every layer is one ISTA iteration for the given dictionary.

        Parameters
        ----------
        source : SnmfEnhancer or torch.Tensor [shape=(F, R)]
            A fitted SNMF enhancer, or a dictionary (speech columns first; then pass ``rank_speech``).
        lam : float, optional
            Sparsity λ; default the enhancer's ``sparsity``, or 1.
        alpha : float, optional
            Inverse step size α; default the Lipschitz constant ‖W‖₂² (rounded up by 1 %). A value
            below it triggers a warning (ISTA may then diverge).
        n_layers : int
            K, the number of unfolded iterations per frame.
        rank_speech : int, optional
            Number of speech columns when ``source`` is a tensor.
        loss : {"msa", "psa"}
            Training loss.

        Raises
        ------
        ParameterError
            On an unfitted enhancer, bad shapes or a missing ``rank_speech``.
        """
        if isinstance(source, SnmfEnhancer):
            if not bool(source.fitted):
                raise BatchsepError("SnmfEnhancer is not fitted: call fit_dictionaries() first")
            W = source.W.detach()
            rank_speech = source.config.rank_speech
            lam = source.config.sparsity if lam is None else lam
        else:
            W = source.detach()
            if W.ndim != 2 or rank_speech is None or not 0 < rank_speech < W.shape[1]:
                raise ParameterError(
                    f"a dictionary of shape {tuple(W.shape)} needs rank_speech in "
                    f"[1, R-1]; got rank_speech={rank_speech}"
                )
            if not bool(torch.isfinite(W).all()) or bool((W < 0).any()):
                raise ParameterError("dictionary W must be finite and nonnegative")
        W = normalize_columns(W.double().clamp_min(W_FLOOR))
        lip = lipschitz_constant(W)
        if alpha is None:
            alpha = 1.01 * lip
        elif alpha < lip:
            warnings.warn(
                f"alpha={alpha:g} is below the Lipschitz constant {lip:g} of W: ISTA may diverge",
                stacklevel=2,
            )
        config = DrnmfConfig(
            n_freq=W.shape[0],
            rank_speech=rank_speech,
            rank_noise=W.shape[1] - rank_speech,
            n_layers=n_layers,
            lam=1.0 if lam is None else float(lam),
            alpha=float(alpha),
            loss=loss,
        )
        model = cls(config)
        with torch.no_grad():
            model.log_W.copy_(W.log().expand(n_layers, -1, -1))
        return model

    def dictionaries(self) -> torch.Tensor:
        """Per-layer dictionaries ``W_k`` [K, F, R], nonnegative with unit-norm columns."""
        return normalize_columns(self.log_W.exp())

    def parameter_count(self) -> int:
        """Number of trainable scalars (K·F·R + 2K)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def activations(
        self, mag: torch.Tensor, *, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network: activations of the last layer per frame.

        Parameters
        ----------
        mag : torch.Tensor [shape=(B, F, T)]
            Mixture magnitudes (nonnegative).
        h0 : torch.Tensor [shape=(B, R)], optional
            State before frame 0 (zeros by default); pass the previous chunk's state to stream.

        Returns
        -------
        H : torch.Tensor [shape=(B, R, T)]
        W : torch.Tensor [shape=(K, F, R)]
            The dictionaries used (the last one reconstructs the sources).
        """
        c = self.config
        if mag.ndim != 3 or mag.shape[1] != c.n_freq:
            raise ParameterError(f"mag has shape {tuple(mag.shape)}; expected (B, {c.n_freq}, T)")
        B, _, T = mag.shape
        if h0 is not None and tuple(h0.shape) != (B, c.rank):
            raise ParameterError(f"h0 has shape {tuple(h0.shape)}; expected ({B}, {c.rank})")
        W = self.dictionaries().to(mag.dtype)
        alpha = self.log_alpha.exp().to(mag.dtype)
        lam = self.log_lam.exp().to(mag.dtype)
        # A_k = I − W_kᵀW_k/α_k  [K, R, R];  U[t, k] = (W_kᵀ x_t − λ_k)/α_k  [T, K, B, R]
        eye = torch.eye(c.rank, dtype=mag.dtype, device=mag.device)
        A = (eye - (W.transpose(1, 2) @ W) / alpha[:, None, None]).unbind(0)
        WX = mag.transpose(1, 2).reshape(B * T, c.n_freq) @ W.transpose(0, 1).reshape(c.n_freq, -1)
        U = (WX.reshape(B, T, c.n_layers, c.rank) - lam[:, None]) / alpha[:, None]
        h = mag.new_zeros(B, c.rank) if h0 is None else h0.to(mag)
        out = []
        for u_t in U.permute(1, 2, 0, 3).unbind(0):  # the recurrence: sequential over frames
            for A_k, u_tk in zip(A, u_t.unbind(0)):
                h = torch.addmm(u_tk, h, A_k).relu_()
            out.append(h)
        if not out:
            return mag.new_zeros(B, c.rank, 0), W
        return torch.stack(out, dim=-1), W

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        """Mask ``W_s h_s / (W_s h_s + W_n h_n + ε)`` [B, F, T] for ``mag`` [B, F, T]."""
        H, W = self.activations(mag)
        rs = self.config.rank_speech
        Wk = W[-1]
        S = Wk[:, :rs] @ H[:, :rs]
        N = Wk[:, rs:] @ H[:, rs:]
        return S / (S + N + self.config.mask_eps)

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """MSA (default) or PSA loss of the mask over the valid frames of a padded batch."""
        mask = self(batch["noisy_mag"])
        loss = mask_loss(self.config.loss, mask, batch)
        logs: dict[str, float] = {self.config.loss: float(loss.detach())}
        logs["alpha_mean"] = float(self.log_alpha.detach().exp().mean())
        logs["lam_mean"] = float(self.log_lam.detach().exp().mean())
        return loss, logs
