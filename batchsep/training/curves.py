"""Learning curves: JSON-able data from a training history, and a PNG renderer (bytes, no file I/O).

Example
-------
>>> curves = learning_curves(result.history)  # doctest: +SKIP
>>> png = render_learning_curves({"lstm": curves})  # doctest: +SKIP
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"  # doctest: +SKIP
True
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from batchsep.errors import ParameterError
from batchsep.training.loop import EpochRecord

Curves = dict[str, Any]


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def learning_curves(history: Sequence[EpochRecord | Mapping[str, Any]]) -> Curves:
    """Per-epoch curves of a training run, as plain lists (NaN/inf become None, JSON-safe).

    Parameters
    ----------
    history : sequence of EpochRecord or their ``to_dict()`` form

    Returns
    -------
    dict
        ``{"epoch": [...], "train_loss": [...], "valid_loss": [...], "seconds": [...],
        "best_epoch": int | None, "train_logs": {name: [...]}, "valid_logs": {name: [...]}}``; a log
        missing in some epoch is None there.
    """
    records = [r.to_dict() if isinstance(r, EpochRecord) else dict(r) for r in history]
    train_keys = sorted({k for r in records for k in r.get("train_logs", {})})
    valid_keys = sorted({k for r in records for k in r.get("valid_logs", {})})
    monitored = [
        r["valid_loss"] if r.get("valid_loss") is not None else r["train_loss"] for r in records
    ]
    finite = [(v, i) for i, v in enumerate(monitored) if v is not None and math.isfinite(v)]
    best = records[min(finite)[1]]["epoch"] if finite else None
    return {
        "epoch": [int(r["epoch"]) for r in records],
        "train_loss": [_finite_or_none(r["train_loss"]) for r in records],
        "valid_loss": [_finite_or_none(r.get("valid_loss")) for r in records],
        "seconds": [float(r.get("seconds", 0.0)) for r in records],
        "best_epoch": best,
        "train_logs": {
            k: [_finite_or_none(r.get("train_logs", {}).get(k)) for r in records]
            for k in train_keys
        },
        "valid_logs": {
            k: [_finite_or_none(r.get("valid_logs", {}).get(k)) for r in records]
            for k in valid_keys
        },
    }


def render_learning_curves(
    runs: Curves | Mapping[str, Curves],
    *,
    title: str | None = None,
    log_y: bool = False,
    dpi: int = 100,
) -> bytes:
    """Plot training (dashed) and validation (solid) loss per epoch of one or several runs.

    Parameters
    ----------
    runs : dict
        One :func:`learning_curves` result, or a mapping ``label -> curves`` to compare runs (as in
        seed 001, figure 2).
    title : str, optional
    log_y : bool
        Logarithmic loss axis.
    dpi : int

    Returns
    -------
    bytes
        A PNG image.

    Raises
    ------
    ParameterError
        If ``runs`` holds no curves.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    named: Mapping[str, Curves] = {"": runs} if "epoch" in runs else runs  # type: ignore[dict-item]
    if not named:
        raise ParameterError("runs must hold at least one learning-curves dict")
    fig = Figure(figsize=(6.4, 4.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, curves) in enumerate(named.items()):
        color = f"C{i % 10}"
        prefix = f"{label} " if label else ""
        epochs = curves["epoch"]
        nan = float("nan")
        train = [nan if v is None else v for v in curves["train_loss"]]
        ax.plot(epochs, train, linestyle="--", color=color, label=f"{prefix}train")
        valid = [nan if v is None else v for v in curves["valid_loss"]]
        if any(v is not None for v in curves["valid_loss"]):
            ax.plot(epochs, valid, linestyle="-", color=color, label=f"{prefix}valid")
        best = curves.get("best_epoch")
        if best is not None and best in epochs:
            j = epochs.index(best)
            y = valid[j] if curves["valid_loss"][j] is not None else train[j]
            ax.plot([best], [y], marker="o", color=color)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if log_y:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
