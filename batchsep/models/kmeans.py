"""Weighted k-means with a deterministic farthest-point initialisation (the embedding separators' clustering).

:class:`~batchsep.models.embedding.EmbeddingMaskModel` clusters each utterance's time-frequency embeddings
into speech and noise with it (``inference="kmeans"``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as tnf

from batchsep.errors import ParameterError

EPS = 1e-8


def kmeans(
    x: torch.Tensor, weights: torch.Tensor, *, n_clusters: int = 2, n_iter: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted k-means per batch item with a deterministic farthest-point initialisation.

    The first centroid is the point farthest from the weighted mean, each further one the point
    farthest from the centroids chosen so far (only points with weight > 0 are candidates); then
    ``n_iter`` Lloyd iterations, where a cluster left empty keeps its centroid.

    Parameters
    ----------
    x : torch.Tensor [shape=(B, N, D)]
        Points.
    weights : torch.Tensor [shape=(B, N)]
        Non-negative weights; every item needs one positive weight.
    n_clusters : int
    n_iter : int

    Returns
    -------
    assign : torch.Tensor [shape=(B, N)], int64
        Cluster of every point (points of weight 0 included).
    centroids : torch.Tensor [shape=(B, n_clusters, D)]

    Raises
    ------
    ParameterError
        On bad shapes, ``n_clusters < 1``, ``n_iter < 0`` or an item without a positive weight.

    Examples
    --------
    >>> pts = torch.tensor([[[0.0], [0.1], [5.0], [5.2]]])
    >>> kmeans(pts, torch.ones(1, 4))[0].tolist()
    [[1, 1, 0, 0]]
    """
    if x.ndim != 3 or weights.shape != x.shape[:2]:
        raise ParameterError(
            f"x shape={tuple(x.shape)} must be (B, N, D) and weights shape="
            f"{tuple(weights.shape)} (B, N)"
        )
    if n_clusters < 1 or n_iter < 0:
        raise ParameterError(f"n_clusters={n_clusters} must be >= 1 and n_iter={n_iter} >= 0")
    w = weights.to(x.dtype)
    if bool((w.sum(dim=1) <= 0).any()):
        raise ParameterError("every item needs at least one point with weight > 0")
    candidate = w > 0
    mean = (x * w[..., None]).sum(dim=1, keepdim=True) / w.sum(dim=1)[:, None, None]
    far = ((x - mean) ** 2).sum(-1)  # distance to the nearest chosen centre so far
    chosen: list[torch.Tensor] = []
    for _ in range(n_clusters):
        idx = torch.where(candidate, far, torch.full_like(far, -1.0)).argmax(dim=1)
        c = x[torch.arange(x.shape[0]), idx]  # [B, D]
        d = ((x - c[:, None, :]) ** 2).sum(-1)
        far = d if not chosen else torch.minimum(far, d)
        chosen.append(c)
    centroids = torch.stack(chosen, dim=1)  # [B, K, D]
    assign = _assign(x, centroids)
    for _ in range(n_iter):
        onehot = tnf.one_hot(assign, n_clusters).to(x.dtype) * w[..., None]  # [B, N, K]
        counts = onehot.sum(dim=1)  # [B, K]
        sums = onehot.transpose(1, 2) @ x  # [B, K, D]
        centroids = torch.where(
            counts[..., None] > 0, sums / counts.clamp_min(EPS)[..., None], centroids
        )
        assign = _assign(x, centroids)
    return assign, centroids


def _assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    d = (centroids**2).sum(-1)[:, None, :] - 2.0 * x @ centroids.transpose(1, 2)  # + ‖x‖², constant
    return d.argmin(dim=-1)
