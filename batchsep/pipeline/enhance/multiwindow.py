"""Multichannel signals in overlapping windows: the segments whole-file beamforming statistics read and the
windows :func:`overlap_add_multi` processes and cross-fades (those of
:func:`~batchsep.dsp.chunking.overlap_add_stream`), for :mod:`batchsep.pipeline.enhance.multichannel`
(``keep`` and ``beamform``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from batchsep.dsp.chunking import _fades
from batchsep.errors import ParameterError


def segments(blocks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Blocks ``[n_i, C]`` → consecutive segments ``[C, size]`` (the last one shorter)."""
    buf: list[np.ndarray] = []
    have = 0
    for b in blocks:
        buf.append(b)
        have += b.shape[0]
        while have >= size:
            joined = np.concatenate(buf)
            yield np.ascontiguousarray(joined[:size].T)
            buf, have = [joined[size:]], have - size
    if have:
        yield np.ascontiguousarray(np.concatenate(buf).T)


def overlap_add_multi(
    blocks: Iterable[np.ndarray],
    process: Callable[[np.ndarray], np.ndarray],
    *,
    chunk: int,
    overlap: int,
) -> Iterator[np.ndarray]:
    """:func:`~batchsep.dsp.chunking.overlap_add_stream` for multichannel blocks ``[n_i, C]`` (same
    windows, same cross-fades): windows ``[C, chunk]`` overlapping by ``overlap``; ``process`` maps one to
    ``[K, n]``; yields pieces ``[m, K]`` whose concatenation has the input's length."""
    if not 0 < overlap < chunk:
        raise ParameterError(f"need 0 < overlap={overlap} < chunk={chunk}")
    hop = chunk - overlap
    fade_in, fade_out = _fades(overlap)
    tail: np.ndarray | None = None
    for k, (window, last) in enumerate(_windows(blocks, chunk, overlap)):
        y = np.asarray(process(window), np.float32)
        if k > 0 and tail is not None:
            yield (tail * fade_out + y[:, :overlap] * fade_in).T
        start = 0 if k == 0 else overlap
        if last:
            yield y[:, start:].T
            tail = None
        else:
            yield y[:, start:hop].T
            tail = y[:, hop:]
    if tail is not None:  # the last full window's tail ends the signal
        yield tail.T


def _windows(
    blocks: Iterable[np.ndarray], chunk: int, overlap: int
) -> Iterator[tuple[np.ndarray, bool]]:
    """``(window [C, n], last)``: full windows every ``chunk - overlap`` samples, then a final shorter one
    when more than ``overlap`` samples remain (the windows of ``overlap_add_stream``)."""
    hop = chunk - overlap
    buf: np.ndarray | None = None
    k = 0
    for b in blocks:
        buf = b if buf is None else np.concatenate([buf, b])
        while (
            buf.shape[0] >= chunk + overlap + 1
        ):  # a later window is certain: this one is not last
            yield np.ascontiguousarray(buf[:chunk].T), False
            buf, k = buf[hop:], k + 1
    if buf is None:
        return
    if buf.shape[0] >= chunk:
        rest = buf[hop:]
        final = rest.shape[0] > overlap
        yield np.ascontiguousarray(buf[:chunk].T), not final
        buf, k = rest, k + 1
    if k == 0 or buf.shape[0] > overlap:
        yield np.ascontiguousarray(buf.T), True
