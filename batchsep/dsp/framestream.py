"""Streaming a signal through a stateful frame-by-frame process, with its delay removed.

Streaming enhancers (RNNoise, NSNet2, DeepFilterNet) consume fixed hops of samples and keep state
(recurrent layers, overlap-add tails, look-ahead buffers) from one hop to the next; their output lags the
input by a fixed algorithmic delay. :class:`FrameStream` cuts a stream of blocks of any size into hops,
runs them through such a process, drops the first ``delay`` output samples and, at the end, feeds zeros
so that the output has exactly the input's length and timing. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from batchsep.errors import ParameterError

FrameProcess = Callable[[np.ndarray], np.ndarray]
"""Maps consecutive hops ``[k, hop]`` (float32) to as many output hops ``[k, hop]``, keeping its own state
between calls (a new process for each signal)."""


class FrameStream:
    """Feed blocks of a 1-D signal; get the process's output back without its delay, same length.

    Parameters
    ----------
    process : FrameProcess
        A fresh stateful process for this signal.
    hop : int
        Samples per frame the process consumes.
    delay : int
        Its algorithmic delay in samples (``>= 0``): output sample ``n + delay`` belongs to input sample
        ``n``. These first samples are dropped; :meth:`flush` feeds zeros to push the last ones out.
    max_frames : int
        Most hops given to ``process`` at once (bounds memory; a batched ONNX call is cheaper per hop).

    Examples
    --------
    >>> s = FrameStream(lambda f: f, hop=4, delay=0)
    >>> np.concatenate([s.feed(np.ones(6, np.float32)), s.flush()]).shape
    (6,)
    """

    def __init__(
        self, process: FrameProcess, *, hop: int, delay: int, max_frames: int = 100
    ) -> None:
        if hop < 1 or delay < 0 or max_frames < 1:
            raise ParameterError(
                f"hop={hop} must be >= 1, delay={delay} >= 0 and max_frames={max_frames} >= 1"
            )
        self.process, self.hop, self.delay, self.max_frames = process, hop, delay, max_frames
        self._pending = np.zeros(0, np.float32)
        self._skip = delay  # output samples still to drop
        self.n_in = self.n_out = 0
        self._flushed = False

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Process whole hops of ``x`` (length a multiple of ``hop``), ``max_frames`` at a time."""
        frames = x.reshape(-1, self.hop)
        outs = [
            np.asarray(self.process(frames[i : i + self.max_frames]), np.float32).reshape(-1)
            for i in range(0, frames.shape[0], self.max_frames)
        ]
        y = np.concatenate(outs) if outs else np.zeros(0, np.float32)
        if self._skip:
            drop = min(self._skip, y.shape[0])
            y, self._skip = y[drop:], self._skip - drop
        return y

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Consume ``block`` [shape=(n,)]; return the output samples now known (any number)."""
        if self._flushed:
            raise ParameterError("FrameStream.feed after flush: make a new stream per signal")
        block = np.asarray(block, np.float32).reshape(-1)
        self.n_in += block.shape[0]
        buf = np.concatenate([self._pending, block]) if self._pending.size else block
        n_whole = buf.shape[0] - buf.shape[0] % self.hop
        self._pending = buf[n_whole:].copy()
        y = self._run(buf[:n_whole])
        y = y[: max(0, self.n_in - self.n_out)]  # never beyond the input's length
        self.n_out += y.shape[0]
        return y

    def flush(self) -> np.ndarray:
        """Feed the zeros that push out the last ``delay`` samples; return the rest of the output
        (after it the output has exactly ``n_in`` samples)."""
        if self._flushed:
            return np.zeros(0, np.float32)
        self._flushed = True
        missing = self.n_in - self.n_out  # output samples still owed
        if missing <= 0:
            return np.zeros(0, np.float32)
        # processed so far: n_in - pending; the owed samples need n_in + delay processed in all
        need = self.n_in + self.delay - (self.n_in - self._pending.shape[0])
        n_frames = -(-need // self.hop)
        x = np.zeros(n_frames * self.hop, np.float32)
        x[: self._pending.shape[0]] = self._pending
        self._pending = np.zeros(0, np.float32)
        y = self._run(x)[:missing]
        self.n_out += y.shape[0]
        return y


def run_stream(stream: FrameStream, x: np.ndarray, *, block: int = 1 << 15) -> np.ndarray:
    """Run a whole 1-D signal through ``stream`` in blocks (tests, windows of a batch).

    Parameters
    ----------
    x : np.ndarray [shape=(n,)]

    Returns
    -------
    np.ndarray [shape=(n,)], float32
    """
    x = np.asarray(x, np.float32).reshape(-1)
    pieces = [stream.feed(x[i : i + block]) for i in range(0, x.shape[0], block)]
    pieces.append(stream.flush())
    return np.concatenate(pieces)
