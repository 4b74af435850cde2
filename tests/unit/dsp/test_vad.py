"""Energy VAD: frame levels, burst boundaries, silence, clicks, bounded voiced segments, validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from batchsep.dsp.vad import frame_levels_db, trim_silence, voiced_segments
from batchsep.errors import ParameterError

SR = 16000
FRAME = 400  # 25 ms at 16 kHz


def background(seconds, *, level_db=-60.0, seed=0):
    """White noise at ``level_db`` dB full scale (mean square)."""
    rng = np.random.default_rng(seed)
    return (10 ** (level_db / 20) * rng.standard_normal(round(seconds * SR))).astype(np.float32)


def add_burst(x, start_s, end_s, *, freq=220.0, amp=0.3):
    a, b = round(start_s * SR), round(end_s * SR)
    t = np.arange(b - a) / SR
    x[a:b] += (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return a, b


def test_frame_levels_known_answers():
    t = np.arange(SR) / SR
    levels, frame, hop = frame_levels_db(np.sin(2 * np.pi * 1000 * t), SR)
    assert (frame, hop) == (400, 160)
    assert levels.shape == (1 + -(-(SR - 400) // 160),)
    np.testing.assert_allclose(levels[:-1], 10 * np.log10(0.5), atol=0.01)  # -3.01 dB
    silent, _, _ = frame_levels_db(np.zeros(1000), SR)
    assert np.all(np.isneginf(silent))
    short, _, _ = frame_levels_db(np.ones(10), SR)  # one zero-padded frame: 10/400 of full power
    np.testing.assert_allclose(short, [10 * np.log10(10 / 400)])


@pytest.mark.parametrize("seed", range(3))
def test_trim_finds_tone_burst_within_a_frame(seed):
    rng = np.random.default_rng(seed)
    start_s, end_s = rng.uniform(0.3, 0.9), rng.uniform(1.6, 2.4)
    x = background(3.0, seed=seed)
    a, b = add_burst(x, start_s, end_s)
    s, e = trim_silence(x, SR)
    assert a - FRAME <= s <= a
    assert b <= e <= b + FRAME
    s2, e2 = trim_silence(x, SR, pad_s=0.1)
    assert (s2, e2) == (s - 1600, e + 1600)


def test_silence_gives_nothing():
    assert trim_silence(np.zeros(SR, np.float32), SR) == (0, 0)
    assert voiced_segments(np.zeros(10 * SR), SR, max_len_s=4.0, min_len_s=0.5) == []
    # a click shorter than min_speech_s is not speech
    x = np.zeros(SR, np.float32)
    x[8000:8016] = 0.9
    assert trim_silence(x, SR) == (0, 0)


def test_click_before_speech_is_ignored():
    x = background(2.0)
    x[1600:1632] = 0.9  # 2 ms click at 0.1 s
    a, _ = add_burst(x, 1.0, 1.5)
    s, _ = trim_silence(x, SR)
    assert a - FRAME <= s <= a


def test_steady_signal_is_all_active():
    t = np.arange(2 * SR) / SR
    assert trim_silence(0.1 * np.sin(2 * np.pi * 300 * t), SR) == (0, 2 * SR)


def test_quiet_noise_floor_is_never_active():
    assert trim_silence(background(2.0, level_db=-80.0), SR) == (0, 0)


def test_voiced_segments_long_file_bounded():
    x = background(60.0, seed=4)
    bursts = [(1.0, 1.3), (3.0, 5.0), (5.2, 6.0), (10.0, 19.0), (30.0, 30.9), (40.0, 52.5)]
    truth = [add_burst(x, a, b, freq=150 + 40 * i) for i, (a, b) in enumerate(bursts)]
    segs = voiced_segments(x, SR, max_len_s=4.0, min_len_s=0.5, max_gap_s=0.3, pad_s=0.0)
    lengths = np.array([e - s for s, e in segs])
    assert np.all(lengths <= 4 * SR) and np.all(lengths >= 0.5 * SR)
    assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(segs))  # sorted, disjoint
    # 1.0-1.3 s is too short; 3-5 and 5.2-6 join (gap 0.2 s) into 3 s; 9 s -> 3 pieces; 12.5 s -> 4
    assert len(segs) == 1 + 3 + 1 + 4
    first = segs[0]
    assert truth[1][0] - FRAME <= first[0] <= truth[1][0]
    assert truth[2][1] <= first[1] <= truth[2][1] + FRAME
    covered = sum(e - s for s, e in segs)
    speech = sum(b - a for a, b in truth[1:])
    assert speech <= covered <= speech + 0.2 * SR + 10 * FRAME  # the joined 0.2 s gap + frame slack


def test_voiced_segments_split_exactly_at_max_len():
    x = background(10.0)
    add_burst(x, 1.0, 9.0)
    segs = voiced_segments(x, SR, max_len_s=2.0, min_len_s=0.2, pad_s=0.0)
    assert len(segs) in (4, 5)
    assert all(SR <= e - s <= 2 * SR for s, e in segs)
    assert all(e1 == s2 for (_, e1), (s2, _) in itertools.pairwise(segs))  # contiguous pieces


def test_torch_input_matches_numpy():
    x = background(2.0)
    add_burst(x, 0.5, 1.5)
    assert trim_silence(torch.from_numpy(x), SR) == trim_silence(x, SR)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: voiced_segments(x, SR, max_len_s=2.0, min_len_s=1.5), "min_len_s"),
        (lambda x: voiced_segments(x, SR, max_len_s=0.0, min_len_s=0.0), "max_len_s"),
        (lambda x: trim_silence(x, 0), "sr"),
        (lambda x: trim_silence(x, SR, top_db=-1.0), "top_db"),
        (lambda x: trim_silence(np.stack([x, x]), SR), "ndim"),
        (lambda x: trim_silence(np.where(x > 0, np.nan, x), SR), "NaN"),
        (lambda x: frame_levels_db(x, SR, frame_s=0.01, hop_s=0.02), "hop_s"),
    ],
)
def test_rejects_bad_input(call, match):
    with pytest.raises(ParameterError, match=match):
        call(background(1.0))
