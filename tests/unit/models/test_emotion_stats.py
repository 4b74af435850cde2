"""emotion-stats: the MLP ensemble over utterance statistics, its training and temperature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from batchsep.errors import ParameterError
from batchsep.models.base import deserialize, serialize
from batchsep.models.emotion_stats import EmotionStats, EmotionStatsConfig
from batchsep.pipeline.train.emotion_stats import (
    actor_folds,
    cross_validate,
    ece,
    fit_stats_model,
    fit_temperature,
    softmax_t,
)


def _blobs(
    n_per: int = 30, d: int = 12, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (8, d))
    y = np.repeat(np.arange(8), n_per)
    x = centres[y] + rng.normal(0, 1.0, (y.size, d)) + 50.0  # offset: the standardiser must act
    actor = np.tile(np.arange(1, 5), y.size // 4 + 1)[: y.size]
    return x, y, actor


def test_forward_shapes_probabilities_and_temperature() -> None:
    m = EmotionStats(EmotionStatsConfig(n_features=12, n_members=3, temperature=2.0)).eval()
    x = torch.randn(4, 12)
    logp = m(x)
    assert logp.shape == (4, 8) and torch.allclose(logp.exp().sum(1), torch.ones(4), atol=1e-5)
    p = m.predict_proba(x)
    assert torch.allclose(p, torch.softmax(logp / 2.0, -1), atol=1e-6)
    with pytest.raises(ParameterError):
        m(torch.randn(4, 11))
    with pytest.raises(ParameterError):
        EmotionStatsConfig(temperature=0.0)


def test_fit_learns_separable_classes_and_roundtrips() -> None:
    x, y, _ = _blobs()
    cfg = EmotionStatsConfig(n_features=12, n_members=2, hidden=32)
    m = fit_stats_model(x, y, cfg, epochs=15, lr=1e-2)
    acc = float((m(torch.from_numpy(x).float()).argmax(1).numpy() == y).mean())
    assert acc > 0.9, acc
    again = deserialize(serialize(m))
    assert isinstance(again, EmotionStats)
    xt = torch.from_numpy(x[:5]).float()
    assert torch.allclose(again(xt), m(xt)) and again.mean.abs().sum() > 0


def test_cross_validation_keeps_actors_apart_and_calibration_helpers() -> None:
    x, y, actor = _blobs()
    folds = actor_folds(actor.tolist(), 4)
    assert folds == [(1,), (2,), (3,), (4,)]
    data = {"x": x, "y": y, "actor": actor, "aug_x": x[:8] + 0.1, "aug_of": np.arange(8)}
    cfg = EmotionStatsConfig(n_features=12, n_members=1, hidden=32)
    logp = cross_validate(data, cfg, folds, epochs=40, lr=1e-2)
    assert logp.shape == (y.size, 8) and (logp.argmax(1) == y).mean() > 0.8
    # an over-confident predictor gets T > 1, and scaling lowers its ECE
    sharp = np.log(softmax_t(logp, 1.0) + 1e-12) * 4.0
    noisy = sharp.copy()
    noisy[::3] = np.roll(noisy[::3], 1, axis=1)  # a third confidently wrong
    t = fit_temperature(noisy, y)
    assert t > 1.0 and ece(softmax_t(noisy, t), y) < ece(softmax_t(noisy, 1.0), y)
    with pytest.raises(ParameterError):
        actor_folds([1, 2], 3)


def test_speaker_standardise_uses_each_speakers_reference_rows() -> None:
    from batchsep.pipeline.train.emotion_stats import speaker_standardise

    rng = np.random.default_rng(0)
    groups = np.repeat([1, 2], 50)
    x = rng.normal(0, 1, (100, 3)) + np.where(groups == 1, 10.0, -5.0)[:, None]
    z = speaker_standardise(x, groups)
    for g in (1, 2):  # every speaker centred and scaled on its own
        assert np.allclose(z[groups == g].mean(0), 0, atol=1e-9)
        assert np.allclose(z[groups == g].std(0), 1, atol=1e-4)
    # copies normalised with their speaker's clean rows: a copy equal to a clean row maps to its z
    copies = speaker_standardise(x[[3, 60]], groups[[3, 60]], x, groups)
    assert np.allclose(copies, z[[3, 60]])
    with pytest.raises(ParameterError):
        speaker_standardise(x[:1], groups[:1])
