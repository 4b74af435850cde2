"""Mixture recipes: group rules, disjoint splits, seeded draws, exact-SNR rendering on the 24-bit grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soxr

from batchsep.config import config_from_dict
from batchsep.corpus import mixtures as mx
from batchsep.corpus import render as rd
from batchsep.corpus.mixtures import MixtureConfig, SourceFile
from batchsep.dsp.mix import snr_db
from batchsep.errors import ParameterError
from batchsep.io import audio


def corpus(n_speakers: int = 10, files: int = 4, classes: int = 3, recordings: int = 5):
    rng = np.random.default_rng(0)
    speech = [
        SourceFile(
            f"/s/{k}/{k}-{j}.flac", f"{k}/{k}-{j}.flac", int(rng.integers(8000, 40000)), str(k)
        )
        for k in range(100, 100 + n_speakers)
        for j in range(files)
    ]
    noise = [
        SourceFile(
            f"/n/c{c}/{r}-{c}-0-{s}.wav",
            f"c{c}/{r}-{c}-0-{s}.wav",
            int(rng.integers(4000, 64000)),
            f"c{c}",
            f"c{c}/{r}",
        )
        for c in range(classes)
        for r in range(1000 * c, 1000 * c + recordings)
        for s in range(2)
    ]
    return speech, noise


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("parent", "dog_bark"),
        ("dir", "urbansound8k/dog_bark"),
        ("top", "urbansound8k"),
        ("file", "urbansound8k/dog_bark/100032-3-0-17.flac"),
        ("recording", "urbansound8k/dog_bark/100032"),
        (r"re:^(\d+)-", "100032"),
        (r"re:-\d+-", "-3-"),
        (r"re:^speaker", None),
    ],
)
def test_group_rules(rule, expected):
    assert mx.group_of("urbansound8k/dog_bark/100032-3-0-17.flac", rule) == expected


def test_group_rules_edge_cases():
    assert mx.group_of("a.wav", "parent") == mx.ROOT_GROUP
    assert mx.group_of("a.wav", "top") == mx.ROOT_GROUP
    assert mx.group_of("household/aircon_0.flac", "recording") == "household/aircon_0.flac"
    assert mx.group_of("librispeech/61/61-70968-0000.flac", "parent") == "61"
    with pytest.raises(ParameterError, match="speaker_from='folder' must be one of"):
        MixtureConfig(speaker_from="folder")
    with pytest.raises(ParameterError, match="not a valid regular expression"):
        MixtureConfig(noise_clip_from="re:([")


def test_resampled_length_matches_soxr():
    for sr in (8000, 11025, 22050, 24000, 32000, 44100, 48000, 96000):
        for n in (1, 3, 7, 101, 1001, 12347, 44100):
            y = soxr.resample(np.zeros(n, np.float32), sr, 16000, quality="HQ")
            assert mx.resampled_length(n, sr, 16000) == len(y), (sr, n)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(10, (6, 2, 2)), (12, (8, 2, 2)), (4, (2, 1, 1)), (3, (1, 1, 1)), (2, (2, 0, 0))],
)
def test_split_counts(n, expected):
    assert mx.split_counts(n, 0.2, 0.2) == expected
    assert sum(expected) == n


def test_splits_disjoint_by_speaker_and_recording():
    speech, noise = corpus()
    cfg = MixtureConfig(seed=3)
    spk, clips = mx.assign_splits(speech, noise, cfg)
    assert sorted(spk.values()).count("valid") == 2 and sorted(spk.values()).count("test") == 2
    for c in range(3):  # every class is in every split (5 recordings: 3/1/1)
        in_class = [v for k, v in clips.items() if k.startswith(f"c{c}/")]
        assert sorted(in_class) == ["test", "train", "train", "train", "valid"]
    recipes = mx.draw_recipes(speech, noise, spk, clips, cfg)
    by_split: dict[str, tuple[set, set]] = {s: (set(), set()) for s in mx.SPLITS}
    for r in recipes:
        by_split[r.split][0].add(r.speaker)
        by_split[r.split][1].add(r.noise_clip)
    for a in mx.SPLITS:
        for b in mx.SPLITS:
            if a < b:
                assert not by_split[a][0] & by_split[b][0]
                assert not by_split[a][1] & by_split[b][1]
    assert [len(v[0]) for v in by_split.values()] == [6, 2, 2]
    # a different seed gives a different speaker split
    spk2, _ = mx.assign_splits(speech, noise, MixtureConfig(seed=4))
    assert spk2 != spk


def test_holdout_noise_class_unseen_in_training():
    speech, noise = corpus()
    cfg = MixtureConfig(holdout_noise_classes=("c1",), n_train=200, n_valid=50, n_test=50)
    spk, clips = mx.assign_splits(speech, noise, cfg)
    assert {v for k, v in clips.items() if k.startswith("c1/")} == {"valid", "test"}
    recipes = mx.draw_recipes(speech, noise, spk, clips, cfg)
    assert "c1" not in {r.noise_class for r in recipes if r.split == "train"}
    assert "c1" in {r.noise_class for r in recipes if r.split == "test"}
    with pytest.raises(ParameterError, match="'c9', which is not a noise class"):
        mx.assign_splits(speech, noise, MixtureConfig(holdout_noise_classes=("c9",)))


def test_draws_are_seeded_per_index_and_valid():
    speech, noise = corpus()
    cfg = MixtureConfig(n_train=400, n_valid=20, n_test=20, snr_min=-5, snr_max=5, seed=1)
    spk, clips = mx.assign_splits(speech, noise, cfg)
    recipes = mx.draw_recipes(speech, noise, spk, clips, cfg)
    assert recipes == mx.draw_recipes(speech, noise, spk, clips, cfg)
    fewer = mx.draw_recipes(speech, noise, spk, clips, dataclasses.replace(cfg, n_train=50))
    assert fewer[:50] == recipes[:50]  # growing a split keeps the first mixtures
    assert [r.mixture_id for r in recipes[:2]] == ["train-000000", "train-000001"]
    snrs = np.array([r.snr_db for r in recipes])
    assert snrs.min() >= -5 and snrs.max() <= 5 and abs(snrs.mean()) < 0.5 and snrs.std() > 2.5
    lengths = {s.uri: s.n_samples for s in [*speech, *noise]}
    for r in recipes:
        assert r.speech_offset == 0 and r.n_samples == lengths[r.speech_uri]
        n_noise = lengths[r.noise_uri]
        assert r.noise_looped == (n_noise < r.n_samples)
        assert 0 <= r.noise_offset < (n_noise if r.noise_looped else n_noise - r.n_samples + 1)
    classes = [r.noise_class for r in recipes if r.split == "train"]
    assert all(abs(classes.count(f"c{c}") / 400 - 1 / 3) < 0.08 for c in range(3))
    assert mx.recipes_hash(recipes) != mx.recipes_hash(fewer)


def test_draw_seed_redraws_the_mixtures_of_the_same_split():
    speech, noise = corpus()
    cfg = MixtureConfig(n_train=60, n_valid=10, n_test=10, snr_min=-5, snr_max=5, seed=1)
    spk, clips = mx.assign_splits(speech, noise, cfg)
    plain = mx.draw_recipes(speech, noise, spk, clips, cfg)
    assert (
        mx.draw_recipes(speech, noise, spk, clips, dataclasses.replace(cfg, draw_seed=1)) == plain
    )
    other = dataclasses.replace(cfg, draw_seed=7)
    assert mx.assign_splits(speech, noise, other) == (spk, clips)  # the split follows seed alone
    fresh = mx.draw_recipes(speech, noise, spk, clips, other)
    assert [(r.speech_uri, r.snr_db) for r in fresh] != [(r.speech_uri, r.snr_db) for r in plain]
    speakers = {split: {r.speaker for r in plain if r.split == split} for split in mx.SPLITS}
    for r in fresh:  # every fresh mixture keeps to its split's speakers
        assert r.speaker in speakers[r.split]


def test_max_seconds_crops_speech():
    speech, noise = corpus()
    cfg = MixtureConfig(n_train=100, n_valid=0, n_test=0, max_seconds=1.0)
    spk, clips = mx.assign_splits(speech, noise, cfg)
    recipes = mx.draw_recipes(speech, noise, spk, clips, cfg)
    lengths = {s.uri: s.n_samples for s in speech}
    assert max(r.n_samples for r in recipes) == 16000
    cropped = [r for r in recipes if lengths[r.speech_uri] > 16000]
    assert cropped and any(r.speech_offset > 0 for r in cropped)
    assert all(r.speech_offset + r.n_samples <= lengths[r.speech_uri] for r in recipes)


def test_too_few_speakers_is_a_clear_error():
    speech, noise = corpus(n_speakers=2)
    cfg = MixtureConfig()
    spk, clips = mx.assign_splits(speech, noise, cfg)
    with pytest.raises(ParameterError, match=r"split 'valid' needs 300 mixtures but has no speech"):
        mx.draw_recipes(speech, noise, spk, clips, cfg)


def test_config_validation_and_round_trip():
    cfg = MixtureConfig(holdout_noise_classes=("a", "b"), max_seconds=4.0)
    assert config_from_dict(cfg.to_dict()) == cfg
    for bad in (
        {"snr_min": 5, "snr_max": -5},
        {"n_train": -1},
        {"valid_fraction": 0.6, "test_fraction": 0.5},
        {"max_seconds": 0.0},
        {"max_peak": 1.0},
    ):
        with pytest.raises(ParameterError):
            MixtureConfig(**bad)


def _recipe(n=16000, noise_offset=0, looped=False, snr=3.0):
    return mx.Recipe(
        mixture_id="train-000000", split="train", index=0, speech_uri="s", speech_rel_path="s",
        speaker="1", noise_uri="n", noise_rel_path="n", noise_class="c", noise_clip="c/1",
        sample_rate=16000, snr_db=snr, speech_offset=0, noise_offset=noise_offset,
        noise_looped=looped, n_samples=n,
    )  # fmt: skip


@pytest.mark.parametrize("snr", [-5.0, -0.37, 0.0, 4.99])
def test_render_exact_snr_and_additivity(snr):
    rng = np.random.default_rng(1)
    speech = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    noise = (0.5 * rng.standard_normal(5000)).astype(np.float32)
    out = rd.render(speech, noise, _recipe(noise_offset=1234, looped=True, snr=snr))
    assert abs(snr_db(out.clean, out.noise) - snr) < 1e-4
    np.testing.assert_array_equal(out.noisy, out.clean + out.noise)
    for x in out.streams().values():
        assert x.dtype == np.float32 and x.shape == (16000,)
        k = x.astype(np.float64) * 2**23
        np.testing.assert_array_equal(k, np.round(k))  # on the 24-bit grid
    # the noise is the looped clip from the offset, times one gain
    expected = np.concatenate([noise[1234:], noise, noise, noise])[:16000].astype(np.float64)
    np.testing.assert_allclose(out.noise, expected * out.noise_gain * out.output_gain, atol=2**-23)


def test_render_scales_loud_mixtures_below_max_peak():
    t = np.arange(16000) / 16000
    speech = (0.9 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    noise = np.sign(np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    out = rd.render(speech, noise, _recipe(snr=-5.0), max_peak=0.9)
    assert out.output_gain < 1.0
    assert max(np.abs(x).max() for x in out.streams().values()) <= 0.9 + 2**-23
    assert abs(snr_db(out.clean, out.noise) + 5.0) < 1e-4
    np.testing.assert_allclose(out.clean, speech * out.output_gain, atol=2**-23)
    quiet = rd.render(0.01 * speech, 0.01 * noise, _recipe(snr=5.0))
    assert quiet.output_gain == 1.0


def test_render_silent_noise_segment_is_a_parameter_error():
    noise = np.zeros(32000, np.float32)
    noise[-100:] = 0.5
    with pytest.raises(ParameterError, match="train-000000: noise is digital silence"):
        rd.render(np.ones(16000, np.float32) * 0.1, noise, _recipe(noise_offset=0))


def test_pcm24_grid_survives_flac_round_trip():
    """What render produces is exactly what a 24-bit FLAC stores and decodes (libsndfile)."""
    rng = np.random.default_rng(2)
    x = rd.quantize_pcm24(np.concatenate([rng.uniform(-1, 1, 20000), [-1.0, 1.0, 0.5, -0.5]]))
    y = audio.decode(audio.encode(x, 16000, fmt="flac")).samples[0]
    np.testing.assert_array_equal(x, y)
    assert x.max() == 1 - 2**-23  # +1.0 is clipped to the largest 24-bit code
