"""Resampling (soxr) and downmix: lengths, tone frequencies, anti-aliasing, validation."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest

from batchsep.dsp.resample import resample, to_mono, to_rate_mono
from batchsep.errors import ParameterError


def tone(freq, sr, seconds=1.0, amp=0.5, dtype=np.float32):
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(dtype)


def peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


@pytest.mark.parametrize(
    ("n", "orig", "target", "expected"),
    [(48000, 48000, 16000, 16000), (48001, 48000, 16000, 16000), (1001, 48000, 16000, 334),
     (22050, 22050, 16000, 16000), (16000, 16000, 22050, 22050), (1000, 8000, 16000, 2000),
     (10, 16000, 22050, 14), (3, 44100, 16000, 1), (16000, 16000, 16000, 16000)],
)  # fmt: skip
def test_output_length(n, orig, target, expected):
    assert expected == round(n * target / orig)
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    y = resample(x, orig, target)
    assert y.shape == (expected,) and y.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channels_first_kept(dtype):
    x = np.stack([tone(440, 48000, 0.5, dtype=dtype), tone(1000, 48000, 0.5, dtype=dtype)])
    y = resample(x, 48000, 16000)
    assert y.shape == (2, 8000) and y.dtype == dtype and y.flags.c_contiguous
    assert peak_hz(y[0], 16000) == pytest.approx(440, abs=2)
    assert peak_hz(y[1], 16000) == pytest.approx(1000, abs=2)
    np.testing.assert_allclose(y[1], resample(x[1], 48000, 16000), atol=1e-6)


@pytest.mark.parametrize(
    ("freq", "orig", "target"),
    [
        (1000, 48000, 16000),
        (440, 22050, 16000),
        (3000, 16000, 48000),
        (7000, 44100, 16000),
        (250, 8000, 16000),
    ],
)
def test_tone_frequency_and_level_kept(freq, orig, target):
    x = tone(freq, orig, seconds=1.0, amp=0.5)
    y = resample(x, orig, target)
    assert peak_hz(y, target) == pytest.approx(freq, abs=1.5)
    mid = y[target // 10 : -target // 10]  # away from the filter's edge transients
    rms = np.sqrt(np.mean(mid.astype(np.float64) ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    # and the waveform itself is the tone at the new rate (no delay)
    ref = tone(freq, target, seconds=1.0, amp=0.5, dtype=np.float64)
    np.testing.assert_allclose(mid, ref[target // 10 : -target // 10], atol=2e-3)


def test_anti_aliasing_removes_content_above_new_nyquist():
    """10 kHz cannot exist at 16 kHz: it must be filtered out, not folded to 6 kHz."""
    y = resample(tone(10000, 48000, amp=0.5), 48000, 16000)
    mid = y[1600:-1600].astype(np.float64)
    assert np.sqrt(np.mean(mid**2)) < 0.5 / np.sqrt(2) * 1e-3  # at least 60 dB down


def test_same_rate_returns_input():
    x = tone(100, 16000, 0.1)
    assert resample(x, 16000, 16000) is x
    numpy_rate = cast(
        int, np.int64(16000)
    )  # declared int; a numpy integer (a header field) is taken too
    assert resample(x, numpy_rate, 16000) is x


@pytest.mark.parametrize(
    ("x", "orig", "target", "needle"),
    [
        (np.zeros(100, np.int16), 16000, 8000, "dtype=int16"),
        (np.zeros(100, np.float16), 16000, 8000, "dtype=float16 must be float32 or float64"),
        (np.array([0.0, np.nan] * 50), 16000, 8000, "NaN"),
        (np.zeros((2, 2, 100), np.float32), 16000, 8000, "ndim=3"),
        (np.zeros(0, np.float32), 16000, 8000, "0 samples"),
        (np.zeros(100, np.float32), 0, 8000, "orig_sr=0 must be an integer > 0"),
        (np.zeros(100, np.float32), 16000, -8000, "target_sr=-8000"),
        (np.zeros(100, np.float32), 16000.0, 8000, "orig_sr=16000.0"),
    ],
)
def test_rejects(x, orig, target, needle):
    with pytest.raises(ParameterError) as e:
        resample(x, orig, target)
    assert needle in str(e.value)


def test_to_mono_known_values():
    x = np.array([[1.0, 2.0, -1.0], [3.0, 0.0, 1.0]], np.float32)
    y = to_mono(x)
    assert y.dtype == np.float32 and y.shape == (3,)
    np.testing.assert_array_equal(y, [2.0, 1.0, 0.0])
    mono = np.arange(5, dtype=np.float64)
    assert to_mono(mono) is mono
    assert to_mono(x[:1]).shape == (3,)


def test_to_mono_rejects():
    with pytest.raises(ParameterError, match="ndim=3"):
        to_mono(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ParameterError, match="floating point"):
        to_mono(np.zeros((2, 3), np.int32))


def test_to_rate_mono():
    left = tone(1000, 48000, 0.5, dtype=np.float64)
    x = np.stack([left, -left + 2 * left])  # both channels equal: the mono mix is the tone
    y = to_rate_mono(x, 48000, 16000)
    assert y.shape == (8000,) and y.dtype == np.float32
    assert peak_hz(y, 16000) == pytest.approx(1000, abs=2)
    np.testing.assert_allclose(y, resample(left.astype(np.float32), 48000, 16000), atol=1e-6)
