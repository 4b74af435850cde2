"""Per-file results: the metric files are ranked by, and the table of files, worst first.

The same ranking (:func:`rank_metric`) picks the listening examples (worst, median, best) in the report
stage, so the table's top rows and the "worst" example agree; rows of files that have an example link
to it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from batchsep.reporting.tables import GROUP, NA, Table, _finite_any, fmt

RANK_METRICS = (
    ("sdr_i", "SDRi", " dB"),
    ("si_sdr_i", "SI-SDRi", " dB"),
    ("dnsmos_ovrl", "DNSMOS OVRL", ""),
)
"""Metrics files are ranked by, the first one present: (column, label, unit). Higher is better for all."""
MAX_FILE_ROWS = 100
"""Rows of the per-file table; a larger report shows the worst files and says how many are left out."""

# (header, output column, input column or None, decimals)
_FILE_COLUMNS = (
    ("SDRi (dB)", "sdr_i", None, 2),
    ("SI-SDRi (dB)", "si_sdr_i", None, 2),
    ("PESQ: input → output", "pesq", "pesq_in", 2),
    ("STOI: input → output", "stoi", "stoi_in", 3),
    ("DNSMOS OVRL: input → output", "dnsmos_ovrl", "dnsmos_ovrl_in", 2),
    ("DNSMOS SIG: input → output", "dnsmos_sig", "dnsmos_sig_in", 2),
    ("DNSMOS BAK: input → output", "dnsmos_bak", "dnsmos_bak_in", 2),
)


def rank_metric(table: pd.DataFrame) -> tuple[str, str, str] | None:
    """The metric files are ranked by: SDRi, else SI-SDRi, else DNSMOS OVRL of the output (the first
    that any row has); None when no row has any of them."""
    for column, label, unit in RANK_METRICS:
        if _finite_any(table, column):
            return column, label, unit
    return None


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def in_out(value_in: object, value_out: object, decimals: int) -> str:
    """``"1.36 → 1.43 (+0.07)"``; only the output when the input is unknown; "–" without output."""
    v_in, v_out = _num(value_in), _num(value_out)
    if not np.isfinite(v_out):
        return NA
    if not np.isfinite(v_in):
        return fmt(v_out, decimals)
    return f"{fmt(v_in, decimals)} → {fmt(v_out, decimals)} ({change(v_out - v_in, decimals)})"


def change(delta: float, decimals: int) -> str:
    """``+0.25``; a change that rounds to zero is ``+0.00``, never ``-0.00``."""
    rounded = round(float(delta), decimals)
    return f"{rounded + 0.0 if rounded else 0.0:+.{decimals}f}"


def files_table(
    table: pd.DataFrame,
    systems: list[str],
    links: Mapping[str, tuple[str, str]] | None = None,
    *,
    max_rows: int = MAX_FILE_ROWS,
) -> tuple[Table | None, str]:
    """One row per file and system, worst first by :func:`rank_metric`, and a note.

    Columns: file, system (several systems only), the metrics any row has (PESQ, STOI and DNSMOS as
    ``input → output (change)``), the emotion tag, the listening example (``links``: rel_path →
    (anchor, label), linked in the table's ``links``) and why a file was not scored. Files without a
    ranking value (not scored) come last. None when ``table`` is empty.
    """
    if table.empty or "rel_path" not in table:
        return None, ""
    links = links or {}
    ranked = rank_metric(table)
    order = table.copy()
    order["_key"] = (
        pd.to_numeric(order[ranked[0]], errors="coerce")
        if ranked
        else pd.Series(np.nan, order.index)
    )
    order = order.sort_values(["_key", "rel_path"], na_position="last", kind="stable")
    columns = [c for c in _FILE_COLUMNS if _finite_any(table, c[1])]
    several = len(systems) > 1
    tagged = "emotion_pred" in table and table["emotion_pred"].notna().any()
    errors = "error" in table and table["error"].notna().any()
    headers = ["File", *(["System"] if several else []), *(c[0] for c in columns)]
    headers += [*(["Emotion tag"] if tagged else []), *(["Listen"] if links else [])]
    headers += ["Not scored because"] if errors else []
    rows, na, cell_links = [], [], {}
    for r, (_, row) in enumerate(order.head(max_rows).iterrows()):
        cells = [str(row["rel_path"]), *([str(row[GROUP])] if several else [])]
        for _, col, col_in, dec in columns:
            cells.append(
                in_out(row.get(col_in), row.get(col), dec) if col_in else fmt(row.get(col), dec)
            )
        if tagged:
            tag = row.get("emotion_pred")
            cells.append(str(tag) if isinstance(tag, str) else NA)
        if links:
            hit = links.get(str(row["rel_path"]))
            if hit is not None:
                cell_links[(r, len(cells))] = hit[0]
            cells.append(hit[1] if hit is not None else NA)
        if errors:
            err = row.get("error")
            cells.append(str(err) if isinstance(err, str) and err else "")
        rows.append(cells)
        na.append([c == NA for c in cells])
    n = len(order)
    what = f"by {ranked[1]}" if ranked else "by name (no metric to rank by)"
    note = f"Files worst first {what}"
    if ranked and ranked[0] == "dnsmos_ovrl":
        note += " of the enhanced output"
    note += "; input → output (change) for the metrics scored on both. "
    if n > max_rows:
        note += f"The {max_rows} worst of {n} rows are shown; every file's row is "
    else:
        note += "Every file's row is also "
    note += "in its run's metrics/part-*.parquet."
    return Table(headers, rows, [], na, cell_links), note
