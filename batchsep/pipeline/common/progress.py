"""Progress callbacks of the stages: ``on_progress(n_done, audio_seconds)``, or with a third argument,
``on_progress(n_done, audio_seconds, n_failed)`` (the items of ``n_done`` that failed)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from batchsep.io import schemas

ProgressFn = Callable[..., None]


def accepts_failed(fn: Callable[..., Any]) -> bool:
    """Whether the progress callback ``fn`` takes a third positional argument (the failures)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


def report(fn: ProgressFn | None, n: int, seconds: float, failed: int = 0) -> None:
    """Call ``fn(n, seconds)``, or ``fn(n, seconds, failed)`` when it takes the failures."""
    if fn is None:
        return
    if accepts_failed(fn):
        fn(n, seconds, failed)
    else:
        fn(n, seconds)


def failed_rows(rows: list[dict[str, Any]]) -> int:
    """How many of ``rows`` say ``status="error"``."""
    return sum(1 for r in rows if r.get("status") == schemas.STATUS_ERROR)
