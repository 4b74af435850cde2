"""Emotion training data: features identical to the tagger's, actor-disjoint splits, batches, loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from batchsep.dsp.mel import EmotionFeatureConfig, emotion_features
from batchsep.errors import ParameterError, StorageError
from batchsep.training.data.emotion import (
    EmotionCorpus,
    finish,
    load_audio_corpus,
    load_emotion_corpus,
    trim_frames,
    utterance_log_mel,
)
from batchsep.training.data.emotion_batches import EmotionBatches, shift_mels

SR = 16000


def _utterance(seed: int, f0: float = 220.0, seconds: float = 1.2) -> np.ndarray:
    """0.4 s of near-silence, a harmonic tone burst, 0.4 s of near-silence (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    quiet = 1e-4 * rng.standard_normal(int(0.4 * SR))
    return np.concatenate([quiet, 0.3 * tone, quiet]).astype(np.float32)


def _corpus(n_actors: int = 6, per_actor: int = 8, frames: int = 60) -> EmotionCorpus:
    rng = np.random.default_rng(0)
    mels, labels, actors, rels = [], [], [], []
    for a in range(1, n_actors + 1):
        for e in range(per_actor):
            mels.append(rng.uniform(-80, 0, (80, frames + e)).astype(np.float32))
            labels.append(e % 8)
            actors.append(a)
            rels.append(f"Actor_{a:02d}/03-01-{e % 8 + 1:02d}-01-01-01-{a:02d}.wav")
    return EmotionCorpus(mels, np.array(labels), np.array(actors), rels, EmotionFeatureConfig())


def test_utterance_log_mel_then_finish_equals_emotion_features() -> None:
    x = _utterance(1)
    c = EmotionFeatureConfig()
    m = utterance_log_mel(x, c)
    assert m.shape[0] == 80 and m.shape[1] < 128  # trimmed: ~1.2 s of tone -> ~49 frames
    np.testing.assert_array_equal(finish(m, c), emotion_features(x, c))


def test_split_is_actor_disjoint_and_complete() -> None:
    c = _corpus()
    parts = c.split(valid_actors=[2], test_actors=[5, 6])
    actors = {k: set(v.actors.tolist()) for k, v in parts.items()}
    assert actors == {"train": {1, 3, 4}, "valid": {2}, "test": {5, 6}}
    assert sum(len(v) for v in parts.values()) == len(c)
    # labels travel with their items
    for part in parts.values():
        for m, y, rel in zip(part.mels, part.labels, part.rel_paths):
            assert int(rel.split("/")[1].split("-")[2]) - 1 == y
            assert m.shape[0] == 80
    with pytest.raises(ParameterError, match="both valid_actors and test_actors"):
        c.split(valid_actors=[2], test_actors=[2])


def test_batches_shapes_labels_and_determinism() -> None:
    c = _corpus()
    b = EmotionBatches(c, batch_size=5, seed=3)
    assert len(b) == len(c) // 5  # shuffled: incomplete batch dropped
    first = list(b(0))
    again = list(b(0))
    other = list(b(1))
    assert len(first) == len(b)
    for batch in first:
        assert batch["logmel"].shape == (5, 80, 128) and batch["logmel"].dtype == torch.float32
        assert batch["label"].dtype == torch.int64
        # normalised per item
        assert torch.allclose(batch["logmel"].mean(dim=(1, 2)), torch.zeros(5), atol=1e-4)
    assert all(torch.equal(p["logmel"], q["logmel"]) for p, q in zip(first, again))
    assert not all(torch.equal(p["label"], q["label"]) for p, q in zip(first, other))


def test_unaugmented_batches_are_the_tagger_features_in_order() -> None:
    c = _corpus(n_actors=2, per_actor=7)
    b = EmotionBatches(c, batch_size=4, shuffle=False, augment=False)
    batches = list(b(5))
    assert [len(x["label"]) for x in batches] == [4, 4, 4, 2]  # the last partial batch is kept
    x = torch.cat([x["logmel"] for x in batches]).numpy()
    np.testing.assert_array_equal(x, c.features())
    np.testing.assert_array_equal(torch.cat([x["label"] for x in batches]).numpy(), c.labels)


def test_ranks_get_disjoint_equal_shares() -> None:
    c = _corpus(n_actors=3, per_actor=7)  # 21 items, 2 ranks -> 10 each, 3 batches of 3
    rows = c.features().reshape(len(c), -1)
    taken = []
    for rank in (0, 1):
        b = EmotionBatches(c, batch_size=3, seed=1, augment=False, rank=rank, world_size=2)
        b.shuffle = True  # unaugmented rows identify the items; keep the training order
        batches = list(b(2))
        assert len(b) == len(batches) == 3
        x = torch.cat([x["logmel"] for x in batches]).numpy().reshape(9, -1)
        idx = [int(np.flatnonzero((rows == r).all(1))[0]) for r in x]
        np.testing.assert_array_equal(torch.cat([x["label"] for x in batches]), c.labels[idx])
        taken.append(set(idx))
    assert len(taken[0]) == len(taken[1]) == 9 and not taken[0] & taken[1]
    with pytest.raises(ParameterError, match="rank"):
        EmotionBatches(c, rank=2, world_size=2)


def test_shift_mels_known_answer() -> None:
    m = np.arange(5.0)[:, None] * np.ones((1, 2))
    np.testing.assert_array_equal(shift_mels(m, 2)[:, 0], [0, 0, 0, 1, 2])
    np.testing.assert_array_equal(shift_mels(m, -1)[:, 0], [1, 2, 3, 4, 4])
    assert shift_mels(m, 0) is m


def test_trim_frames_finds_the_loud_span() -> None:
    m = np.full((80, 100), -80.0)
    m[:, 30:70] = -10.0
    m[:, 50] = 0.0
    assert trim_frames(m) == (30, 70)
    assert trim_frames(np.full((80, 10), -80.0)) == (0, 10)  # flat: every frame at the peak
    with pytest.raises(ParameterError):
        trim_frames(np.zeros(10))


def _write_corpus(root: Path, rate: int = 22050) -> None:
    for actor in (1, 2):
        d = root / f"Actor_{actor:02d}"
        d.mkdir(parents=True)
        for emo in (1, 5):
            x = _utterance(actor * 10 + emo, f0=150.0 * emo)
            y = np.interp(np.arange(int(len(x) * rate / SR)) * SR / rate, np.arange(len(x)), x)
            sf.write(d / f"03-01-{emo:02d}-01-01-01-{actor:02d}.flac", np.stack([y, y], 1), rate)
    (root / "notes.wav").write_bytes(b"")  # not a RAVDESS name: skipped, never decoded


def test_load_audio_corpus_resamples_labels_and_caches(tmp_path: Path) -> None:
    root = tmp_path / "ravdess"
    _write_corpus(root)
    cache = str(tmp_path / "cache.npz")
    c = load_audio_corpus(str(root), cache_uri=cache)
    assert c.rel_paths[0] == "Actor_01/03-01-01-01-01-01-01.flac"
    assert c.labels.tolist() == [0, 4, 0, 4] and c.actors.tolist() == [1, 1, 2, 2]
    assert all(m.shape[0] == 80 and 40 <= m.shape[1] <= 60 for m in c.mels)
    again = load_audio_corpus(str(root), cache_uri=cache)  # from the cache
    for m, n in zip(c.mels, again.mels):
        np.testing.assert_array_equal(m, n)
    other = load_audio_corpus(str(root), EmotionFeatureConfig(n_mels=64), cache_uri=cache)
    assert other.mels[0].shape[0] == 64  # another config: the cache is not reused
    with pytest.raises(StorageError, match="RAVDESS"):
        load_audio_corpus(str(root / "notes.wav"))


def test_load_emotion_corpus_from_a_logmel_features_run(tmp_path: Path) -> None:
    from batchsep.pipeline.features.driver import LogMelFeatures, features
    from batchsep.pipeline.scan.driver import scan

    root, run = tmp_path / "ravdess", tmp_path / "run"
    _write_corpus(root)
    (root / "notes.wav").unlink()
    scan(str(root), str(run))
    from_scan = load_emotion_corpus(str(run))  # a scan run: decoded from the manifest's files
    features(str(run), config=LogMelFeatures())
    from_run = load_emotion_corpus(str(run))  # now a features run: Parquet, trimmed in mel domain
    assert from_run.rel_paths == from_scan.rel_paths
    assert from_run.labels.tolist() == from_scan.labels.tolist()
    for a, b in zip(from_run.mels, from_scan.mels):
        assert abs(a.shape[1] - b.shape[1]) <= 3  # mel-domain trim within a few frames
