"""RAVDESS names and actor-disjoint splits; on real data: every name parses and features have the shape."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from batchsep.corpus.ravdess import (
    RAVDESS_EMOTIONS,
    RavdessInfo,
    check_speaker_disjoint,
    parse_ravdess_name,
    seeded_actor_split,
    speaker_disjoint_split,
)
from batchsep.errors import ParameterError


def test_parse_known_name():
    info = parse_ravdess_name("03-01-06-01-02-01-12.wav")
    assert info == RavdessInfo(
        modality=3, vocal_channel=1, emotion="fearful", emotion_id=6, intensity=1, statement=2,
        repetition=1, actor=12, gender="F",
    )  # fmt: skip
    assert info.label == 5 and RAVDESS_EMOTIONS[info.label] == "fearful"


@pytest.mark.parametrize(
    ("name", "emotion", "actor", "gender"),
    [
        ("Actor_01/03-01-01-01-01-01-01.flac", "neutral", 1, "M"),
        ("/data/ravdess/Actor_24/03-01-08-02-02-02-24.wav", "surprised", 24, "F"),
        (r"C:\\ravdess\\Actor_07\\01-02-05-02-01-02-07.mp4", "angry", 7, "M"),
        ("02-01-07-02-01-01-16", "disgust", 16, "F"),
    ],
)
def test_parse_paths_and_extensions(name, emotion, actor, gender):
    info = parse_ravdess_name(name)
    assert (info.emotion, info.actor, info.gender) == (emotion, actor, gender)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("03-01-06-01-02-01.wav", "seven 2-digit fields"),
        ("03-01-06-01-02-01-12-01.wav", "seven 2-digit fields"),
        ("03-01-6-01-02-01-12.wav", "seven 2-digit fields"),
        ("03_01_06_01_02_01_12.wav", "seven 2-digit fields"),
        ("aa-01-06-01-02-01-12.wav", "seven 2-digit fields"),
        ("", "seven 2-digit fields"),
        ("04-01-06-01-02-01-12.wav", "modality=04"),
        ("03-03-06-01-02-01-12.wav", "vocal_channel=03"),
        ("03-01-09-01-02-01-12.wav", "emotion_id=09"),
        ("03-01-00-01-02-01-12.wav", "emotion_id=00"),
        ("03-01-06-03-02-01-12.wav", "intensity=03"),
        ("03-01-06-01-03-01-12.wav", "statement=03"),
        ("03-01-06-01-02-03-12.wav", "repetition=03"),
        ("03-01-06-01-02-01-25.wav", "actor=25"),
        ("03-01-06-01-02-01-00.wav", "actor=00"),
        ("03-01-01-02-01-01-01.wav", "neutral"),
        ("03-02-07-01-01-01-01.wav", "song"),
    ],
)
def test_parse_rejects_bad_names(name, match):
    with pytest.raises(ParameterError, match=match):
        parse_ravdess_name(name)


def test_parse_rejects_non_string():
    with pytest.raises(ParameterError, match="string"):
        parse_ravdess_name(31)  # type: ignore[arg-type]


def test_speaker_disjoint_split_known_answer():
    actors = [1, 2, 3, 4, 5, 1, 2, 3]
    out = speaker_disjoint_split(actors, valid_actors=[2], test_actors={3, 4})
    assert out == ["train", "valid", "test", "test", "train", "train", "valid", "test"]
    assert speaker_disjoint_split([], valid_actors=[], test_actors=[]) == []


def test_speaker_disjoint_split_errors():
    with pytest.raises(ParameterError, match=r"\[2\]"):
        speaker_disjoint_split([1, 2, 3], valid_actors=[2], test_actors=[2, 3])
    with pytest.raises(ParameterError, match="no training item"):
        speaker_disjoint_split([1, 2, 2], valid_actors=[1], test_actors=[2])
    with pytest.raises(ParameterError, match="integers"):
        speaker_disjoint_split(["01"], valid_actors=[], test_actors=[])  # type: ignore[list-item]


def test_check_speaker_disjoint_catches_leak():
    check_speaker_disjoint([1, 1, 2], ["train", "train", "test"])
    with pytest.raises(ParameterError, match="actor 1"):
        check_speaker_disjoint([1, 1, 2], ["train", "test", "test"])
    with pytest.raises(ParameterError, match="len"):
        check_speaker_disjoint([1], [])


def test_seeded_actor_split_reproducible_disjoint_balanced():
    actors = list(range(1, 25))
    a = seeded_actor_split(actors, n_valid=2, n_test=4, seed=3)
    assert a == seeded_actor_split(actors * 2, n_valid=2, n_test=4, seed=3)
    train, valid, test = a
    assert len(train) == 18 and len(valid) == 2 and len(test) == 4
    assert set(train) | set(valid) | set(test) == set(actors)
    assert not (set(train) & set(valid) or set(train) & set(test) or set(valid) & set(test))
    assert sum(t % 2 for t in test) == 2 and sum(v % 2 for v in valid) == 1  # balanced genders
    draws = {seeded_actor_split(actors, n_valid=2, n_test=4, seed=s)[2] for s in range(10)}
    assert len(draws) > 5
    with pytest.raises(ParameterError, match="training actor"):
        seeded_actor_split([1, 2, 3], n_valid=1, n_test=2)


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_every_real_name_parses_and_matches_manifest(shared_data):
    root = shared_data / "emotion" / "ravdess"
    files = sorted(root.glob("Actor_*/*.flac"))
    assert len(files) == 960
    infos = {f.relative_to(shared_data).as_posix(): parse_ravdess_name(f.name) for f in files}
    for path, info in infos.items():
        assert path.split("/")[2] == f"Actor_{info.actor:02d}"
    per_actor = Counter(i.actor for i in infos.values())
    assert set(per_actor) == set(range(1, 17)) and set(per_actor.values()) == {60}
    per_emotion = Counter(i.emotion for i in infos.values())
    assert per_emotion["neutral"] == 64 and per_emotion["angry"] == 128
    with open(shared_data / "manifest.tsv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["path"] in infos]
    assert len(rows) == 960
    for r in rows:
        info = infos[r["path"]]
        assert (info.emotion, info.gender) == (r["label"], r["gender"])
    splits = speaker_disjoint_split(
        [i.actor for i in infos.values()], valid_actors=[11, 12], test_actors=[13, 14, 15, 16]
    )
    assert Counter(splits) == {"train": 600, "valid": 120, "test": 240}


@pytest.mark.realdata
def test_real_files_give_model_sized_features(shared_data):
    import soundfile as sf

    from batchsep.dsp.mel import EmotionFeatureConfig, emotion_features
    from batchsep.dsp.vad import trim_silence

    config = EmotionFeatureConfig()
    names = ["03-01-01-01-01-01-01.flac", "03-01-05-02-02-02-01.flac", "03-01-08-02-01-01-01.flac"]
    for name in names:
        x, sr = sf.read(shared_data / "emotion" / "ravdess" / "Actor_01" / name, dtype="float32")
        assert sr == config.sample_rate and x.ndim == 1
        start, end = trim_silence(x, sr)
        assert 0 < end - start < x.size  # leading/trailing silence was cut ...
        assert end - start < config.duration_s * sr  # ... and the statement fits in 128 frames
        m = emotion_features(x, config)
        assert m.shape == (80, 128) and m.dtype == np.float32 and np.isfinite(m).all()
        assert abs(float(m.mean())) < 1e-4 and float(m.std()) == pytest.approx(1.0, abs=1e-3)
