"""Aggregate per-file metric rows into per-model summaries and breakdowns (pandas).

Input: one row per scored file, with columns such as ``model``, ``run``, ``sdr_i``, ``si_sdr_i``,
``pesq``, ``stoi``, ``input_snr``, ``noise_class``, ``speaker``, ``split``, ``duration_s`` (audio
length) and ``seconds`` (processing time). Statistics skip NaN values (failed metrics), so ``n``
in a breakdown counts the rows where that metric is valid; ``n_files`` counts all rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from batchsep.errors import ParameterError

SUMMARY_METRICS = ("sdr_i", "si_sdr_i", "pesq", "stoi", "pesq_i", "stoi_i")
"""Columns summarised per model by default (those present)."""

SNR_EDGES = (-5.0, 0.0, 5.0, 10.0, 15.0)
"""Inner edges (dB) of the input-SNR bins; the outer bins are open."""


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ParameterError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ParameterError(f"metrics table lacks columns {missing}; it has {list(df.columns)}")


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def summarize(
    df: pd.DataFrame, *, by: str = "model", metrics: Sequence[str] = SUMMARY_METRICS
) -> pd.DataFrame:
    """Per-group count, mean and median of each metric, and speed.

    Parameters
    ----------
    df : pd.DataFrame
        Per-file rows; must have column ``by``. Metric columns that are absent give NaN.
    by : str
        Grouping column (``"model"``, ``"run"``, ...).
    metrics : sequence of str
        Metric columns to summarise.

    Returns
    -------
    pd.DataFrame
        Indexed by ``by`` (sorted), columns ``n_files``, ``n_incomplete`` (rows with a NaN in some
        present metric), ``<m>_mean`` and ``<m>_median`` per metric, ``audio_s`` (sum of
        ``duration_s``), ``processing_s`` (sum of ``seconds``) and ``x_real_time`` =
        ``audio_s / processing_s`` (NaN when unknown or zero).

    Raises
    ------
    ParameterError
        If ``by`` is missing.

    Examples
    --------
    >>> df = pd.DataFrame({"model": ["a", "a"], "sdr_i": [1.0, 3.0], "duration_s": [4, 4],
    ...                    "seconds": [1, 1]})
    >>> summarize(df, metrics=["sdr_i"]).loc["a", ["sdr_i_mean", "x_real_time"]].tolist()
    [2.0, 4.0]
    """
    _require(df, [by])
    present = [m for m in metrics if m in df.columns]
    rows = []
    for key, group in df.groupby(by, sort=True):
        row: dict[str, object] = {by: key, "n_files": len(group)}
        values = {m: _numeric(group, m) for m in present}
        row["n_incomplete"] = int(
            pd.concat(values.values(), axis=1).isna().any(axis=1).sum() if values else 0
        )
        for m in metrics:
            col = values.get(m)
            row[f"{m}_mean"] = float(col.mean()) if col is not None else np.nan
            row[f"{m}_median"] = float(col.median()) if col is not None else np.nan
        audio = float(_numeric(group, "duration_s").sum()) if "duration_s" in df else np.nan
        proc = float(_numeric(group, "seconds").sum()) if "seconds" in df else np.nan
        row["audio_s"], row["processing_s"] = audio, proc
        row["x_real_time"] = audio / proc if proc > 0 and np.isfinite(audio) else np.nan
        rows.append(row)
    columns = [by, "n_files", "n_incomplete"]
    columns += [f"{m}_{s}" for m in metrics for s in ("mean", "median")]
    columns += ["audio_s", "processing_s", "x_real_time"]
    return pd.DataFrame(rows, columns=columns).set_index(by)


def snr_bin_labels(edges: Sequence[float] = SNR_EDGES) -> list[str]:
    """Names of the bins made by ``edges``: ``"< e0"``, ``"e0 to e1"``, ..., ``">= ek"`` (dB).

    Examples
    --------
    >>> snr_bin_labels([0, 5])
    ['< 0 dB', '0 to 5 dB', '>= 5 dB']
    """
    e = [f"{v:g}" for v in edges]
    inner = [f"{a} to {b} dB" for a, b in itertools.pairwise(e)]
    return [f"< {e[0]} dB", *inner, f">= {e[-1]} dB"]


def snr_bins(snr: pd.Series | np.ndarray, *, edges: Sequence[float] = SNR_EDGES) -> pd.Categorical:
    """Ordered categorical bin of each input SNR; bins are ``[a, b)`` (0 dB falls in "0 to 5").

    Raises
    ------
    ParameterError
        If ``edges`` is empty or not strictly increasing.
    """
    edges = [float(v) for v in edges]
    if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ParameterError(f"edges={edges} must be a non-empty, strictly increasing sequence")
    values = pd.to_numeric(pd.Series(np.asarray(snr)), errors="coerce").astype(float)
    return pd.cut(
        values, [-np.inf, *edges, np.inf], right=False, labels=snr_bin_labels(edges), ordered=True
    ).array


def _stats(df: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    valid = df.assign(_v=_numeric(df, metric)).dropna(subset=["_v", *keys])
    grouped = valid.groupby(keys, observed=True, sort=True)["_v"]
    out = grouped.agg(n="count", mean="mean", median="median", std="std").reset_index()
    out["n"] = out["n"].astype(int)
    return out


def by_snr_bin(
    df: pd.DataFrame,
    *,
    metric: str = "sdr_i",
    by: str = "model",
    edges: Sequence[float] = SNR_EDGES,
) -> pd.DataFrame:
    """Statistics of ``metric`` per group and input-SNR bin (column ``input_snr``).

    Returns
    -------
    pd.DataFrame
        Columns ``[by, "snr_bin", "n", "mean", "median", "std"]``, non-empty bins only, bins in
        SNR order (``std`` is the sample std, NaN for one value).

    Examples
    --------
    >>> df = pd.DataFrame({"model": ["a"] * 3, "input_snr": [-7.0, 0.0, 4.0], "sdr_i": [5, 4, 2]})
    >>> by_snr_bin(df)[["snr_bin", "n", "mean"]].values.tolist()
    [['< -5 dB', 1, 5.0], ['0 to 5 dB', 2, 3.0]]
    """
    _require(df, [by, metric, "input_snr"])
    binned = df.assign(snr_bin=snr_bins(df["input_snr"], edges=edges))
    return _stats(binned, [by, "snr_bin"], metric)


def by_noise_class(df: pd.DataFrame, *, metric: str = "sdr_i", by: str = "model") -> pd.DataFrame:
    """Statistics of ``metric`` per group and ``noise_class``.

    Returns
    -------
    pd.DataFrame
        Columns ``[by, "noise_class", "n", "mean", "median", "std"]``.
    """
    _require(df, [by, metric, "noise_class"])
    return _stats(df, [by, "noise_class"], metric)


def per_speaker(df: pd.DataFrame, *, metric: str = "sdr_i", by: str = "model") -> pd.DataFrame:
    """Statistics of ``metric`` per group and ``speaker``.

    Returns
    -------
    pd.DataFrame
        Columns ``[by, "speaker", "n", "mean", "median", "std"]``.
    """
    _require(df, [by, metric, "speaker"])
    return _stats(df.assign(speaker=df["speaker"].astype(str)), [by, "speaker"], metric)


def speaker_spread(df: pd.DataFrame, *, metric: str = "sdr_i", by: str = "model") -> pd.DataFrame:
    """How much ``metric`` varies across speakers: statistics of the per-speaker means.

    Returns
    -------
    pd.DataFrame
        Indexed by ``by``; columns ``n_speakers``, ``mean``, ``std`` (population std of the speaker
        means), ``min``, ``max``, ``worst_speaker``, ``best_speaker``.

    Examples
    --------
    >>> df = pd.DataFrame({"model": ["a"] * 3, "speaker": [1, 1, 2], "sdr_i": [2.0, 4.0, 9.0]})
    >>> row = speaker_spread(df).loc["a"]
    >>> float(row["min"]), float(row["max"]), row["worst_speaker"]
    (3.0, 9.0, '1')
    """
    stats = per_speaker(df, metric=metric, by=by)
    rows = []
    for key, group in stats.groupby(by, sort=True):
        means = group["mean"].to_numpy(dtype=float)
        rows.append(
            {
                by: key,
                "n_speakers": len(group),
                "mean": float(means.mean()),
                "std": float(means.std()),
                "min": float(means.min()),
                "max": float(means.max()),
                "worst_speaker": str(group["speaker"].iloc[int(np.argmin(means))]),
                "best_speaker": str(group["speaker"].iloc[int(np.argmax(means))]),
            }
        )
    columns = [by, "n_speakers", "mean", "std", "min", "max", "worst_speaker", "best_speaker"]
    return pd.DataFrame(rows, columns=columns).set_index(by)
