"""FrameStream: exact length, delay removed, any block size; a wrong delay shows as a shift."""

from __future__ import annotations

import numpy as np
import pytest

from batchsep.dsp.framestream import FrameStream, run_stream
from batchsep.errors import ParameterError


class DelayLine:
    """A stateful process that delays its input by ``d`` samples (hop-wise)."""

    def __init__(self, d: int) -> None:
        self.mem = np.zeros(d, np.float32)
        self.calls = 0

    def __call__(self, hops: np.ndarray) -> np.ndarray:
        self.calls += 1
        x = np.concatenate([self.mem, hops.reshape(-1)])
        n = hops.size
        self.mem = x[n:]
        return x[:n].reshape(hops.shape)


@pytest.mark.parametrize("n", [1, 159, 160, 161, 1000, 4801])
@pytest.mark.parametrize("block", [1, 77, 160, 4096])
@pytest.mark.parametrize("delay", [0, 1, 160, 333])
def test_delay_removed_exact_length(n: int, block: int, delay: int) -> None:
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    y = run_stream(
        FrameStream(DelayLine(delay), hop=160, delay=delay, max_frames=3), x, block=block
    )
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, x)


def test_delay_off_by_one_hop_is_a_shift() -> None:
    x = np.random.default_rng(0).standard_normal(2000).astype(np.float32)
    y = run_stream(FrameStream(DelayLine(320), hop=160, delay=160), x)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y[160:], x[:-160])  # one hop late


def test_batches_of_max_frames() -> None:
    line = DelayLine(0)
    run_stream(
        FrameStream(line, hop=10, delay=0, max_frames=4), np.ones(100, np.float32), block=100
    )
    assert line.calls == 3  # 10 hops in calls of 4, 4, 2


def test_misuse() -> None:
    s = FrameStream(DelayLine(0), hop=4, delay=0)
    s.feed(np.ones(3, np.float32))
    assert s.flush().shape == (3,)
    assert s.flush().shape == (0,)
    with pytest.raises(ParameterError, match="after flush"):
        s.feed(np.ones(1, np.float32))
    with pytest.raises(ParameterError, match="hop=0"):
        FrameStream(DelayLine(0), hop=0, delay=0)
