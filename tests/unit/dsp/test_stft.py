"""STFT pair: perfect reconstruction, shapes, known answers, batching, array kinds, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from batchsep.dsp.stft import Istft, Stft, StftConfig, istft, stft
from batchsep.errors import ConfigError, ParameterError

LENGTHS = [1, 7, 100, 256, 257, 300, 511, 512, 513, 4000, 16001]


def noise(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def n_frames(n, n_fft=512, hop=128):
    """Centred frames; signals of at most n_fft // 2 samples are zero-padded to n_fft // 2 + 1."""
    return 1 + max(n, n_fft // 2 + 1) // hop


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", LENGTHS)
def test_perfect_reconstruction_numpy(n, dtype):
    x = noise((2, 3, n), dtype, seed=n)
    X = stft(x)
    assert isinstance(X, np.ndarray)
    assert X.shape == (2, 3, 257, n_frames(n))
    assert X.dtype == (np.complex64 if dtype == np.float32 else np.complex128)
    y = istft(X, length=n)
    assert isinstance(y, np.ndarray) and y.shape == x.shape and y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.max(np.abs(y - x)) < tol


@pytest.mark.parametrize(
    ("n_fft", "hop", "window"),
    [(512, 128, "sqrt_hann"), (512, 256, "sqrt_hann"), (400, 100, "sqrt_hann"), (256, 64, "hann"),
     (1024, 256, "hann"), (64, 16, "sqrt_hann")],
)  # fmt: skip
@pytest.mark.parametrize("n", [5, 999, 8000])
def test_perfect_reconstruction_torch_other_configs(n_fft, hop, window, n):
    x = torch.from_numpy(noise((4, n), seed=n_fft + n))
    X = stft(x, n_fft=n_fft, hop_length=hop, window=window)
    assert isinstance(X, torch.Tensor) and X.dtype == torch.complex64
    assert X.shape == (4, n_fft // 2 + 1, n_frames(n, n_fft, hop))
    y = istft(X, length=n, n_fft=n_fft, hop_length=hop, window=window)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape
    assert float((y - x).abs().max()) < 1e-5


def test_frame_count_of_reference_config():
    assert stft(np.zeros(16000, np.float32)).shape == (257, 126)
    assert stft(np.zeros(16000 * 3 + 5, np.float32)).shape == (257, 1 + (16000 * 3 + 5) // 128)
    assert StftConfig().n_freq == 257 and StftConfig(n_fft=400).n_freq == 201


@pytest.mark.parametrize("n", [1, 100, 256])
def test_short_signal_is_zero_padded(n):
    """At most n_fft // 2 samples: the STFT is that of the signal zero-padded to n_fft // 2 + 1."""
    x = noise(n, np.float64, seed=9)
    np.testing.assert_allclose(stft(x), stft(np.pad(x, (0, 257 - n))), atol=1e-12)


def test_impulse_at_frame_centre_gives_flat_spectrum():
    """Frames are centred (no delay): an impulse at t * hop makes frame t equal w[n_fft/2] = 1 in
    magnitude, with torch's phase convention (frame starts at t * hop - n_fft / 2) giving (-1)^k."""
    x = np.zeros(4096, np.float64)
    x[10 * 128] = 1.0
    X = stft(x)
    np.testing.assert_allclose(X[:, 10], (-1.0) ** np.arange(257), atol=1e-12)
    assert np.abs(X[:, 30]).max() < 1e-12  # far frames see nothing


def test_bin_centred_tone_matches_window_transform():
    """cos(2π k0 n / N) with k0 * hop a multiple of N: every interior frame is
    X[m] = (W[m - k0] + W[m + k0]) / 2, W the DFT of the window (computed here with numpy)."""
    k0, n = 32, 16000  # 1 kHz at 16 kHz, N = 512
    x = np.cos(2 * np.pi * k0 * np.arange(n) / 512)
    X = stft(x)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    W = np.fft.fft(np.sqrt(hann))
    m = np.arange(257)
    expected = (W[(m - k0) % 512] + W[(m + k0) % 512]) / 2
    for t in (5, 60, X.shape[-1] - 6):
        np.testing.assert_allclose(X[:, t], expected, atol=1e-9)
    assert np.abs(W[0]) == pytest.approx(1 / np.tan(np.pi / 1024))  # Σ sin(πn/N) = cot(π/2N)
    assert np.all(np.abs(X[:, 5:-5]).argmax(axis=0) == k0)


def test_batched_equals_one_by_one():
    x = noise((3, 2, 5000), seed=1)
    X = stft(x)
    for b in range(3):
        for c in range(2):
            np.testing.assert_allclose(X[b, c], stft(x[b, c]), rtol=0, atol=1e-5)
    y = istft(X, length=5000)
    for b in range(3):
        np.testing.assert_allclose(y[b, 1], istft(X[b, 1], length=5000), rtol=0, atol=1e-6)


def test_numpy_and_torch_agree():
    x = noise(3000, np.float64, seed=2)
    Xn = stft(x, n_fft=256, hop_length=64)
    Xt = stft(torch.from_numpy(x), n_fft=256, hop_length=64)
    assert isinstance(Xt, torch.Tensor)
    np.testing.assert_allclose(Xn, Xt.numpy(), atol=1e-12)


def test_istft_crops_and_pads_to_length():
    x = noise(1000, np.float64, seed=3)
    X = stft(x)
    np.testing.assert_allclose(istft(X, length=600), x[:600], atol=1e-12)
    longer = istft(X, length=1500)
    assert longer.shape == (1500,)
    np.testing.assert_allclose(longer[:1000], x, atol=1e-12)
    covered = 128 * (X.shape[-1] - 1) + 256  # the last centred frame reaches this far
    assert np.all(longer[covered:] == 0) and np.abs(longer[1000:covered]).max() > 0


def test_gradients_flow():
    x = torch.from_numpy(noise(2000, seed=4)).requires_grad_()
    y = istft(stft(x), length=2000)
    assert isinstance(y, torch.Tensor)
    (y * y).sum().backward()
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy(), atol=1e-4)


def test_modules_match_functions():
    cfg = StftConfig(n_fft=256, hop_length=64, window="hann")
    x = torch.from_numpy(noise((2, 1234), seed=5))
    X = Stft(cfg)(x)
    assert isinstance(X, torch.Tensor)
    ref = stft(x, n_fft=256, hop_length=64, window="hann")
    assert isinstance(ref, torch.Tensor)
    np.testing.assert_array_equal(X.numpy(), ref.numpy())
    np.testing.assert_allclose(Istft(cfg)(X, 1234).numpy(), x.numpy(), atol=1e-5, rtol=0)
    assert Stft().config == StftConfig()


@pytest.mark.parametrize(
    ("x", "needle"),
    [
        (np.array([0.0, np.nan, 1.0] * 200), "NaN"),
        (np.zeros(1000, np.int16), "dtype=int16 must be floating point"),
        (np.zeros(0, np.float32), "0 samples"),
        (np.zeros((2, 0), np.float32), "0 samples"),
        (np.array(1.0), "0-d"),
        (torch.tensor([float("inf")] * 600), "NaN"),
        (np.zeros(1000, np.float16), "float16"),
        (np.zeros(1000, np.complex64), "complex64"),
        (torch.zeros(1000, dtype=torch.complex64), "complex64"),
    ],
)
def test_stft_rejects_bad_input(x, needle):
    with pytest.raises(ParameterError) as e:
        stft(x)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"n_fft": 1}, "n_fft=1"), ({"hop_length": 0}, "hop_length=0"), ({"hop_length": 513}, "hop_length=513"),
     ({"window": "hamming"}, "window='hamming'")],
)  # fmt: skip
def test_bad_parameters(kwargs, needle):
    with pytest.raises(ParameterError, match=needle):
        stft(np.zeros(1000, np.float32), **kwargs)
    X = stft(np.zeros(1000, np.float32))
    with pytest.raises(ParameterError, match=needle):
        istft(X, length=1000, **{"n_fft": 512, **kwargs})


