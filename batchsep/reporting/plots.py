"""Report figures as PNG bytes (matplotlib, Agg canvas, no pyplot global state, no files).

Every function returns the encoded PNG. When there is nothing to plot (no input-SNR column, all
values NaN ...) the figure says so instead of failing, so a report always renders.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from batchsep.dsp.stft import stft
from batchsep.evaluation.aggregate import SNR_EDGES, by_noise_class, by_snr_bin, per_speaker

PALETTE = ("#3b6fb6", "#e07b39", "#3a9e6f", "#c0434f", "#8a63b8", "#8c6d4f", "#d16fb0", "#6b7785")
"""Colour of the i-th system in every figure (and in the HTML legend chips)."""

METRIC_LABELS = {
    "sdr_i": "SDR improvement (dB)",
    "si_sdr_i": "SI-SDR improvement (dB)",
    "sdr_i_or_si_sdr_i": "SDR (or SI-SDR) improvement (dB)",
    "pesq_i": "PESQ improvement",
    "stoi_i": "STOI improvement",
    "sdr": "SDR (dB)",
    "pesq": "PESQ (MOS-LQO)",
    "stoi": "STOI",
    "dnsmos_ovrl": "DNSMOS OVRL",
    "dnsmos_ovrl_i": "DNSMOS OVRL improvement",
}

_INK, _GRID = "#2b2f36", "#e3e6ea"


def color_of(i: int) -> str:
    """Palette colour of the i-th system."""
    return PALETTE[i % len(PALETTE)]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax: object) -> None:
    ax.spines[["top", "right"]].set_visible(False)  # type: ignore[attr-defined]
    ax.grid(axis="y", color=_GRID, linewidth=0.8)  # type: ignore[attr-defined]
    ax.set_axisbelow(True)  # type: ignore[attr-defined]
    ax.tick_params(colors=_INK, labelsize=9)  # type: ignore[attr-defined]


def to_png(fig: Figure) -> bytes:
    """Encode a figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def placeholder(message: str, *, width: float = 7.5, height: float = 3.6) -> bytes:
    """A PNG that only says ``message`` (used when a figure has no data)."""
    fig = _figure(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#6b7785", wrap=True)
    return to_png(fig)


def _systems(df: pd.DataFrame, group: str, systems: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(df[group].astype(str)))
    return [s for s in systems if s in present] if systems is not None else present


def error_bars(stats: pd.DataFrame) -> np.ndarray:
    """Std per row as error bar, NaN (no bar drawn) where fewer than 2 values (``n < 2``)."""
    std = pd.to_numeric(stats["std"], errors="coerce").to_numpy(float)
    return np.where(stats["n"].to_numpy() >= 2, std, np.nan)


def _legend(fig: Figure, ax: object, n: int) -> None:
    """Legend rows below the axes, never over the data."""
    if n > 1:
        handles, labels = ax.get_legend_handles_labels()  # type: ignore[attr-defined]
        fig.legend(
            handles, labels, loc="outside lower center", ncols=min(n, 4), frameon=False, fontsize=9
        )


def _title(fig: Figure, text: str) -> None:
    fig.suptitle(text, fontsize=11, color=_INK)


def plot_metric_vs_snr(
    df: pd.DataFrame,
    *,
    metric: str = "sdr_i",
    group: str = "system",
    systems: Sequence[str] | None = None,
    edges: Sequence[float] = SNR_EDGES,
) -> bytes:
    """Mean ± std of ``metric`` per input-SNR bin, one line per system.

    Parameters
    ----------
    df : pd.DataFrame
        Per-file rows with ``group``, ``metric`` and ``input_snr``.
    systems : sequence of str, optional
        Order (and colours) of the systems; default: order of appearance.
    """
    if not {metric, "input_snr", group} <= set(df.columns):
        return placeholder(f"No '{metric}' / 'input_snr' columns in these runs")
    stats = by_snr_bin(df, metric=metric, by=group, edges=edges)
    if stats.empty:
        return placeholder(f"No valid '{metric}' values with a known input SNR")
    order = [b for b in stats["snr_bin"].cat.categories if b in set(stats["snr_bin"])]
    pos = {b: i for i, b in enumerate(order)}
    names = _systems(df, group, systems)
    fig = _figure(6.4, 3.8)
    ax = fig.add_subplot()
    width = 0.5 / max(len(names), 1)
    for i, name in enumerate(names):
        s = stats[stats[group].astype(str) == name]
        x = np.array([pos[b] for b in s["snr_bin"]]) + (i - (len(names) - 1) / 2) * width * 0.5
        ax.errorbar(
            x,
            s["mean"],
            yerr=error_bars(s),
            color=color_of(i),
            marker="o",
            ms=5,
            lw=2,
            capsize=3,
            elinewidth=1,
            label=name,
        )
    ax.axhline(0.0, color="#9aa3ad", lw=0.8)
    ax.set_xticks(range(len(order)), order)
    ax.set_xlabel("input SNR", color=_INK)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric), color=_INK)
    _title(fig, f"{METRIC_LABELS.get(metric, metric)} by input SNR (mean ± std; no bar if n < 2)")
    _style(ax)
    _legend(fig, ax, len(names))
    return to_png(fig)


