"""Table primitives shared by the report's content builders (:mod:`~batchsep.reporting.content`,
:mod:`~batchsep.reporting.quality`): the system column, the not-available mark, a formatted table, number
formatting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

GROUP = "system"
NA = "–"


@dataclass
class Table:
    """A table of formatted cells; ``best[r][c]`` marks the best value of a column; ``links[(r, c)]``
    an anchor on the same page (``"example-1"``) that cell links to."""

    headers: list[str]
    rows: list[list[str]]
    best: list[list[bool]] = field(default_factory=list)
    na: list[list[bool]] = field(default_factory=list)
    links: dict[tuple[int, int], str] = field(default_factory=dict)


def fmt(value: Any, decimals: int = 2, suffix: str = "") -> str:
    """Format a number (NaN/None → "–"); ints without decimals."""
    if value is None:
        return NA
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not np.isfinite(v):
        return NA
    return f"{v:,.{decimals}f}{suffix}" if decimals else f"{v:,.0f}{suffix}"


def _finite_any(table: pd.DataFrame, column: str) -> bool:
    if column not in table:
        return False
    return bool(np.isfinite(pd.to_numeric(table[column], errors="coerce").to_numpy(float)).any())
