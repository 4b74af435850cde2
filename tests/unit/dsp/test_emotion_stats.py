"""Utterance statistics for emotion-stats: shape, finiteness, gain invariance, prosody."""

from __future__ import annotations

import numpy as np
import pytest

from batchsep.dsp.emotion_stats import N_STATS, STATS_SR, emotion_stats
from batchsep.errors import ParameterError


def _tone(f0: float, seconds: float = 1.0, glide: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * STATS_SR)) / STATS_SR
    f = f0 * 2 ** (glide * t / 12)  # glide: semitones per second
    phase = 2 * np.pi * np.cumsum(f) / STATS_SR
    x = sum(np.sin(k * phase) / k for k in range(1, 5))
    sil = np.zeros(STATS_SR // 5)
    return np.concatenate([sil, 0.3 * x, sil]).astype(np.float32)


def test_shape_finite_and_gain_invariant() -> None:
    x = _tone(150.0)
    a, b = emotion_stats(x), emotion_stats(0.05 * x)
    assert a.shape == (N_STATS,) and np.isfinite(a).all()
    # level-free: MFCCs are taken re the loudest mel bin, energy re the loudest frame
    assert np.allclose(a, b, atol=1e-2)


def test_f0_statistics_follow_pitch_and_glide() -> None:
    f0_block = slice(177, 185)  # 160 MFCC + 10 shape + 7 energy, then the 8 F0 values
    lo, hi = emotion_stats(_tone(110.0))[f0_block], emotion_stats(_tone(220.0))[f0_block]
    assert hi[0] - lo[0] == pytest.approx(12.0, abs=0.5)  # an octave is 12 semitones
    rising = emotion_stats(_tone(150.0, glide=6.0))[f0_block]
    assert rising[6] > 0 and lo[1] < rising[1]  # positive slope, larger spread


def test_rejects_bad_input() -> None:
    with pytest.raises(ParameterError):
        emotion_stats(np.zeros((2, 16000), np.float32))
    with pytest.raises(ParameterError):
        emotion_stats(np.zeros(100, np.float32))
    assert np.isfinite(emotion_stats(np.zeros(STATS_SR, np.float32))).all()  # silence: defined


def test_v2_groups_follow_spectral_tilt_and_formants() -> None:
    """Spectral slope (dB/kHz) is steeper for a darker sound; F1 of a low resonance is found near it."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(0)
    n = STATS_SR
    pulses = np.zeros(n)
    pulses[:: STATS_SR // 120] = 1.0  # a 120 Hz glottal-pulse train
    slope_block = slice(214 + 128 + 20, 214 + 128 + 20 + 12)
    formant_block = slice(214 + 160, 214 + 169)
    # one resonance at 700 Hz (bandwidth ~80 Hz) and one at 1800 Hz, 2600 Hz
    x = pulses + 1e-4 * rng.standard_normal(n)
    for fc in (700.0, 1800.0, 2600.0):
        r, th = np.exp(-np.pi * 80 / STATS_SR), 2 * np.pi * fc / STATS_SR
        x = lfilter([1.0], [1.0, -2 * r * np.cos(th), r * r], x)
    x = (0.3 * x / np.abs(x).max()).astype(np.float32)
    bright = np.diff(x, prepend=0.0).astype(np.float32)  # +6 dB/octave: a flatter tilt
    a, b = emotion_stats(x), emotion_stats(bright)
    assert b[slope_block][0] > a[slope_block][0]  # mean 0.1-4 kHz slope rises
    f1, f2 = a[formant_block][0], a[formant_block][1]  # mean F1, F2 in kHz
    assert f1 == pytest.approx(0.7, abs=0.12) and f2 == pytest.approx(1.8, abs=0.2)
