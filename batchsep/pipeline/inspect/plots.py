"""Figures of ``batchsep inspect``: dictionaries, DR-NMF step sizes and thresholds, SNMF objectives.

Pure functions from arrays to PNG bytes (matplotlib Agg canvas, no pyplot state, no files).

Example
-------
>>> W = np.abs(np.random.default_rng(0).standard_normal((257, 8)))
>>> plot_dictionaries({"before": (W, W)}, sample_rate=16000)[:4] == b"\\x89PNG"
True
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from batchsep.errors import ParameterError


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def atom_order(W: np.ndarray) -> np.ndarray:
    """Column order of ``W`` [F, R] by the frequency of each atom's peak (then by centroid)."""
    W = np.asarray(W, dtype=np.float64)
    f = np.arange(W.shape[0])[:, None]
    centroid = (f * W).sum(0) / np.maximum(W.sum(0), 1e-30)
    return np.lexsort((centroid, W.argmax(axis=0)))


def plot_dictionaries(
    stages: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    sample_rate: int,
    order_from: str | None = None,
    title: str = "",
    floor_db: float = -60.0,
) -> bytes:
    """Heat maps of the speech and noise atoms (columns, in dB) at several stages.

    Parameters
    ----------
    stages : mapping
        ``label -> (W_speech [F, Rs], W_noise [F, Rn])``, one row of the figure each (e.g.
        ``"random init"``, ``"SNMF"``, ``"DR-NMF layer 2"``).
    sample_rate : int
        For the frequency axis (0 .. sample_rate/2).
    order_from : str, optional
        Stage whose atom order (by peak frequency) is used for every row, so a column is the same
        atom before and after training. Default: the first stage.
    title : str
    floor_db : float
        Lowest level shown, relative to each atom's peak.

    Returns
    -------
    bytes
        PNG.

    Raises
    ------
    ParameterError
        No stage, or dictionaries that are not 2-D with matching frequency counts.
    """
    if not stages:
        raise ParameterError("stages must hold at least one (W_speech, W_noise) pair")
    ref = stages[order_from or next(iter(stages))]
    orders = [atom_order(w) for w in ref]
    n_freq = ref[0].shape[0]
    fig = _figure(10.0, 2.4 * len(stages) + 0.6)
    axes = fig.subplots(len(stages), 2, squeeze=False)
    image = None
    for row, (label, pair) in enumerate(stages.items()):
        for col, (W, order, name) in enumerate(zip(pair, orders, ("speech", "noise"))):
            W = np.asarray(W, dtype=np.float64)
            if W.ndim != 2 or W.shape[0] != n_freq:
                raise ParameterError(
                    f"{label} {name} dictionary has shape {W.shape}; expected ({n_freq}, R)"
                )
            W = W[:, order] if W.shape[1] == order.shape[0] else W
            db = 20 * np.log10(np.maximum(W, 1e-12) / np.maximum(W.max(0, keepdims=True), 1e-12))
            ax = axes[row, col]
            image = ax.imshow(
                np.maximum(db, floor_db), origin="lower", aspect="auto", cmap="magma",
                extent=(0, W.shape[1], 0, sample_rate / 2000), vmin=floor_db, vmax=0,
            )  # fmt: skip
            ax.set_title(f"{label}: {name} atoms ({W.shape[1]})", fontsize=9)
            ax.set_ylabel("kHz", fontsize=8)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("atom (sorted by peak frequency)", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="dB re atom peak")
    if title:
        fig.suptitle(title, fontsize=11)
    return _png(fig)


def plot_atom_examples(
    stages: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    sample_rate: int,
    n_atoms: int = 4,
    order_from: str | None = None,
    title: str = "",
) -> bytes:
    """A few atoms (spread over the frequency range of stage ``order_from``) as spectra per stage."""
    if not stages:
        raise ParameterError("stages must hold at least one (W_speech, W_noise) pair")
    first = stages[order_from or next(iter(stages))]
    fig = _figure(10.0, 4.2)
    axes = fig.subplots(2, n_atoms, squeeze=False, sharex=True)
    for row, name in enumerate(("speech", "noise")):
        order = atom_order(first[row])
        picks = order[np.linspace(0, len(order) - 1, n_atoms).round().astype(int)]
        freqs = np.linspace(0, sample_rate / 2000, first[row].shape[0])
        for col, j in enumerate(picks):
            ax = axes[row, col]
            for k, (label, pair) in enumerate(stages.items()):
                W = np.asarray(pair[row], dtype=np.float64)
                if j < W.shape[1]:
                    ax.plot(freqs, W[:, j], lw=1.0, color=f"C{k}", label=label)
            ax.set_title(f"{name} atom {j}", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == 1:
                ax.set_xlabel("kHz", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return _png(fig)


def plot_layer_parameters(
    alpha: Mapping[str, Sequence[float]],
    lam: Mapping[str, Sequence[float]],
    *,
    lipschitz: float | None = None,
    title: str = "",
) -> bytes:
    """DR-NMF per-layer inverse step sizes α_k and thresholds λ_k (e.g. at init and after training).

    Parameters
    ----------
    alpha, lam : mapping
        ``label -> values per layer`` (same layer count for every label).
    lipschitz : float, optional
        Lipschitz constant of the initial dictionary, drawn as a reference line on the α panel.
    """
    if not alpha or not lam:
        raise ParameterError("alpha and lam must each hold at least one labelled series")
    fig = _figure(9.0, 3.4)
    axes = fig.subplots(1, 2)
    for ax, series, name in (
        (axes[0], alpha, "α (inverse step size)"),
        (axes[1], lam, "λ (sparsity)"),
    ):
        for k, (label, values) in enumerate(series.items()):
            layers = np.arange(1, len(values) + 1)
            ax.plot(layers, values, marker="o", color=f"C{k}", label=label)
        ax.set_xlabel("layer k", fontsize=9)
        ax.set_title(name, fontsize=10)
        ax.set_xticks(np.arange(1, len(next(iter(series.values()))) + 1))
        ax.grid(alpha=0.3)
    if lipschitz is not None:
        axes[0].axhline(lipschitz, color="grey", ls=":", label="Lipschitz ‖W‖² (init)")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return _png(fig)


def plot_objectives(objectives: Mapping[str, Sequence[float]], *, title: str = "") -> bytes:
    """SNMF objective per multiplicative-update iteration (log scale), one line per dictionary."""
    if not objectives:
        raise ParameterError("objectives must hold at least one series")
    fig = _figure(6.4, 3.6)
    ax = fig.subplots()
    for k, (label, values) in enumerate(objectives.items()):
        ax.plot(np.arange(len(values)), values, color=f"C{k}", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("iteration", fontsize=9)
    ax.set_ylabel("objective D_β + μ‖H‖₁", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _png(fig)
