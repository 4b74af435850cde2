"""Log-mel features: shapes, dB range, known answers, librosa cross-check, padding/cropping, config."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from batchsep.config import config_from_dict
from batchsep.dsp.mel import (
    EmotionFeatureConfig,
    LogMel,
    emotion_features,
    fix_frames,
    log_mel,
    mel_filterbank,
    normalize_utterance,
)
from batchsep.errors import ConfigError, ParameterError

SR = 16000


def noise(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def tone(freq, seconds, *, sr=SR, amp=0.5, phase=0.0):
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


@pytest.mark.parametrize("n", [1, 399, 400, 16000, 51199, 51200])
def test_log_mel_shape(n):
    m = log_mel(noise(n, seed=n))
    assert m.shape == (80, 1 + max(n, 513) // 400)
    assert m.dtype == np.float32


def test_batched_torch_and_float64():
    x = noise((2, 3, 8000))
    m = log_mel(torch.from_numpy(x))
    assert isinstance(m, torch.Tensor) and m.shape == (2, 3, 80, 21)
    one = log_mel(x[1, 2])
    np.testing.assert_allclose(m[1, 2].numpy(), one, atol=1e-4)
    m64 = log_mel(x.astype(np.float64))
    assert m64.dtype == np.float64
    np.testing.assert_allclose(m64, m.numpy(), atol=1e-3)


def test_matches_librosa():
    x = noise(20000, seed=3)
    ours = log_mel(x, n_fft=1024, hop_length=400, top_db=80.0)
    S = librosa.feature.melspectrogram(
        y=x, sr=SR, n_fft=1024, hop_length=400, n_mels=80, power=2.0, center=True,
        pad_mode="reflect", window="hann",
    )  # fmt: skip
    ref = librosa.power_to_db(S, ref=np.max, top_db=80.0)
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_db_range_and_gain_invariance():
    x = np.concatenate([np.zeros(8000, np.float32), noise(16000)])
    m = log_mel(x, top_db=50.0)
    assert float(m.max()) == 0.0
    assert float(m.min()) == pytest.approx(-50.0)  # the silent half sits at the floor
    np.testing.assert_allclose(log_mel(3.0 * x, top_db=50.0), m, atol=1e-4)


def test_tone_peaks_in_its_mel_band():
    centres = librosa.mel_frequencies(n_mels=82, fmin=0.0, fmax=SR / 2)[1:-1]
    for freq in (300.0, 1000.0, 3500.0):
        m = log_mel(tone(freq, 1.0))
        assert isinstance(m, np.ndarray)
        band = int(np.argmax(m[:, 5:-5].mean(axis=1)))
        assert band == int(np.argmin(np.abs(centres - freq))), freq


def test_digital_silence_is_finite_zeros():
    m = log_mel(np.zeros(16000, np.float32))
    assert np.all(m == 0.0)


def test_filterbank_is_cached_and_read_only():
    a = mel_filterbank(sample_rate=SR, n_fft=1024, n_mels=80)
    assert a is mel_filterbank(sample_rate=SR, n_fft=1024, n_mels=80)
    assert a.shape == (80, 513) and not a.flags.writeable
    assert np.all(a.sum(axis=1) > 0)  # no empty band


@pytest.mark.parametrize(
    "kwargs",
    [{"n_mels": 0}, {"hop_length": 2048}, {"fmax": 9000.0}, {"fmin": 5000.0, "fmax": 4000.0},
     {"top_db": 0.0}, {"sample_rate": 0}],
)  # fmt: skip
def test_log_mel_rejects_bad_parameters(kwargs):
    with pytest.raises(ParameterError):
        log_mel(noise(4000), **kwargs)


def test_log_mel_rejects_bad_audio():
    with pytest.raises(ParameterError, match="NaN"):
        log_mel(np.array([0.0, np.nan, 1.0], dtype=np.float32))
    with pytest.raises(ParameterError, match="floating point"):
        log_mel(np.arange(100))


def test_fix_frames_pad_centre_start_and_value():
    m = np.arange(80 * 50, dtype=np.float32).reshape(80, 50)
    out = fix_frames(m, 128)
    assert out.shape == (80, 128)
    np.testing.assert_array_equal(out[:, 39:89], m)
    assert np.all(out[:, :39] == m.min()) and np.all(out[:, 89:] == m.min())
    start = fix_frames(m, 128, mode="start", pad_value=-80.0)
    np.testing.assert_array_equal(start[:, :50], m)
    assert np.all(start[:, 50:] == -80.0)


def test_fix_frames_crop_centre_and_random():
    m = np.tile(np.arange(300, dtype=np.float32), (80, 1))
    np.testing.assert_array_equal(fix_frames(m, 128)[0], np.arange(86, 214))
    offsets = {
        int(fix_frames(m, 128, mode="random", rng=np.random.default_rng(s))[0, 0])
        for s in range(20)
    }
    assert len(offsets) > 10 and min(offsets) >= 0 and max(offsets) <= 172
    a = fix_frames(m, 128, mode="random", rng=np.random.default_rng(7))
    b = fix_frames(m, 128, mode="random", rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fix_frames(m, 300), m)


def test_fix_frames_batched_torch_pads_with_each_items_minimum():
    m = torch.stack([torch.full((80, 10), -5.0), torch.full((80, 10), -7.0)])
    m[:, :, 0] = 0.0
    out = fix_frames(m, 128)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 80, 128)
    assert out[0, 0, 0] == -5.0 and out[1, 0, 0] == -7.0


def test_fix_frames_errors():
    with pytest.raises(ParameterError, match="rng"):
        fix_frames(np.zeros((80, 10)), 128, mode="random")
    with pytest.raises(ParameterError, match="mode"):
        fix_frames(np.zeros((80, 10)), 128, mode="middle")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="n_frames"):
        fix_frames(np.zeros((80, 10)), 0)
    with pytest.raises(ParameterError, match="shape"):
        fix_frames(np.zeros(10), 128)


def test_normalize_utterance_per_item():
    m = noise((3, 80, 128)) * np.array([1.0, 5.0, 0.1], dtype=np.float32)[:, None, None] + 4.0
    as_numpy, as_torch = normalize_utterance(m), normalize_utterance(torch.from_numpy(m))
    assert isinstance(as_numpy, np.ndarray) and isinstance(as_torch, torch.Tensor)
    for out in (as_numpy, as_torch.numpy()):
        np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
        np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-3)
    assert np.all(normalize_utterance(np.full((80, 128), 3.0)) == 0.0)


def test_emotion_features_trims_then_fixes_frames():
    burst = tone(440.0, 1.0) + 0.05 * noise(SR, seed=1)
    padded = np.concatenate([np.zeros(2 * SR, np.float32), burst, np.zeros(2 * SR, np.float32)])
    raw = EmotionFeatureConfig(trim=False, normalize=False)
    trimmed = emotion_features(padded, EmotionFeatureConfig(normalize=False))
    untrimmed = emotion_features(padded, raw)
    assert isinstance(trimmed, np.ndarray)
    assert trimmed.shape == untrimmed.shape == (80, 128)
    # 1 s burst (~41 frames) centred in 128 frames when trimmed; cropped window of 5 s otherwise
    active = np.flatnonzero(trimmed.max(axis=0) > -40.0)
    assert 40 <= active.size <= 44 and abs(int(active.mean()) - 64) <= 2
    normed = emotion_features(padded)
    assert abs(float(normed.mean())) < 1e-4 and float(normed.std()) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ParameterError, match="trim"):
        emotion_features(np.stack([padded, padded]))
    batched = emotion_features(np.stack([padded, padded]), raw)
    assert batched.shape == (2, 80, 128)


def test_logmel_module_matches_function():
    x = torch.from_numpy(tone(800.0, 2.0))
    np.testing.assert_allclose(LogMel()(x).numpy(), emotion_features(x.numpy()), atol=1e-5)


def test_config_round_trip_and_rules():
    c = EmotionFeatureConfig()
    assert c.duration_s == pytest.approx(3.2)
    assert config_from_dict(c.to_dict()) == c
    assert EmotionFeatureConfig.from_yaml(EmotionFeatureConfig(n_fft=2048).to_yaml()).n_fft == 2048
    with pytest.raises(ParameterError):
        EmotionFeatureConfig(hop_length=2000)
    with pytest.raises(ConfigError):
        EmotionFeatureConfig.from_dict({"n_mels": 0})
