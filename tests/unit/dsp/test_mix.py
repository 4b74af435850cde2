"""Mixing at an exact SNR, and looping/cropping noise to length."""

from __future__ import annotations

import numpy as np
import pytest

from batchsep.dsp.mix import energy, fit_length, mix_at_snr, snr_db
from batchsep.errors import ParameterError


def ref_snr(s, n):
    """Independent SNR in dB (float64), not via batchsep."""
    s, n = np.asarray(s, np.float64), np.asarray(n, np.float64)
    return 10 * np.log10(np.sum(s**2) / np.sum(n**2))


def test_energy_and_snr_known_values():
    assert energy(np.array([3.0, 4.0], np.float32)) == 25.0
    assert snr_db(np.full(4, 2.0), np.ones(4)) == pytest.approx(10 * np.log10(4))
    assert snr_db(np.ones(10), np.full(10, 0.1)) == pytest.approx(20.0)
    assert snr_db(np.zeros(3), np.ones(3)) == -np.inf


def test_snr_of_silent_noise_is_a_parameter_error():
    with pytest.raises(ParameterError, match="noise is digital silence"):
        snr_db(np.ones(3), np.zeros(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("snr", [-10.0, -5.0, 0.0, 2.5, 5.0, 13.7, 20.0, 40.0])
def test_mix_at_snr_is_exact(snr, dtype):
    rng = np.random.default_rng(int(snr * 10) + 100)
    s = (0.1 * rng.standard_normal(16000)).astype(dtype)
    n = (3.0 * rng.standard_normal(16000)).astype(dtype)
    m, scaled, gain = mix_at_snr(s, n, snr)
    assert m.dtype == dtype and scaled.dtype == dtype and m.shape == s.shape
    assert abs(ref_snr(s, scaled) - snr) < 1e-6
    assert abs(snr_db(s, scaled) - snr) < 1e-6
    np.testing.assert_array_equal(m, s + scaled)
    np.testing.assert_allclose(scaled, n.astype(np.float64) * gain, rtol=1e-6)


def test_mix_gain_known_value():
    s = np.full(100, 2.0)  # energy 400
    n = np.ones(100)  # energy 100
    _, scaled, gain = mix_at_snr(s, n, 0.0)
    assert gain == pytest.approx(2.0, rel=1e-15)
    np.testing.assert_allclose(scaled, 2.0)
    _, _, gain = mix_at_snr(s, n, 20.0)  # 20 dB: noise energy 4 → gain 0.2
    assert gain == pytest.approx(0.2, rel=1e-12)


def test_mix_does_not_modify_inputs():
    s, n = np.ones(10), np.full(10, 0.5)
    mix_at_snr(s, n, 3.0)
    assert np.all(s == 1.0) and np.all(n == 0.5)


@pytest.mark.parametrize(
    ("speech", "noise", "snr", "needle"),
    [
        (np.zeros(100), np.ones(100), 0.0, "speech is digital silence"),
        (np.ones(100), np.zeros(100), 0.0, "noise is digital silence"),
        (np.ones(100), np.ones(99), 0.0, "speech shape (100,) != noise shape (99,)"),
        (np.ones(100), np.ones(100), float("nan"), "snr=nan must be finite"),
        (np.ones(100), np.ones(100), float("inf"), "snr=inf must be finite"),
        (np.ones(100, np.int16), np.ones(100), 0.0, "speech dtype=int16"),
        (np.ones((1, 100)), np.ones((1, 100)), 0.0, "speech has ndim=2"),
        (np.array([1.0, np.nan]), np.ones(2), 0.0, "speech contains NaN"),
    ],
)
def test_mix_rejects(speech, noise, snr, needle):
    with pytest.raises(ParameterError) as e:
        mix_at_snr(speech, noise, snr)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    ("n_noise", "n_samples", "offset", "expected"),
    [
        (3, 7, 0, [0, 1, 2, 0, 1, 2, 0]),  # loop
        (3, 7, 2, [2, 0, 1, 2, 0, 1, 2]),  # loop from an offset
        (10, 4, 3, [3, 4, 5, 6]),  # crop
        (10, 4, 13, [3, 4, 5, 6]),  # offset taken modulo the length
        (10, 4, 8, [8, 9, 0, 1]),  # crop that wraps around
        (10, 4, -1, [9, 0, 1, 2]),
        (5, 5, 0, [0, 1, 2, 3, 4]),
        (1, 3, 0, [0, 0, 0]),
    ],
)
def test_fit_length(n_noise, n_samples, offset, expected):
    noise = np.arange(n_noise, dtype=np.float32)
    out = fit_length(noise, n_samples, offset=offset)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_fit_length_rejects():
    with pytest.raises(ParameterError, match="n_samples=0 must be >= 1"):
        fit_length(np.ones(4), 0)
    with pytest.raises(ParameterError, match="noise has 0 samples"):
        fit_length(np.ones(0), 4)
    with pytest.raises(ParameterError, match="noise has ndim=2"):
        fit_length(np.ones((2, 4)), 4)
