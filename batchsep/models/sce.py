"""SCE+MI (seed 004): source-contrastive embeddings with a mask-inference head.

Every time-frequency bin gets a unit embedding ``e_tf`` from the BLSTM trunk of
:mod:`batchsep.models.embedding`. Each source of a mixture has a learned vector ``v_src`` (an
``nn.Embedding`` row); with ``y_src,tf = +1`` where that source dominates the bin and ``−1`` elsewhere,
the source-contrastive loss averages ``−log σ(y_src,tf·⟨v_src, e_tf⟩)`` over the mixture's two sources
(speech, noise) and over the valid non-silent bins. The table holds one generic speech and one generic
noise vector, plus ``n_speakers`` per-speaker and ``n_noises`` per-noise vectors used when the batch
carries ``speaker_idx`` / ``noise_idx`` (as in the paper, where every training speaker and noise has its
own vector). Joint loss: ``(1 − α)·SCE + α·MSA`` (α = 0.5 by default).

k-means inference labels as speech the cluster whose centroid ``c`` maximises ``⟨c, v̂_speech − v̂_noise⟩``,
where ``v̂_speech`` is the generic speech vector, or the mean of the unit per-speaker vectors when
``n_speakers > 0`` (likewise for noise).

Reference size (seed 004): 4 BLSTM layers × 500 units, D = 40, F = 257: 31 350 442 parameters.

Example
-------
>>> model = SceModel(SceConfig(n_freq=6, n_layers=1, hidden=4, embed_dim=3, inference="kmeans"))
>>> sorted(set(model(torch.rand(1, 6, 5)).flatten().tolist())) in ([0.0, 1.0], [0.0], [1.0])
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as tnf

from batchsep.config import Config, register_config
from batchsep.errors import ParameterError
from batchsep.models.base import MODELS
from batchsep.models.embedding import EPS, EmbeddingConfig, EmbeddingMaskModel, _check_int


@register_config("sce")
@dataclass(frozen=True)
class SceConfig(EmbeddingConfig):
    """Configuration of :class:`SceModel` (see :class:`EmbeddingConfig` for the shared fields).

    Parameters
    ----------
    alpha : float
        MI-loss weight in ``(1 − α)·SCE + α·MSA`` (default 0.5).
    n_speakers : int
        Per-speaker source vectors (0: one generic speech vector only).
    n_noises : int
        Per-noise source vectors (0: one generic noise vector only).
    normalize_vectors : bool
        Use unit-norm source vectors in the loss (Magnolia's ``normalize`` option).
    """

    alpha: float = 0.5
    n_speakers: int = 0
    n_noises: int = 0
    normalize_vectors: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, ("n_speakers", "n_noises"), minimum=0)


def sce_loss(
    emb: torch.Tensor,
    labels: torch.Tensor,
    speech_vec: torch.Tensor,
    noise_vec: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Source-contrastive loss for two sources per mixture (seed 004, Eq. 1).

    ``ℓ_tf = ½[−log σ(y_tf⟨v_s, e_tf⟩) − log σ(−y_tf⟨v_n, e_tf⟩)]`` with ``y_tf = +1`` where speech
    dominates and ``−1`` where noise does; the loss is ``Σ w_tf ℓ_tf / Σ w_tf`` over the whole batch.

    Parameters
    ----------
    emb : torch.Tensor [shape=(B, ..., D)]
        Embeddings (any bin layout after the batch axis).
    labels : torch.Tensor [shape=(B, ...)]
        1 where speech dominates, 0 where noise does.
    speech_vec, noise_vec : torch.Tensor [shape=(B, D)]
        Source vectors of each item's speech and noise.
    weights : torch.Tensor [shape=(B, ...)]
        Bin weights (0 for padded or silent bins).

    Returns
    -------
    torch.Tensor [shape=()]
        0 when every weight is 0.

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
    if speech_vec.shape != (n_batch, dim) or noise_vec.shape != (n_batch, dim):
        raise ParameterError(
            f"speech_vec shape={tuple(speech_vec.shape)} and noise_vec shape="
            f"{tuple(noise_vec.shape)} must be (B, D)=({n_batch}, {dim})"
        )
    e = emb.reshape(n_batch, -1, dim)
    y = 2.0 * labels.reshape(n_batch, -1).to(e.dtype) - 1.0
    w = weights.reshape(n_batch, -1).to(e.dtype)
    dot_s = (e * speech_vec[:, None, :]).sum(-1)
    dot_n = (e * noise_vec[:, None, :]).sum(-1)
    per_bin = 0.5 * (tnf.softplus(-y * dot_s) + tnf.softplus(y * dot_n))  # −log σ(u) = softplus(−u)
    return (per_bin * w).sum() / w.sum().clamp_min(EPS)


@MODELS.register("sce")
class SceModel(EmbeddingMaskModel):
    """SCE+MI: BLSTM embeddings trained against learned source vectors, plus an MI ratio-mask head.

    Parameters
    ----------
    config : SceConfig
    """

    name: ClassVar[str] = "sce"
    config_class: ClassVar[type[Config]] = SceConfig
    embedding_loss_name: ClassVar[str] = "sce"
    config: SceConfig

    SPEECH: ClassVar[int] = 0
    NOISE: ClassVar[int] = 1

    def __init__(self, config: SceConfig) -> None:
        if not isinstance(config, SceConfig):
            raise ParameterError(f"SceModel needs an SceConfig, got {type(config).__name__}")
        super().__init__(config)
        self.source_vectors = nn.Embedding(
            2 + config.n_speakers + config.n_noises, config.embed_dim
        )
        nn.init.normal_(self.source_vectors.weight, std=math.sqrt(2.0 / config.embed_dim))

    def _vectors(self) -> torch.Tensor:
        v = self.source_vectors.weight
        return tnf.normalize(v, dim=-1, eps=EPS) if self.config.normalize_vectors else v

    def _source_vectors(
        self, batch: dict[str, Any], key: str, *, n: int, offset: int, generic: int, size: int
    ) -> torch.Tensor:
        """Rows ``[size, D]``: per-source (``batch[key]`` + offset), their mean for ``-1``
        (a source unseen in training), or the generic row (no per-source vectors or no ``key``)."""
        v = self._vectors()
        idx = batch.get(key)
        if n == 0 or idx is None:
            return v[generic].expand(size, -1)
        idx = torch.as_tensor(idx).to(v.device)
        if idx.shape != (size,) or idx.is_floating_point():
            raise ParameterError(
                f"{key} shape={tuple(idx.shape)} dtype={idx.dtype} must be integer (B,)=({size},)"
            )
        if int(idx.min()) < -1 or int(idx.max()) >= n:
            raise ParameterError(f"{key}={idx.tolist()} must lie in [0, {n}) (or be -1: unseen)")
        rows = v[idx.clamp_min(0).to(torch.int64) + offset]
        unseen = (idx < 0)[:, None]
        if not bool(unseen.any()):
            return rows
        return torch.where(unseen, v[offset : offset + n].mean(0).expand_as(rows), rows)

    def batch_vectors(
        self, batch: dict[str, Any], n_batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech and noise source vectors ``[B, D]`` of a batch.

        Per-speaker (per-noise) rows when ``n_speakers`` (``n_noises``) > 0 and the batch carries
        ``speaker_idx`` (``noise_idx``) int64 [B] in ``[0, n_speakers)``, where ``-1`` (a source
        unseen in training, e.g. a validation speaker) takes the mean per-source vector; the generic
        rows otherwise.
        """
        cfg = self.config
        speech = self._source_vectors(
            batch, "speaker_idx", n=cfg.n_speakers, offset=2, generic=self.SPEECH, size=n_batch
        )
        noise = self._source_vectors(
            batch,
            "noise_idx",
            n=cfg.n_noises,
            offset=2 + cfg.n_speakers,
            generic=self.NOISE,
            size=n_batch,
        )
        return speech, noise

    def reference_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech and noise directions ``[D]`` used to label k-means clusters."""
        cfg = self.config
        v = self._vectors()
        unit = tnf.normalize(v, dim=-1, eps=EPS)
        speech = unit[2 : 2 + cfg.n_speakers].mean(0) if cfg.n_speakers else unit[self.SPEECH]
        noise = unit[2 + cfg.n_speakers :].mean(0) if cfg.n_noises else unit[self.NOISE]
        return speech, noise

    def embedding_loss(
        self,
        emb: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor,
        batch: dict[str, Any],
    ) -> torch.Tensor:
        speech_vec, noise_vec = self.batch_vectors(batch, emb.shape[0])
        return sce_loss(emb, labels, speech_vec, noise_vec, weights)

    def speech_cluster(
        self,
        *,
        centroids: torch.Tensor,
        assign: torch.Tensor,
        mask: torch.Tensor,
        mag: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """The cluster whose centroid is most aligned with ``v̂_speech − v̂_noise``."""
        speech, noise = self.reference_vectors()
        return (centroids @ (speech - noise)).argmax(dim=1)
