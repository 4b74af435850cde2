"""Overlap-add streaming: partition of unity (identity is exact) at every length and block size."""

from __future__ import annotations

import numpy as np
import pytest

from batchsep.dsp.chunking import overlap_add_stream
from batchsep.errors import ParameterError


def run(x: np.ndarray, process, block: int, chunk: int = 100, overlap: int = 20, batch: int = 3):
    blocks = [x[i : i + block] for i in range(0, len(x), block)]
    return np.concatenate(
        list(overlap_add_stream(blocks, process, chunk=chunk, overlap=overlap, batch=batch))
    )


@pytest.mark.parametrize("n", [1, 5, 99, 100, 101, 119, 120, 121, 180, 181, 250, 1000, 1234])
@pytest.mark.parametrize("block", [7, 64, 5000])
def test_identity_is_exact(n, block):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    y = run(x, lambda w: w, block)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_short_signal_is_one_window():
    """A signal no longer than a chunk is processed whole: same as calling process directly."""
    x = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    calls = []

    def process(w):
        calls.append(w.shape)
        return np.cumsum(w, axis=-1)  # depends on the whole window: detects any splitting

    y = run(x, process, 30)
    assert calls == [(1, 100)]
    np.testing.assert_allclose(y, np.cumsum(x), rtol=1e-6)


def test_windows_are_batched_and_full():
    x = np.ones(1000, dtype=np.float32)
    shapes = []

    def model(w: np.ndarray) -> np.ndarray:
        shapes.append(w.shape)
        return w

    run(x, model, 1000, batch=4)
    assert shapes[0] == (4, 100)
    assert all(s[1] == 100 for s in shapes[:-1])
    assert shapes[-1][0] == 1


def test_gain_process_scales_everything():
    x = np.random.default_rng(1).standard_normal(777).astype(np.float32)
    np.testing.assert_allclose(run(x, lambda w: 0.5 * w, 50), 0.5 * x, atol=1e-6)


def test_rejects_bad_geometry():
    with pytest.raises(ParameterError):
        list(overlap_add_stream([np.zeros(10)], lambda w: w, chunk=10, overlap=10))
