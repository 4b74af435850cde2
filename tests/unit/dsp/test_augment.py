"""Augmentation maths with known answers: speed, telephone band, level, RIR split and convolution."""

from __future__ import annotations

import numpy as np
import pytest

from batchsep.dsp import augment as aug
from batchsep.errors import ParameterError

SR = 16000


def _sine(freq: float, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)


def _peak_hz(x: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_by_one_over_factor_and_scales_pitch(factor):
    x = _sine(440.0, 2.0)
    y = aug.speed_perturb(x, factor, SR)
    assert y.shape[0] == aug.speed_length(x.size, factor) == round(x.size / factor)
    assert abs(y.shape[0] - x.size / factor) <= 0.5
    # the tone moves by the factor (within one FFT bin of the 1.8 s output)
    assert _peak_hz(y) == pytest.approx(440.0 * factor, abs=1.0)


def test_speed_one_is_the_identity():
    x = _sine(300.0)
    assert np.array_equal(aug.speed_perturb(x, 1.0, SR), x)
    with pytest.raises(ParameterError):
        aug.speed_perturb(x, 0.0, SR)


def test_telephone_band_has_no_energy_above_4_khz_and_little_below_300_hz():
    x = np.random.default_rng(0).standard_normal(2 * SR)
    y = aug.telephone_band(x, SR)
    assert y.shape == x.shape
    seg = y[SR // 4 :]  # past the filters' start-up; Hann window: no leakage from the edges
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) ** 2
    f = np.fft.rfftfreq(seg.size, 1 / SR)
    total = spec.sum()
    assert spec[f > 4000].sum() / total < 1e-10  # below -100 dB (measured: -139 dB)
    assert spec[f < 100].sum() / total < 1e-3
    assert spec[(f > 500) & (f < 3000)].sum() / total > 0.8


def test_telephone_band_is_linear():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(SR), rng.standard_normal(SR)
    np.testing.assert_allclose(
        aug.telephone_band(a + b, SR),
        aug.telephone_band(a, SR) + aug.telephone_band(b, SR),
        atol=1e-5,
    )  # soxr computes in float32: linear up to its rounding (-100 dB here)


@pytest.mark.parametrize("target", [-45.0, -26.0, -15.0])
def test_level_gain_hits_the_target_within_0_1_db(target):
    x = 0.3 * np.random.default_rng(2).standard_normal(SR)
    assert aug.rms_dbfs(x * aug.level_gain(x, target)) == pytest.approx(target, abs=0.1)
    assert aug.rms_dbfs(_sine(100.0)) == pytest.approx(-3.0103, abs=1e-3)
    with pytest.raises(ParameterError):
        aug.level_gain(np.zeros(10), -20.0)


def test_a_delta_rir_reproduces_the_input_exactly():
    x = np.random.default_rng(3).standard_normal(1000)
    rir = np.zeros(300)
    rir[57] = 0.25  # a delayed, scaled delta: normalised to gain 1 at its lag
    full, early, lag = aug.split_rir(rir, SR)
    assert lag == 40 and full[lag] == 1.0 and np.array_equal(full, early)
    assert np.array_equal(aug.convolve_aligned(x, full, lag), x)
    assert np.array_equal(aug.convolve_aligned(x, early, lag), x)


def test_split_rir_keeps_50_ms_of_early_reflections_aligned_on_the_direct_path():
    rir = aug.shoebox_rir((6.0, 5.0, 3.0), (2.0, 3.0, 1.5), (4.0, 2.0, 1.2), 0.5, SR)
    again = aug.shoebox_rir((6.0, 5.0, 3.0), (2.0, 3.0, 1.5), (4.0, 2.0, 1.2), 0.5, SR)
    assert np.array_equal(rir, again)  # deterministic (no random images, one thread)
    full, early, lag = aug.split_rir(rir, SR, early_ms=50.0)
    assert full[lag] == 1.0 and np.argmax(np.abs(full)) == lag
    cut = lag + 800  # 50 ms at 16 kHz
    assert np.array_equal(early[: cut + 1], full[: cut + 1]) and not early[cut + 1 :].any()
    assert np.sum(full[cut + 1 :] ** 2) > 0.01 * np.sum(full**2)  # a real late tail
    # direct path: distance / c, plus pyroomacoustics' fractional-delay filter
    x = np.zeros(4000)
    x[1000] = 1.0
    y = aug.convolve_aligned(x, full, lag)
    assert int(np.argmax(np.abs(y))) == 1000


def test_add_noise_at_sets_the_relative_level():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(SR), 3.0 * rng.standard_normal(SR)
    total, g = aug.add_noise_at(a, b, -6.0)
    assert 10 * np.log10(np.sum((g * b) ** 2) / np.sum(a**2)) == pytest.approx(-6.0, abs=1e-9)
    assert np.allclose(total, a + g * b)


def test_pitch_shift_keeps_length_and_moves_the_tone():
    x = _sine(400.0, 1.0)
    y = aug.pitch_shift(x, 2.0, SR)
    assert y.shape == x.shape
    assert _peak_hz(y) == pytest.approx(400.0 * 2 ** (2 / 12), rel=0.02)
