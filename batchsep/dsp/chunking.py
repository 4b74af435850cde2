"""Bounded-memory processing of long signals: overlapping windows, batched, cross-faded back together.

A stream of sample blocks is cut into windows of ``chunk`` samples that overlap by ``overlap``; full windows
are processed ``batch`` at a time; consecutive outputs are cross-faded over the overlap with sin²/cos² weights
(which sum to one, so an identity process reproduces the input exactly). A signal no longer than ``chunk``
is processed as one window: the result equals whole-signal processing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from batchsep.errors import ParameterError

Process = Callable[[np.ndarray], np.ndarray]
"""Maps a batch of equal-length windows ``[B, n]`` to outputs of the same shape."""


def _fades(overlap: int) -> tuple[np.ndarray, np.ndarray]:
    t = (np.arange(overlap, dtype=np.float64) + 0.5) / overlap
    fade_in = np.sin(0.5 * np.pi * t) ** 2
    return fade_in.astype(np.float32), (1.0 - fade_in).astype(np.float32)


def overlap_add_stream(
    blocks: Iterable[np.ndarray],
    process: Process,
    *,
    chunk: int,
    overlap: int,
    batch: int = 4,
) -> Iterator[np.ndarray]:
    """Process a long 1-D signal given as ``blocks`` window by window; yield the output in order.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n_i,)]
        The input signal, in pieces of any size.
    process : callable
        ``process(windows [B, n]) -> [B, n]``; called with full windows (``n == chunk``) in batches of up
        to ``batch``, and once with the final shorter window (``B == 1``).
    chunk, overlap : int
        Window length and overlap in samples (``0 < overlap < chunk // 2`` recommended; ``overlap < chunk``
        required).
    batch : int
        Full windows per call of ``process``.

    Yields
    ------
    np.ndarray [shape=(m_j,)]
        Output pieces; their concatenation has exactly the input's length.
    """
    if not 0 < overlap < chunk or batch < 1:
        raise ParameterError(f"need 0 < overlap={overlap} < chunk={chunk} and batch={batch} >= 1")
    hop = chunk - overlap
    fade_in, fade_out = _fades(overlap)
    state: dict[str, Any] = {"k": 0, "tail": None}

    def emit(outputs: np.ndarray, last_partial: bool) -> Iterator[np.ndarray]:
        for y in outputs:
            if state["k"] > 0:
                yield state["tail"] * fade_out + y[:overlap] * fade_in
            start = 0 if state["k"] == 0 else overlap
            if last_partial:
                yield y[start:]
                state["tail"] = None
            else:
                yield y[start:hop]
                state["tail"] = y[hop:]
            state["k"] += 1

    buf = np.zeros(0, dtype=np.float32)
    pending: list[np.ndarray] = []
    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, dtype=np.float32)])
        while buf.shape[0] >= chunk + overlap + 1:  # a later window is certain: this one is full
            pending.append(buf[:chunk].copy())
            buf = buf[hop:]
            if len(pending) == batch:
                yield from emit(process(np.stack(pending)), False)
                pending = []
    # End of stream: `buf` starts at the next window's start and holds what is left.
    if buf.shape[0] >= chunk:  # one more full window, then possibly a final partial one
        pending.append(buf[:chunk].copy())
        buf = buf[hop:]
    if pending:
        yield from emit(process(np.stack(pending)), False)
    if state["k"] == 0 or buf.shape[0] > overlap:  # a final (or the only) window
        yield from emit(process(buf[None, :]), True)
    elif state["tail"] is not None:  # the last full window's tail ends the signal
        yield state["tail"]