def plot_metric_by_noise(
    df: pd.DataFrame,
    *,
    metric: str = "sdr_i",
    group: str = "system",
    systems: Sequence[str] | None = None,
) -> bytes:
    """Grouped bars: mean ``metric`` per noise class (± std), one colour per system."""
    if not {metric, "noise_class", group} <= set(df.columns):
        return placeholder(f"No '{metric}' / 'noise_class' columns in these runs")
    stats = by_noise_class(df, metric=metric, by=group)
    if stats.empty:
        return placeholder(f"No valid '{metric}' values with a known noise class")
    classes = sorted(stats["noise_class"].astype(str).unique())
    names = _systems(df, group, systems)
    fig = _figure(max(6.4, 0.5 * len(classes) * max(1, len(names)) ** 0.5 + 2), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        s = stats[stats[group].astype(str) == name].set_index("noise_class")
        s.index = s.index.astype(str)
        s = s.reindex(classes)
        x = np.arange(len(classes)) + (i - (len(names) - 1) / 2) * width
        ax.bar(x, s["mean"], width * 0.92, color=color_of(i), label=name)
        ax.errorbar(
            x, s["mean"], yerr=error_bars(s), fmt="none", ecolor="#4a4f57", lw=1, capsize=2.5
        )
    ax.axhline(0.0, color="#9aa3ad", lw=0.8)
    ax.set_xticks(
        range(len(classes)),
        classes,
        rotation=30 if len(classes) > 5 else 0,
        ha="right" if len(classes) > 5 else "center",
    )
    ax.set_ylabel(METRIC_LABELS.get(metric, metric), color=_INK)
    _title(fig, f"{METRIC_LABELS.get(metric, metric)} by noise class (mean ± std; no bar if n < 2)")
    _style(ax)
    _legend(fig, ax, len(names))
    return to_png(fig)


def plot_per_speaker(
    df: pd.DataFrame,
    *,
    metric: str = "sdr_i",
    group: str = "system",
    systems: Sequence[str] | None = None,
) -> bytes:
    """Spread across speakers: a box of the per-speaker means per system, each speaker a dot."""
    if not {metric, "speaker", group} <= set(df.columns):
        return placeholder(f"No '{metric}' / 'speaker' columns in these runs")
    stats = per_speaker(df, metric=metric, by=group)
    if stats.empty:
        return placeholder(f"No valid '{metric}' values with a known speaker")
    names = [n for n in _systems(df, group, systems) if n in set(stats[group].astype(str))]
    fig = _figure(max(6.4, 1.4 * len(names) + 2.5), 3.8)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    data = [stats.loc[stats[group].astype(str) == n, "mean"].to_numpy(float) for n in names]
    box = ax.boxplot(data, widths=0.5, patch_artist=True, showfliers=False)
    for i, (patch, values) in enumerate(zip(box["boxes"], data)):
        patch.set(facecolor=color_of(i) + "33", edgecolor=color_of(i))
        jitter = rng.uniform(-0.12, 0.12, values.size)
        ax.scatter(np.full(values.size, i + 1) + jitter, values, s=18, color=color_of(i), zorder=3)
    for key in ("medians", "whiskers", "caps"):
        for line in box[key]:
            line.set(color="#4a4f57")
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel(f"per-speaker mean {METRIC_LABELS.get(metric, metric)}", color=_INK)
    _title(fig, f"Spread across speakers ({len(stats['speaker'].unique())} speakers)")
    _style(ax)
    return to_png(fig)


DNSMOS_SCORES = (("SIG", "dnsmos_sig"), ("BAK", "dnsmos_bak"), ("OVRL", "dnsmos_ovrl"),
                 ("P.808", "dnsmos_p808"))  # fmt: skip


def plot_dnsmos(
    df: pd.DataFrame, *, group: str = "system", systems: Sequence[str] | None = None
) -> bytes:
    """Grouped bars: mean DNSMOS SIG, BAK, OVRL, P.808 per system, the unprocessed input (light)
    beside the enhanced output (solid), over the files that have both."""
    names = _systems(df, group, systems)
    means = np.full((len(names), len(DNSMOS_SCORES), 2), np.nan)
    for i, name in enumerate(names):
        part = df[df[group].astype(str) == name]
        for j, (_, col) in enumerate(DNSMOS_SCORES):
            if col not in part or f"{col}_in" not in part:
                continue
            out = pd.to_numeric(part[col], errors="coerce")
            inp = pd.to_numeric(part[f"{col}_in"], errors="coerce")
            both = out.notna() & inp.notna()
            if both.any():
                means[i, j] = inp[both].mean(), out[both].mean()
    if not np.isfinite(means).any():
        return placeholder("No DNSMOS scores in these runs")
    fig = _figure(max(6.4, 1.2 * len(DNSMOS_SCORES) * max(1, len(names)) ** 0.5 + 2), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(len(names), 1)
    x0 = np.arange(len(DNSMOS_SCORES))
    for i, name in enumerate(names):
        x = x0 + (i - (len(names) - 1) / 2) * width
        ax.bar(x - width * 0.23, means[i, :, 0], width * 0.44, color=color_of(i) + "55",
               edgecolor=color_of(i), label=f"{name}: input")  # fmt: skip
        ax.bar(x + width * 0.23, means[i, :, 1], width * 0.44, color=color_of(i),
               label=f"{name}: output")  # fmt: skip
    ax.set_xticks(x0, [lab for lab, _ in DNSMOS_SCORES])
    ax.set_ylim(1.0, 5.0)
    ax.set_ylabel("DNSMOS (1–5)", color=_INK)
    _title(fig, "DNSMOS per system: input (light) → enhanced output (solid), mean over files")
    _style(ax)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(2 * len(names), 4),
               frameon=False, fontsize=9)  # fmt: skip
    return to_png(fig)


def plot_confusion(cm: np.ndarray, labels: Sequence[str], *, title: str = "") -> bytes:
    """Confusion matrix: colour = row-normalised rate (recall), text = counts.

    Parameters
    ----------
    cm : np.ndarray [shape=(k, k)]
        Counts, rows true, columns predicted.
    labels : sequence of str [length k]
    """
    cm = np.asarray(cm)
    k = len(labels)
    rows = cm.sum(axis=1, keepdims=True)
    rate = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    fig = _figure(0.5 * k + 2.4, 0.45 * k + 1.6)
    ax = fig.add_subplot()
    im = ax.imshow(rate, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if rate[i, j] > 0.55 else _INK,
                )
    ax.set_xticks(range(k), labels, rotation=40, ha="right", fontsize=10)
    ax.set_yticks(range(k), labels, fontsize=10)
    ax.set_xlabel("predicted", color=_INK)
    ax.set_ylabel("true", color=_INK)
    ax.set_title(title or "Emotion confusion matrix (colour: recall)", fontsize=11)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class")
    return to_png(fig)


def plot_spectrograms(
    signals: Sequence[tuple[str, np.ndarray]], sr: int, *, title: str = "", top_db: float = 80.0
) -> bytes:
    """Stacked log-magnitude spectrograms sharing one colour scale (the loudest panel's peak).

    Parameters
    ----------
    signals : sequence of (name, np.ndarray [shape=(n_samples,)])
    sr : int
        Sample rate in Hz.
    """
    n_fft = int(2 ** round(np.log2(0.032 * sr)))
    hop = n_fft // 4
    specs = []
    for _, x in signals:
        mag = np.abs(
            stft(np.asarray(x, dtype=np.float32), n_fft=n_fft, hop_length=hop, window="hann")
        )
        specs.append(20.0 * np.log10(mag + 1e-10))
    vmax = max(float(s.max()) for s in specs)
    fig = _figure(9.0, 1.45 * len(signals) + 0.7)
    axes = fig.subplots(len(signals), 1, sharex=True, squeeze=False)[:, 0]
    im = None
    for ax, (name, x), spec in zip(axes, signals, specs):
        extent = (0.0, len(x) / sr, 0.0, sr / 2000.0)
        im = ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=extent,
            vmin=vmax - top_db,
            vmax=vmax,
            interpolation="nearest",
        )
        ax.set_ylabel("kHz", fontsize=9)
        ax.text(
            0.01,
            0.92,
            name,
            transform=ax.transAxes,
            color="white",
            fontsize=10,
            va="top",
            fontweight="bold",
        )
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("time (s)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.9, label="dB", pad=0.01)
    return to_png(fig)
