"""Latent-space plots of the emotion VAE (seed 003, figures 4 and 6): σ against μ per latent dimension.

Seed 003 passes every utterance through the encoder and plots, for each latent dimension ``i``, the
posterior standard deviation ``σ_i`` against the mean ``μ_i`` of every item, coloured by its true emotion;
a dimension that separates the emotions shows separate colour clusters. :func:`latent_stats` computes
``(μ, σ)``; :func:`fisher_ratio` scores each dimension (between-class over within-class variance of μ,
0 when the emotions overlap completely); :func:`plot_latent_space` renders the figure as PNG bytes
(matplotlib Agg, no pyplot state, no files); :func:`latent_sections` gives ``batchsep inspect`` its
figures of a trained ``emotion-vae`` on the corpus it was trained on.

Example
-------
>>> mu = np.random.default_rng(0).standard_normal((40, 8))
>>> png = plot_latent_space(mu, np.ones_like(mu), np.arange(40) % 8)
>>> png[:4] == b"\\x89PNG"
True
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from batchsep.errors import ParameterError
from batchsep.models.emotion import EMOTIONS, EmotionVae

_COLOURS = (
    "#7f7f7f", "#17becf", "#ffbf00", "#1f77b4", "#d62728", "#9467bd", "#2ca02c", "#ff7f0e",
)  # fmt: skip


@torch.no_grad()
def latent_stats(
    model: EmotionVae, logmel: np.ndarray | torch.Tensor, *, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation of every item.

    Parameters
    ----------
    model : EmotionVae
    logmel : np.ndarray or torch.Tensor [shape=(n, n_mels, n_frames)]
        The model's inputs (e.g. :meth:`EmotionCorpus.features`).

    Returns
    -------
    mu, sigma : np.ndarray [shape=(n, latent_dim)], float64
        ``sigma = exp(logvar / 2)``.
    """
    if not isinstance(model, EmotionVae):
        raise ParameterError(f"model must be an EmotionVae, got {type(model).__name__}")
    x = torch.as_tensor(logmel, dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        parts = [model.encode(b) for b in x.split(batch_size)]
    finally:
        model.train(was_training)
    mu = torch.cat([p[0] for p in parts]).double().numpy()
    sigma = torch.cat([torch.exp(0.5 * p[1]) for p in parts]).double().numpy()
    return mu, sigma


def fisher_ratio(mu: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per dimension: variance of the class means over the mean within-class variance of ``mu``.

    Parameters
    ----------
    mu : np.ndarray [shape=(n, d)]
    labels : np.ndarray [shape=(n,)], int

    Returns
    -------
    np.ndarray [shape=(d,)], >= 0
        Large when the class means lie far apart relative to the spread inside each class.
    """
    mu, labels = np.asarray(mu, dtype=np.float64), np.asarray(labels)
    if mu.ndim != 2 or labels.shape != (mu.shape[0],):
        raise ParameterError(
            f"mu shape={mu.shape} and labels shape={labels.shape} must be [n, d], [n]"
        )
    classes = np.unique(labels)
    means = np.stack([mu[labels == c].mean(0) for c in classes])
    within = np.stack([mu[labels == c].var(0) for c in classes]).mean(0)
    return means.var(0) / np.maximum(within, 1e-12)


def plot_latent_space(
    mu: np.ndarray,
    sigma: np.ndarray,
    labels: np.ndarray,
    *,
    dims: Sequence[int] | None = None,
    names: Sequence[str] = EMOTIONS,
    title: str = "VAE latent space: σ against μ per dimension",
) -> bytes:
    """One scatter panel per latent dimension, ``σ_i`` against ``μ_i``, coloured by emotion; PNG bytes.

    Parameters
    ----------
    mu, sigma : np.ndarray [shape=(n, d)]
    labels : np.ndarray [shape=(n,)], int in ``[0, len(names))``
    dims : sequence of int, optional
        Dimensions to show (default: all); each panel title gives its :func:`fisher_ratio`.

    Raises
    ------
    ParameterError
        On mismatched shapes, labels out of range, or a dimension out of range.
    """
    mu, sigma, labels = np.asarray(mu), np.asarray(sigma), np.asarray(labels)
    if mu.ndim != 2 or sigma.shape != mu.shape or labels.shape != (mu.shape[0],):
        raise ParameterError(
            f"mu {mu.shape}, sigma {sigma.shape}, labels {labels.shape} must be [n, d], [n, d], [n]"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise ParameterError(f"labels must lie in [0, {len(names)})")
    dims = list(range(mu.shape[1])) if dims is None else [int(d) for d in dims]
    if not dims or min(dims) < 0 or max(dims) >= mu.shape[1]:
        raise ParameterError(f"dims={dims} must be non-empty and lie in [0, {mu.shape[1]})")
    score = fisher_ratio(mu, labels)
    cols = min(4, len(dims))
    rows = -(-len(dims) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.9 * rows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, d in zip(axes, dims):
        for c, name in enumerate(names):
            sel = labels == c
            if sel.any():
                colour = _COLOURS[c % len(_COLOURS)]
                ax.scatter(mu[sel, d], sigma[sel, d], s=7, alpha=0.6, color=colour, label=name)
        ax.set_title(f"z{d + 1}  (Fisher ratio {score[d]:.2f})", fontsize=9)
        ax.set_xlabel(f"μ{d + 1}", fontsize=8)
        ax.set_ylabel(f"σ{d + 1}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(dims) :]:
        ax.set_axis_off()
    handles, text = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, text, loc="outside lower center", ncol=len(names), fontsize=8, markerscale=2
    )
    fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def latent_figure(
    model: EmotionVae, logmel: np.ndarray, labels: np.ndarray, *, dims: Sequence[int] | None = None
) -> tuple[bytes, np.ndarray]:
    """``(png, fisher_ratio per dimension)`` of ``model`` on labelled inputs ``[n, n_mels, n_frames]``."""
    mu, sigma = latent_stats(model, logmel)
    return plot_latent_space(mu, sigma, labels, dims=dims), fisher_ratio(mu, labels)


def latent_sections(
    model: EmotionVae,
    *,
    features: Mapping[str, Any] | None,
    metrics: Mapping[str, Any],
    data_uri: str | None = None,
) -> list[tuple[str, bytes, str]]:
    """``batchsep inspect`` figures of an ``emotion-vae``: ``(file name, PNG, caption)`` per figure.

    The corpus is ``data_uri``, else the one the model was trained on (``metrics["data"]["data_uri"]``);
    when it is not reachable (a shipped model on another machine) there is no figure.
    """
    from batchsep.dsp.mel import EmotionFeatureConfig
    from batchsep.io import storage
    from batchsep.training.data.emotion import load_emotion_corpus

    data = metrics.get("data") or {}
    uri = data_uri or data.get("data_uri")
    if not uri or not storage.exists(uri):
        return []
    config = EmotionFeatureConfig.from_dict(dict(features)) if features else None
    corpus = load_emotion_corpus(uri, config)
    held_out = set(data.get("valid_actors", [])) | set(data.get("test_actors", []))
    out = []
    for name, sel, who in (
        ("latent_all.png", np.ones(len(corpus), bool), "every utterance"),
        ("latent_held_out.png", np.isin(corpus.actors, sorted(held_out)), "held-out actors only"),
    ):
        if not sel.any():
            continue
        part = corpus.subset(np.flatnonzero(sel))
        png, score = latent_figure(model, part.features(), part.labels)
        ratios = ", ".join(f"z{i + 1} {r:.2f}" for i, r in enumerate(score))
        actors = sorted({int(a) for a in part.actors})
        caption = (
            f"σ against μ of each latent dimension for {who} ({len(part)} utterances, actors "
            f"{actors}), coloured by true emotion (seed 003, fig. 4). Fisher ratio per dimension "
            f"(between-emotion over within-emotion variance of μ): {ratios}."
        )
        out.append((name, png, caption))
    return out
