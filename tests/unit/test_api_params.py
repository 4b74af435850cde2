"""``batchsep.api.check_params``: the CLI's value rules, for the Python API and job specs alike."""

from __future__ import annotations

import inspect
import sys

import click
import pytest

from batchsep import api
from batchsep.errors import ParameterError
from batchsep.jobs.stages import stage_functions

STAGES = ("scan", "prepare", "features", "train", "enhance", "tag", "evaluate")


def test_check_params_known_answers():
    assert api.check_params("enhance", {"workers": 0, "fmt": "mp3", "sr": 16000}) == [
        "workers=0 must be >= 1",
        "fmt='mp3' must be one of wav, flac, ogg, opus",
    ]
    assert api.check_params("enhance", {"sr": "16000", "fmt": "flac", "input_level_db": None}) == []
    assert api.check_params("train", {"model": "oracle"})[0].startswith(
        "unknown model 'oracle'; known: blstm, dae, dc,"
    )
    assert api.check_params("evaluate", {"metrics": []}) == []  # a tag run: emotions only
    assert api.check_params("report", {"names": 3}) == []  # no rule: not checked
    assert api.check_params("nosuchstage", {"workers": 0}) == []


def test_check_params_is_not_a_stage():
    assert "check_params" not in stage_functions()
    assert set(STAGES) <= set(stage_functions())


def _cli_rules():
    """(stage, API parameter, click type) for each CLI option with a Choice or a range."""
    from batchsep.cli.main import main

    for stage in STAGES:
        api_params = inspect.signature(getattr(api, stage)).parameters
        for opt in main.commands[stage].params:
            if opt.name in api_params and isinstance(
                opt.type, click.Choice | click.IntRange | click.FloatRange
            ):
                yield stage, opt.name, opt.type


_FORMAT_OF = {"VORBIS": "ogg", "OPUS": "opus"}


def test_a_subtype_the_format_cannot_store_is_refused_by_check_params():
    """The pair is one of the api's rules: refused before anything is created (the CLI checks it first)."""
    assert api.check_params("enhance", {"fmt": "ogg", "subtype": "PCM_16"}) == [
        "subtype='PCM_16' cannot be stored as OGG (lossy Vorbis only): VORBIS (or keep)"
    ]
    assert api.check_params("enhance", {"fmt": "flac", "subtype": "FLOAT"})
    assert api.check_params("enhance", {"fmt": "ogg", "subtype": "VORBIS"}) == []


@pytest.mark.parametrize(("stage", "name", "kind"), list(_cli_rules()), ids=str)
def test_every_cli_choice_and_range_is_a_check_params_rule(stage, name, kind):
    """What the CLI's click type accepts check_params accepts; what it refuses, check_params refuses."""
    if isinstance(kind, click.Choice):
        for choice in kind.choices:
            # a subtype goes with a format that stores it (the pair is checked too, see below)
            pair = {"fmt": _FORMAT_OF.get(str(choice), "wav")} if name == "subtype" else {}
            assert api.check_params(stage, {name: choice, **pair}) == [], choice
        assert api.check_params(stage, {name: "bogus"}), "bogus"
        return
    assert kind.min is not None
    number = int if isinstance(kind, click.IntRange) else float
    edge = number(kind.min)
    assert bool(api.check_params(stage, {name: edge})) == bool(kind.min_open)
    assert api.check_params(stage, {name: edge + 1 if kind.max is None else kind.max}) == []
    assert api.check_params(stage, {name: edge - 1}), edge - 1
    if kind.max is not None:
        assert api.check_params(stage, {name: kind.max + 1})


def test_the_rules_cover_the_audit_cases():
    names = {(s, n) for s, n, _ in _cli_rules()}
    for stage in STAGES:
        assert (stage, "workers") in names or stage not in {"scan", "enhance", "tag"}
    assert {("enhance", "sr"), ("enhance", "fmt"), ("enhance", "shard_size")} <= names
    assert {("scan", "shard_size"), ("features", "compression"), ("train", "model")} <= names


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if an API function gets as far as starting Ray (or a runner)."""

    def boom(*a, **k):
        raise AssertionError("Ray (or a runner) was started")

    import batchsep.distributed.runtime as runtime

    monkeypatch.setattr(runtime, "make_runner", boom)
    monkeypatch.setattr(runtime, "init", boom)
    from batchsep.api import _enhance

    monkeypatch.setattr(_enhance, "_enhance_executor", boom)
    ray = sys.modules.get("ray")
    before = ray is not None and ray.is_initialized()  # an earlier test's Ray may still run
    yield
    ray = sys.modules.get("ray")
    assert (ray is not None and ray.is_initialized()) == before


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: api.enhance("in", "out", workers=0), "enhance: workers=0 must be >= 1"),
        (
            lambda: api.enhance("in", "out", workers=0, fmt="mp3", sr="44100"),
            "enhance: workers=0 must be >= 1; sr='44100' must be 'keep' (the input's rate) or "
            "16000; fmt='mp3' must be one of wav, flac, ogg, opus",
        ),
        (lambda: api.enhance("in", "out", shard_size=-3), "enhance: shard_size=-3 must be >= 1"),
        (lambda: api.tag("in", "out", workers=0), "tag: workers=0 must be >= 1"),
        (lambda: api.scan("in", "out", shard_size=0), "scan: shard_size=0 must be >= 1"),
        (
            lambda: api.prepare("s", "n", "o", n_train=-1, max_seconds=0),
            "prepare: n_train=-1 must be >= 0; max_seconds=0 must be > 0",
        ),
        (
            lambda: api.prepare("s", "n", "o", config={"snr_min": 5}, snr_max=1),
            "prepare: config: snr_min=5.0 must be <= snr_max=1",
        ),
        (
            lambda: api.features("r", compression="gzip"),
            "features: compression='gzip' must be one of zstd, lz4, snappy, none",
        ),
        (lambda: api.train("r", batch_size=0), "train: batch_size=0 must be >= 1"),
        (
            lambda: api.evaluate("r", metrics=["sdr", "bleu"]),
            "evaluate: metrics=['sdr', 'bleu'] must be a list of sdr, si_sdr, pesq, stoi, dnsmos "
            "(empty: emotions only)",
        ),
    ],
)
def test_api_functions_raise_before_starting_anything(no_ray, call, expected):
    with pytest.raises(ParameterError) as e:
        call()
    assert str(e.value) == expected


@pytest.mark.parametrize(("sr", "out_sr"), [(16000, 16000), ("16000", 16000), ("keep", "keep")])
def test_api_enhance_accepts_sr_16000_as_an_int(monkeypatch, sr, out_sr):
    from batchsep.pipeline.enhance import driver as _enh

    seen = {}
    monkeypatch.setattr(_enh, "enhance", lambda *a, **k: seen.update(k))
    api.enhance("in", "out", sr=sr, local=True, emotion=False)
    assert seen["options"].out_sr == out_sr
