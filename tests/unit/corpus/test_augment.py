"""Augmented recipes: config checks, reproducible and independent draws, renderings with known answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from batchsep.corpus import augment as ca
from batchsep.corpus import mixtures as mx
from batchsep.corpus import render as rd
from batchsep.corpus.augment import AugmentConfig, AugmentDraw
from batchsep.corpus.mixtures import MixtureConfig, Recipe, SourceFile
from batchsep.dsp import augment as dsp
from batchsep.dsp.mix import snr_db
from batchsep.errors import ConfigError, ParameterError

SR = 16000
ALL = ("speed", "pitch", "reverb", "telephone", "level", "two-noise")


def _inputs() -> tuple[list[SourceFile], list[SourceFile]]:
    speech = [SourceFile(f"/s/{k}/{j}.wav", f"{k}/{j}.wav", 48000 + 1000 * j, str(k)) for k in range(6) for j in range(3)]  # fmt: skip
    noise = [
        SourceFile(f"/n/{c}/{r}.wav", f"{c}/{r}.wav", 30000, c, f"{c}/{r}")
        for c in ("hum", "babble")
        for r in range(5)
    ]
    return speech, noise


def _draw(config: MixtureConfig, aug: AugmentConfig):
    speech, noise = _inputs()
    spk, clip = mx.assign_splits(speech, noise, config)
    return ca.draw_augmented(speech, noise, spk, clip, config, aug)


CFG = MixtureConfig(
    n_train=30, n_valid=6, n_test=6, seed=3, max_seconds=2.0, snr_min=-5, snr_max=25
)


def test_config_checks():
    with pytest.raises(ParameterError, match="unknown augmentation"):
        AugmentConfig(kinds=("speeed",))
    with pytest.raises(ParameterError):
        AugmentConfig(kinds=("reverb",), reverb_prob=1.5)
    with pytest.raises(ConfigError):
        AugmentConfig.from_dict({"kinds": ["level"], "level_max_dbfs": 3})
    assert not AugmentConfig().enabled and AugmentConfig(kinds=("level",)).enabled
    assert AugmentConfig.from_dict(AugmentConfig(kinds=ALL).to_dict()) == AugmentConfig(kinds=ALL)


def test_draws_are_reproducible_and_kinds_are_independent():
    r1, d1 = _draw(CFG, AugmentConfig(kinds=ALL))
    r2, d2 = _draw(CFG, AugmentConfig(kinds=ALL))
    assert r1 == r2 and d1 == d2 and ca.draws_hash(d1) == ca.draws_hash(d2)
    # the test split is not augmented: exactly the recipes of a run without augmentation
    plain = mx.draw_recipes(*_inputs(), *mx.assign_splits(*_inputs(), CFG), CFG)
    assert [r for r in r1 if r.split == "test"] == [r for r in plain if r.split == "test"]
    assert all(d is None for r, d in zip(r1, d1) if r.split == "test")
    # dropping a kind leaves the other kinds' draws as they were
    _, d3 = _draw(CFG, AugmentConfig(kinds=tuple(k for k in ALL if k != "reverb")))
    for a, b in zip(d1, d3):
        if a is not None:
            assert b is not None and b.rt60 is None
            assert dataclasses.replace(a, rt60=None, room=None, source=None, mic=None,
                                       early_ms=None, max_order=None) == b  # fmt: skip
    # every kind is drawn somewhere, within its range
    aug = [d for d in d1 if d is not None]
    assert {d.speed for d in aug} == {0.9, 1.0, 1.1}
    assert any(d.rt60 for d in aug) and any(d.telephone for d in aug)
    assert any(d.noise2_uri for d in aug) and any(d.pitch_semitones for d in aug)
    assert all(-45 <= d.level_dbfs <= -15 for d in aug)  # type: ignore[operator]


def test_telephone_band_edges_drawn_within_their_ranges():
    fixed = AugmentConfig(kinds=("telephone",), telephone_prob=1.0)
    _, d_fixed = _draw(CFG, fixed)
    assert {d.telephone_band for d in d_fixed if d is not None} == {(300.0, 3400.0)}
    wide = dataclasses.replace(fixed, telephone_low_min_hz=20.0, telephone_high_max_hz=3900.0)
    _, d_wide = _draw(CFG, wide)
    bands = [d.telephone_band for d in d_wide if d is not None and d.telephone_band]
    assert len(bands) == sum(d is not None for d in d_wide) and len(set(bands)) == len(bands)
    assert all(20 <= lo <= 300 and 3400 <= hi <= 3900 for lo, hi in bands)
    with pytest.raises(ParameterError, match="telephone band"):
        AugmentConfig(telephone_low_min_hz=400.0)
    with pytest.raises(ParameterError, match="telephone band"):
        AugmentConfig(telephone_high_max_hz=4000.0)


def test_speed_draw_crops_within_the_perturbed_file():
    recipes, draws = _draw(CFG, AugmentConfig(kinds=("speed",)))
    lengths = {s.uri: s.n_samples for s in _inputs()[0]}
    for r, d in zip(recipes, draws):
        if d is not None:
            src = dsp.speed_length(lengths[r.speech_uri], d.speed)
            assert r.n_samples == min(src, 2 * SR) and r.speech_offset + r.n_samples <= src


def test_draw_row_round_trip():
    _, draws = _draw(CFG, AugmentConfig(kinds=ALL))
    for d in draws:
        if d is not None:
            assert AugmentDraw.from_row(d.to_row()) == d
    assert AugmentDraw.from_row({"snr_db": 3.0}) is None


def _recipe(n: int, snr: float = 5.0) -> Recipe:
    return Recipe("train-000000", "train", 0, "s", "s", "a", "n", "n", "c", "c", SR, snr, 0, 0, False, n)  # fmt: skip


def _signals(n: int = 2 * SR):
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    speech = 0.2 * rng.standard_normal(n) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return speech, 0.3 * rng.standard_normal(n + 5000), 0.1 * rng.standard_normal(n + 3000)


def test_render_with_neutral_draws_is_the_plain_render():
    speech, noise, _ = _signals()
    r = _recipe(SR)
    a = ca.render_augmented(speech, noise, None, r, AugmentDraw())
    b = rd.render(speech, noise, r)
    for x, y in zip(a.streams().values(), b.streams().values()):
        assert np.array_equal(x, y)


def test_second_noise_keeps_the_drawn_overall_snr():
    speech, noise, second = _signals()
    r = _recipe(SR, snr=7.5)
    d = AugmentDraw(noise2_uri="n2", noise2_offset=123, noise2_db=-4.0)
    out = ca.render_augmented(speech, noise, second, r, d)
    assert snr_db(out.clean, out.noise) == pytest.approx(7.5, abs=0.01)
    assert np.array_equal(out.noisy, out.clean + out.noise)
    alone = ca.render_augmented(speech, noise, None, r, AugmentDraw())
    assert not np.allclose(out.noise, alone.noise)  # the second noise is really in it
    with pytest.raises(ParameterError, match="second noise"):
        ca.render_augmented(speech, noise, None, r, d)


@pytest.mark.parametrize("level", [-45.0, -30.0, -15.0])
def test_level_hits_the_drawn_dbfs(level):
    speech, noise, _ = _signals()
    out = ca.render_augmented(speech, noise, None, _recipe(SR, 10.0), AugmentDraw(level_dbfs=level))
    assert dsp.rms_dbfs(out.noisy) == pytest.approx(level, abs=0.1)


def test_reverb_with_a_delta_rir_reproduces_the_dry_mixture(monkeypatch):
    speech, noise, _ = _signals()
    r = _recipe(SR)
    delta = np.zeros(500)
    delta[40] = 0.5
    monkeypatch.setattr(dsp, "shoebox_rir", lambda *a, **k: delta)
    d = AugmentDraw(rt60=0.3, room=(5.0, 4.0, 3.0), source=(1.0, 1.0, 1.0), mic=(2.0, 2.0, 1.0))
    wet = ca.render_augmented(speech, noise, None, r, d)
    dry = rd.render(speech, noise, r)
    for x, y in zip(wet.streams().values(), dry.streams().values()):
        assert np.array_equal(x, y)


def test_reverb_target_is_early_speech_and_late_reverb_is_interference():
    speech, noise, _ = _signals()
    r = _recipe(SR, snr=40.0)
    d = AugmentDraw(rt60=0.8, room=(8.0, 6.0, 3.0), source=(2.0, 2.0, 1.5), mic=(6.0, 4.0, 1.2),
                    early_ms=50.0, max_order=40)  # fmt: skip
    out = ca.render_augmented(speech, noise, None, r, d)
    assert np.array_equal(out.noisy, out.clean + out.noise)
    # at 40 dB SNR the interference is mostly the late tail: well above the additive noise
    assert snr_db(out.clean, out.noise) < 25.0


def test_telephone_mixture_has_no_energy_above_4_khz():
    speech, noise, _ = _signals()
    out = ca.render_augmented(speech, noise, None, _recipe(SR), AugmentDraw(telephone=True))
    for x in out.streams().values():
        seg = x[2000:].astype(np.float64)
        spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) ** 2
        f = np.fft.rfftfreq(seg.size, 1 / SR)
        assert spec[f > 4000].sum() < 1e-8 * spec.sum()


def test_speed_render_uses_the_perturbed_file():
    speech, noise, _ = _signals(3 * SR)
    n = dsp.speed_length(speech.size, 1.1)
    out = ca.render_augmented(speech, noise, None, _recipe(n, 30.0), AugmentDraw(speed=1.1))
    assert out.clean.size == n == round(speech.size / 1.1)


def test_input_sampling_balances_speech_inputs():
    speech, noise = _inputs()
    spk, clip = mx.assign_splits(speech, noise, CFG)
    # a train-only input with many files, of speakers "e0".."e3" (all in train)
    extra = [SourceFile(f"/e/{k}/{j}.wav", f"e{k}/{j}.wav", 40000, f"e{k}") for k in range(4) for j in range(30)]  # fmt: skip
    spk = {**spk, **{f.group: "train" for f in extra}}
    inputs = {f.uri: 1 for f in extra}
    cfg = dataclasses.replace(CFG, n_train=400)
    counts = {}
    for mode in ("file", "input"):
        aug = AugmentConfig(kinds=("level",), speech_sampling=mode)
        recipes, _ = ca.draw_augmented([*speech, *extra], noise, spk, clip, cfg, aug, inputs)
        train = [r for r in recipes if r.split == "train"]
        counts[mode] = sum(r.speech_uri.startswith("/e/") for r in train) / len(train)
    main_train = sum(spk[s.group] == "train" for s in speech)
    assert counts["file"] == pytest.approx(120 / (120 + main_train), abs=0.06)  # ~ 0.9
    assert counts["input"] == pytest.approx(0.5, abs=0.06)