def test_istft_rejects_bad_input():
    X = stft(np.zeros(1000, np.float32))
    with pytest.raises(ParameterError, match="length=0 must be >= 1"):
        istft(X, length=0)
    with pytest.raises(ParameterError, match="must be complex"):
        istft(np.abs(X), length=1000)
    with pytest.raises(ParameterError, match="X has 257 bins; n_fft=256 needs 129"):
        istft(X, length=1000, n_fft=256)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_fft": 1},
        {"hop_length": 0},
        {"hop_length": 1024},
        {"sample_rate": 0},
        {"sample_rate": -1},
    ],
)
def test_stft_config_validation(kwargs):
    with pytest.raises(ParameterError):
        StftConfig(**kwargs)
    with pytest.raises(ConfigError):
        StftConfig.from_dict(kwargs)


@pytest.mark.parametrize("window", ["sqrt_hann", "hann"])
@pytest.mark.parametrize("kind", ["noise", "sine"])
def test_level_from_magnitudes_is_the_rms_level(window, kind):
    """Parseval: the level of a signal from its one-sided STFT magnitudes, within 0.1 dB for >= 0.5 s."""
    from batchsep.dsp.stft import level_db_from_magnitudes

    for n, level in ((8000, -26.0), (48000, -41.5), (160000, -3.0)):
        x = (
            noise(n, np.float64)
            if kind == "noise"
            else np.sin(2 * np.pi * 441 * np.arange(n) / 16000)
        )
        x = x / np.sqrt(np.mean(x**2)) * 10 ** (level / 20)
        config = StftConfig(window=window)
        mag = np.abs(stft(x, n_fft=512, hop_length=128, window=window)).T  # [T, F]
        assert level_db_from_magnitudes(mag, n, config) == pytest.approx(level, abs=0.1)


def test_level_from_magnitudes_refuses_an_empty_signal():
    from batchsep.dsp.stft import level_db_from_magnitudes

    with pytest.raises(ParameterError, match="non-empty"):
        level_db_from_magnitudes(np.zeros((0, 257)), 0, StftConfig())
