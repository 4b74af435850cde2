"""System fusion (``--model A+B[+C]``): several streaming enhancers run on the same signal, their
time-aligned outputs averaged.

What is combined: the systems' complex STFT estimates, averaged with equal weights. Because the STFT is
linear, the mean of the estimates' STFTs is the STFT of the mean of their waveforms, so averaging the
delay-compensated waveforms at a common rate *is* that combination, with no extra analysis-synthesis and
no window seams. We prefer it to averaging magnitude masks because the systems do not share one
time-frequency grid (RNNoise: 22 bands at 48 kHz; NSNet2: 161 bins at 16 kHz; DeepFilterNet: ERB gains
plus complex deep filtering below 5 kHz, which changes phase too): a common mask would need a new STFT and
would discard DeepFilterNet's phase correction. Averaging estimates whose errors are partly independent
lowers the error (the fusion of seed 002's tutorial). Each system runs at its own rate (soxr streaming
resamplers in and out); the common rate is the highest of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from batchsep.dsp.framestream import run_stream
from batchsep.dsp.resample import resample_stream


class _System:
    """One system's path inside a fused stream: resample in → its stream → resample out."""

    def __init__(self, enhancer: Any, rate: int) -> None:
        sr = enhancer.sample_rate
        self.stream = enhancer.stream()
        self.rs_in = resample_stream(rate, sr)
        self.rs_out = resample_stream(sr, rate)
        self.buf = np.zeros(0, np.float32)

    def feed(self, x: np.ndarray, *, last: bool = False) -> None:
        if self.rs_in is not None:
            x = self.rs_in.resample_chunk(x, last=last)
        y = self.stream.feed(x)
        if last:
            y = np.concatenate([y, self.stream.flush()])
        if self.rs_out is not None:
            y = self.rs_out.resample_chunk(y, last=last)
        self.buf = np.concatenate([self.buf, np.asarray(y, np.float32)])


class FusedStream:
    """Feed blocks at the common rate; get the mean of the systems' outputs, same length as the input."""

    def __init__(self, systems: list[Any], rate: int) -> None:
        self.systems = [_System(s, rate) for s in systems]
        self.n_in = self.n_out = 0

    def _emit(self, n: int) -> np.ndarray:
        y = np.mean([s.buf[:n] for s in self.systems], axis=0).astype(np.float32)
        for s in self.systems:
            s.buf = s.buf[n:]
        self.n_out += n
        return y

    def feed(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, np.float32).reshape(-1)
        self.n_in += block.shape[0]
        for s in self.systems:
            s.feed(block)
        n = min(min(s.buf.shape[0] for s in self.systems), self.n_in - self.n_out)
        return self._emit(max(0, n))

    def flush(self) -> np.ndarray:
        for s in self.systems:
            s.feed(np.zeros(0, np.float32), last=True)
        missing = self.n_in - self.n_out
        for s in self.systems:  # resampler rounding: exactly the input's length
            if s.buf.shape[0] < missing:
                s.buf = np.concatenate([s.buf, np.zeros(missing - s.buf.shape[0], np.float32)])
        return self._emit(max(0, missing))


class FusedEnhancer:
    """Several streaming enhancers combined (see the module docstring); streams like one of them."""

    def __init__(self, name: str, systems: list[Any]) -> None:
        self.name, self.systems = name, systems
        self.sample_rate = max(s.sample_rate for s in systems)

    def stream(self) -> FusedStream:
        return FusedStream(self.systems, self.sample_rate)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(windows, np.float32))
        return np.stack([run_stream(self.stream(), row) for row in x])  # type: ignore[arg-type]
