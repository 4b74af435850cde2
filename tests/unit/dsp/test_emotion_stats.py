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
