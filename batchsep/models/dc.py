"""DC+MI (seed 004, Chimera of Luo et al. 2017): deep-clustering embeddings with a mask-inference head.

The BLSTM trunk of :mod:`batchsep.models.embedding` gives unit embeddings ``V`` [N, D] for the ``N``
bins of an utterance; ``Y`` [N, 2] is the one-hot (speech, noise) dominance of each bin. The deep
clustering loss ``‖VVᵀ − YYᵀ‖²_F`` is evaluated in its low-rank form
``‖VᵀV‖²_F − 2‖VᵀY‖²_F + ‖YᵀY‖²_F`` (cost O(N·D²), the N×N affinity matrix is never formed), over
the valid non-silent bins only, divided by ``N²`` (the mean over bin pairs) and averaged over the batch.
Joint loss: ``(1 − α)·DC + α·MSA`` with α = 0.1 by default.

k-means inference labels as speech the cluster in which the MI head puts the larger share of the
mixture energy: ``Σ_k (m·|X|)² / Σ_k |X|²``.

Reference size (4 BLSTM layers × 500 units, D = 40, F = 257): 31 350 362 parameters.

Example
-------
>>> model = DcModel(DcConfig(n_freq=6, n_layers=1, hidden=4, embed_dim=3))
>>> model(torch.rand(2, 6, 5)).shape
torch.Size([2, 6, 5])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from batchsep.config import Config, register_config
from batchsep.errors import ParameterError
from batchsep.models.base import MODELS
from batchsep.models.embedding import EmbeddingConfig, EmbeddingMaskModel


@register_config("dc")
@dataclass(frozen=True)
class DcConfig(EmbeddingConfig):
    """Configuration of :class:`DcModel` (see :class:`EmbeddingConfig`); ``alpha`` defaults to 0.1."""

    alpha: float = 0.1


def dc_loss(emb: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Deep clustering loss ``‖VVᵀ − YYᵀ‖²_F / N²`` in low-rank form, averaged over the batch.

    Parameters
    ----------
    emb : torch.Tensor [shape=(B, ..., D)]
        Embeddings ``V`` (any bin layout after the batch axis).
    labels : torch.Tensor [shape=(B, ...)]
        1 where speech dominates, 0 where noise does (``Y = [y, 1 − y]``).
    weights : torch.Tensor [shape=(B, ...)]
        Bin weights; rows of ``V`` and ``Y`` are scaled by ``√w`` (0 removes padded / silent bins)
        and ``N = Σ w`` per item.

    Returns
    -------
    torch.Tensor [shape=()]
        Mean over the items with ``N > 0`` (0 when there is none).

    Raises
    ------
    ParameterError
        On inconsistent shapes.
    """
    n_batch, dim = emb.shape[0], emb.shape[-1]
    if labels.shape != emb.shape[:-1] or weights.shape != labels.shape:
        raise ParameterError(
            f"labels shape={tuple(labels.shape)} and weights shape={tuple(weights.shape)} must "
            f"equal emb shape without D={tuple(emb.shape[:-1])}"
        )
    w = weights.reshape(n_batch, -1, 1).to(emb.dtype)
    root = w.clamp_min(0.0).sqrt()
    v = emb.reshape(n_batch, -1, dim) * root
    y = labels.reshape(n_batch, -1, 1).to(emb.dtype)
    yy1 = torch.cat([y, 1.0 - y], dim=-1) * root  # [B, N, 2]
    vtv = v.transpose(1, 2) @ v  # [B, D, D]
    vty = v.transpose(1, 2) @ yy1  # [B, D, 2]
    yty = yy1.transpose(1, 2) @ yy1  # [B, 2, 2]
    per_item = (vtv**2).sum((1, 2)) - 2.0 * (vty**2).sum((1, 2)) + (yty**2).sum((1, 2))
    n = w.sum(dim=(1, 2))
    used = n > 0
    if not bool(used.any()):
        return emb.sum() * 0.0
    return (per_item[used] / n[used] ** 2).mean()


@MODELS.register("dc")
class DcModel(EmbeddingMaskModel):
    """DC+MI (Chimera): BLSTM embeddings with the deep clustering loss, plus an MI ratio-mask head.

    Parameters
    ----------
    config : DcConfig
    """

    name: ClassVar[str] = "dc"
    config_class: ClassVar[type[Config]] = DcConfig
    embedding_loss_name: ClassVar[str] = "dc"
    config: DcConfig

    def __init__(self, config: DcConfig) -> None:
        if not isinstance(config, DcConfig):
            raise ParameterError(f"DcModel needs a DcConfig, got {type(config).__name__}")
        super().__init__(config)

    def embedding_loss(
        self,
        emb: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor,
        batch: dict[str, Any],
    ) -> torch.Tensor:
        return dc_loss(emb, labels, weights)

    def speech_cluster(
        self,
        *,
        centroids: torch.Tensor,
        assign: torch.Tensor,
        mask: torch.Tensor,
        mag: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """The cluster with the larger MI-speech share of its mixture energy."""
        power = mag**2 * valid[:, :, None].to(mag.dtype)
        speech_power = (mask * mag) ** 2 * valid[:, :, None].to(mag.dtype)
        share = []
        for k in range(centroids.shape[1]):
            in_k = (assign == k).to(mag.dtype)
            share.append(
                (speech_power * in_k).sum((1, 2)) / (power * in_k).sum((1, 2)).clamp_min(1e-12)
            )
        return torch.stack(share, dim=1).argmax(dim=1)
