"""Input → output tables per system (DNSMOS without references; PESQ, STOI, SI-SDR with them) and the
emotion tag counts.

Formatted like :mod:`batchsep.reporting.content` (which calls these from ``build_content``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from batchsep.evaluation.emotion import EMOTIONS
from batchsep.reporting.files import change
from batchsep.reporting.tables import GROUP, NA, Table, _finite_any, fmt

DNSMOS_COLUMNS = (("SIG", "dnsmos_sig"), ("BAK", "dnsmos_bak"), ("OVRL", "dnsmos_ovrl"),
                  ("P.808", "dnsmos_p808"))  # fmt: skip
DNSMOS_NOTE = (
    "DNSMOS (Reddy et al. 2022, the models of the speechmos package): predicted listener ratings "
    "from 1 to 5 of the speech (SIG), the background noise (BAK, higher: less intrusive), the "
    "overall quality (OVRL) on the ITU-T P.835 scales, and P.808 overall quality; no clean "
    "reference needed. Each cell: mean over the files of the unprocessed input → the enhanced "
    "output (change). Files are scored at 16 kHz on 9.01 s windows with a 1 s hop, averaged; "
    "shorter files are repeated to fill one window."
)
REFERENCE_COLUMNS = (("PESQ", "pesq"), ("STOI", "stoi"), ("SI-SDR (dB)", "si_sdr"))
REF_DECIMALS = {"stoi": 3}
REFERENCE_NOTE = (
    "The unprocessed input and the enhanced output scored against the same clean reference: mean "
    "over the files scored on both, input → output (change). PESQ: wide-band MOS-LQO (narrow-band "
    "for 8 kHz references), STOI: 0 to 1."
)
TAGS_NOTE = (
    "Emotion tag of each enhanced file (the file-level label of `batchsep enhance --emotion`), "
    "counted per system: files (share of the system's tagged files)."
)


def _mean(values: pd.Series) -> float:
    v = pd.to_numeric(values, errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def dnsmos_table(table: pd.DataFrame, systems: list[str]) -> Table | None:
    """DNSMOS per system: files rated, then per score ``input → output (change)``, the means over
    the files that have both; None when no file has a DNSMOS score. Best output per column (more
    than one system) is marked."""
    if not any(_finite_any(table, f"{c}{x}") for _, c in DNSMOS_COLUMNS for x in ("", "_in")):
        return None
    return in_out_table(table, systems, DNSMOS_COLUMNS, "dnsmos_ovrl", "Files rated")


def reference_table(table: pd.DataFrame, systems: list[str]) -> Table | None:
    """PESQ, STOI and SI-SDR per system as ``input → output (change)``, the means over the files scored
    on both (the unprocessed input against the same clean reference); None without any of them."""
    columns = tuple(
        (lab, c)
        for lab, c in REFERENCE_COLUMNS
        if _finite_any(table, c) and _finite_any(table, f"{c}_in")
    )
    if not columns:
        return None
    return in_out_table(
        table, systems, columns, columns[0][1], "Files scored", decimals=REF_DECIMALS
    )


def in_out_table(
    table: pd.DataFrame,
    systems: list[str],
    columns: tuple[tuple[str, str], ...],
    count_column: str,
    count_header: str,
    *,
    decimals: dict[str, int] | None = None,
) -> Table:
    """Per system: the files with a finite ``count_column``, then per ``(label, column)`` the means of
    ``column_in → column (change)`` over the files that have both. Best output per column (more than one
    system) is marked."""
    decimals = decimals or {}
    headers = ["System", count_header, *(f"{lab}: input → output" for lab, _ in columns)]
    rows, outs = [], []
    for s in systems:
        part = table[table[GROUP] == s]
        row, out_means = [s], []
        rated = pd.to_numeric(part.get(count_column), errors="coerce")
        row.append(
            fmt(int(np.isfinite(rated.to_numpy(float)).sum()) if rated is not None else 0, 0)
        )
        for _, col in columns:
            if col not in part or f"{col}_in" not in part:
                row.append(NA)
                out_means.append(float("nan"))
                continue
            both = part[
                pd.to_numeric(part[col], errors="coerce").notna()
                & pd.to_numeric(part[f"{col}_in"], errors="coerce").notna()
            ]
            m_in, m_out = _mean(both[f"{col}_in"]), _mean(both[col])
            out_means.append(m_out)
            if not np.isfinite(m_out):
                row.append(NA)
                continue
            d = decimals.get(col, 2)
            row.append(f"{fmt(m_in, d)} → {fmt(m_out, d)} ({change(m_out - m_in, d)})")
        rows.append(row)
        outs.append(out_means)
    values = np.array(outs, dtype=float)
    best, na = [], []
    for r in range(len(rows)):
        flags = [False, False]
        for c in range(values.shape[1]):
            means = values[:, c]
            d = decimals.get(columns[c][1], 2)
            n_valid = int(np.isfinite(means).sum())
            flags.append(
                bool(
                    n_valid > 1
                    and np.isfinite(means[r])
                    and round(float(means[r]), d) == round(float(np.nanmax(means)), d)
                )
            )
        best.append(flags)
        na.append([False, False, *(not np.isfinite(v) for v in values[r])])
    return Table(headers, rows, best, na)


def emotion_tag_table(table: pd.DataFrame, systems: list[str]) -> Table | None:
    """Distribution of the emotion tags (``emotion_pred``: the file-level label enhance wrote) per
    tagged system: ``count (share %)`` per label; None when no system was tagged."""
    if "emotion_pred" not in table:
        return None
    tags = {s: table.loc[table[GROUP] == s, "emotion_pred"].dropna().astype(str) for s in systems}
    tagged = [s for s in systems if len(tags[s])]
    if not tagged:
        return None
    present = set().union(*(set(tags[s]) for s in tagged))
    labels = [e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS))
    rows, na = [], []
    for label in labels:
        row, nas = [label], [False]
        for s in tagged:
            n = int((tags[s] == label).sum())
            row.append(f"{n} ({fmt(100 * n / len(tags[s]), 1, ' %')})")
            nas.append(n == 0)
        rows.append(row)
        na.append(nas)
    rows.append(["Tagged files", *(str(len(tags[s])) for s in tagged)])
    na.append([False] * (len(tagged) + 1))
    return Table(["Emotion tag", *tagged], rows, [], na)
