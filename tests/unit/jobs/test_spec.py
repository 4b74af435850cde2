"""Job spec validation: one clear message per problem, references, secrets, signature-driven params."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from batchsep import api
from batchsep.config import Config, register_config
from batchsep.errors import ConfigError, StorageError
from batchsep.io.credentials import looks_like_secret
from batchsep.jobs import spec as jobspec
from batchsep.jobs.stages import call_kwargs, stage_functions, stage_parameters

REPO = Path(__file__).resolve().parents[3]


def scan_stage(**params):
    return {"stage": "scan", "params": {"in_uri": "data", "out_uri": "runs/r1", **params}}


def spec(*stages, **top):
    return {"name": "t", "stages": list(stages), **top}


def error(data) -> str:
    with pytest.raises(ConfigError) as e:
        jobspec.parse_spec(data)
    return str(e.value)


def test_valid_spec_is_coerced_and_round_trips():
    s = jobspec.parse_spec(spec(scan_stage(shard_size=8), ray={"workers": 3}, env={"N": 2}))
    (stage,) = s.stages
    assert (stage.index, stage.name, stage.stage) == (0, "scan", "scan")
    assert stage.params == {"in_uri": "data", "out_uri": "runs/r1", "shard_size": 8, "workers": 3}
    assert s.env == {"N": "2"}  # values become strings
    assert jobspec.parse_spec(s.to_dict()) == s
    assert jobspec.parse_yaml(yaml.safe_dump(s.to_dict())) == s


def test_stage_workers_overrides_ray_workers():
    s = jobspec.parse_spec(spec(scan_stage(workers=1), ray={"workers": 3}))
    assert s.stages[0].params["workers"] == 1


def test_unknown_stage_lists_the_allowed_ones():
    msg = error(spec({"stage": "scna", "params": {}}))
    assert msg.startswith("stages[0]: unknown stage 'scna'; allowed stages: ")
    assert "scan" in msg and "enhance" in msg
    assert "missing the 'stage' key" in error(spec({"params": {}}))


def test_unknown_key_message_names_stage_index_and_allowed_keys():
    msg = error(
        spec(
            scan_stage(),
            {"stage": "enhance", "params": {"in_uri": "a", "out_uri": "b", "modle": 1}},
        )
    )
    assert msg.startswith("stages[1] (enhance): unknown key 'modle'; allowed: ")
    allowed = msg.split("allowed: ")[1].split(", ")
    assert "model" in allowed and "in_uri" in allowed
    assert "on_progress" not in allowed and "address" not in allowed  # callbacks / job-level
    assert error(spec({"stage": "scan", "parms": {}})) == (
        "stages[0]: unknown key 'parms'; allowed: name, params, stage; did you mean 'params'?"
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"shard_size": "big"}, "stages[0] (scan): shard_size='big' must be an integer"),
        ({"shard_size": True}, "stages[0] (scan): shard_size=True must be an integer"),
        ({"local": "yes"}, "stages[0] (scan): local='yes' must be true or false"),
        ({"in_uri": 3}, "stages[0] (scan): in_uri=3 must be a string"),
    ],
)
def test_wrong_type(params, expected):
    assert error(spec(scan_stage(**params))) == expected


def test_missing_required_parameter():
    msg = error(spec({"stage": "scan", "params": {"in_uri": "x"}}))
    assert msg == "stages[0] (scan): missing required parameter 'out_uri'"


def test_address_and_callbacks_are_not_stage_params():
    msg = error(spec(scan_stage(address="auto")))
    assert "'address' is set once for the whole job, under ray.address" in msg
    assert "unknown key 'on_progress'" in error(spec(scan_stage(on_progress="x")))


def test_references_resolve_whole_values_interpolation_index_and_defaults():
    s = jobspec.parse_spec(
        spec(
            scan_stage(shard_size=4),
            {
                "stage": "scan",
                "name": "again",
                "params": {
                    "in_uri": "${scan.out_uri}",
                    "out_uri": "${stages.0.out_uri}/sub-${0.shard_size}",
                    "shard_size": "${scan.shard_size}",
                    "local": "${scan.local}",  # not set in stage 0: the function's default
                },
            },
            {"stage": "scan", "name": "lit", "params": {"in_uri": "$${x}", "out_uri": "a$b"}},
        )
    )
    p = s.stages[1].params
    assert p == {"in_uri": "runs/r1", "out_uri": "runs/r1/sub-4", "shard_size": 4, "local": None}
    assert s.stages[1].raw_params["in_uri"] == "${scan.out_uri}"
    assert s.stages[2].params["in_uri"] == "${x}" and s.stages[2].params["out_uri"] == "a$b"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("${prep.out_uri}", "reference '${prep.out_uri}' names no earlier stage"),
        ("${stages.5.out_uri}", "names no earlier stage"),
        ("${second.out_uri}", "names no earlier stage"),  # itself: only earlier stages
        ("${scan.outuri}", "stages[0] (scan) has no parameter 'outuri'"),
        ("${scan}", "bad reference '${scan}'"),
        ("${a.b.c}", "bad reference"),
    ],
)
def test_bad_references(ref, expected):
    second = {"stage": "scan", "name": "second", "params": {"in_uri": ref, "out_uri": "o"}}
    msg = error(spec(scan_stage(), second))
    assert msg.startswith("stages[1] 'second' (scan): in_uri: ")
    assert expected in msg


def test_reference_type_errors_are_caught_after_resolution():
    second: dict[str, Any] = {
        "stage": "scan",
        "name": "b",
        "params": {"in_uri": "x", "out_uri": "y"},
    }
    second["params"]["shard_size"] = "${scan.in_uri}"
    assert error(spec(scan_stage(), second)) == (
        "stages[1] 'b' (scan): shard_size='data' must be an integer"
    )


@pytest.mark.parametrize(
    "key",
    [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "RAY_AUTH_TOKEN",
        "db_password",
        "AZURE_STORAGE_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ],
)
def test_secrets_in_env_are_rejected(key):
    msg = error(spec(scan_stage(), env={key: "x"}))
    assert msg.startswith(f"env: {key!r} looks like a credential")
    assert "cluster environment" in msg


def test_non_secret_env_is_kept_and_checked():
    s = jobspec.parse_spec(
        spec(scan_stage(), env={"AWS_ENDPOINT_URL": "http://s3:9000", "OMP_NUM_THREADS": 1})
    )
    assert s.env == {"AWS_ENDPOINT_URL": "http://s3:9000", "OMP_NUM_THREADS": "1"}
    assert "must be a string or a number" in error(spec(scan_stage(), env={"A": [1]}))
    assert "must match" in error(spec(scan_stage(), env={"1A": "x"}))
    assert "user:password@" in error(spec(scan_stage(), env={"URL": "https://u:p@host/x"}))


def test_credentials_in_uris_are_rejected():
    msg = error(spec(scan_stage(in_uri="s3://AKIA:secret@bucket/x")))
    assert msg.startswith("stages[0] (scan): in_uri (a URI with user:password@) looks like a")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "a job spec must be a mapping, got list"),
        ({"stages": [scan_stage()]}, "spec: name=None is required"),
        (spec(), "spec: 'stages' must be a non-empty list"),
        (spec(scan_stage(), extra=1), "spec: unknown key 'extra'; allowed: description, env, name"),
        (spec(scan_stage(), ray={"adress": "x"}), "ray: unknown key 'adress'; allowed: address"),
        (spec(scan_stage(), ray={"workers": 0}), "ray.workers=0 must be >= 1"),
        (spec(scan_stage(), ray={"workers": "x"}), "ray.workers='x' must be an integer"),
        (spec(scan_stage(), ray={"address": "http://h:8265"}), "is a dashboard (Jobs API) URL"),
        (spec(scan_stage(), scan_stage()), "stage name 'scan' is already used"),
        (spec({"stage": "scan", "name": "a.b", "params": {}}), "name='a.b' must start with"),
        (spec("scan"), "stages[0] must be a mapping with a 'stage' key"),
    ],
)
def test_structural_errors(data, expected):
    assert expected in error(data)


def test_yaml_errors_and_files_name_their_source(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nstages: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line 3, column 1: not valid YAML: ") as e:
        jobspec.load_spec(str(p))
    assert "<unicode string>" not in str(e.value)
    p.write_text(yaml.safe_dump(spec(scan_stage(shard_size="x"))))
    with pytest.raises(ConfigError, match=r"bad\.yaml: stages\[0\] \(scan\): shard_size"):
        jobspec.load_spec(str(p))
    with pytest.raises(StorageError):
        jobspec.load_spec(str(tmp_path / "missing.yaml"))


@register_config("test_jobspec_opts")
@dataclasses.dataclass(frozen=True)
class _Opts(Config):
    k: int = 1


def test_new_api_functions_are_stages_with_their_signature(monkeypatch):
    """A function added to batchsep.api is a stage at once; its annotations drive the checks."""

    def fake(
        run_uri: str,
        *,
        kind: Literal["stft", "logmel"] = "stft",
        sizes: list[int] | None = None,
        opts: _Opts | None = None,
        workers: int | None = None,
        on_progress: Callable[[int, float], None] | None = None,
    ) -> dict:
        return {}

    fake.__module__ = api.__name__
    monkeypatch.setattr(api, "fake", fake, raising=False)
    assert "fake" in stage_functions()
    stage: dict[str, Any] = {
        "stage": "fake",
        "params": {"run_uri": "r", "kind": "logmel", "sizes": [1, 2]},
    }
    stage["params"]["opts"] = {"k": 5}
    s = jobspec.parse_spec(spec(stage, ray={"workers": 2}))
    assert s.stages[0].params == {
        "run_uri": "r",
        "kind": "logmel",
        "sizes": [1, 2],
        "opts": _Opts(k=5),
        "workers": 2,
    }
    stage["params"]["kind"] = "mfcc"
    assert "kind='mfcc' must be one of ['stft', 'logmel']" in error(spec(stage))
    stage["params"].update(kind="stft", sizes=[1, "x"])
    assert "sizes[1]='x' must be an integer" in error(spec(stage))
    stage["params"].update(sizes=None, opts={"k": "x"})
    assert "stages[0] (fake): opts: k='x' must be an integer" in error(spec(stage))


def test_settings_kwargs_follow_the_config_annotation(monkeypatch):
    """``**settings`` override fields of an annotated ``config``; unannotated ones pass unchecked."""

    def typed(out_uri: str, *, config: _Opts | None = None, **settings: object) -> None:
        return None

    def untyped(out_uri: str, *, config: object = None, **settings: object) -> None:
        return None

    for fn in (typed, untyped):
        fn.__module__ = api.__name__
        monkeypatch.setattr(api, fn.__name__, fn, raising=False)
    s = jobspec.parse_spec(spec({"stage": "typed", "params": {"out_uri": "o", "k": 3}}))
    assert s.stages[0].params == {"out_uri": "o", "k": 3}
    msg = error(spec({"stage": "typed", "params": {"out_uri": "o", "j": 3}}))
    assert msg == "stages[0] (typed): unknown key 'j'; allowed: config, k, out_uri"
    assert "k='x' must be an integer" in error(
        spec({"stage": "typed", "params": {"out_uri": "o", "k": "x"}})
    )
    s = jobspec.parse_spec(spec({"stage": "untyped", "params": {"out_uri": "o", "seed": 1}}))
    assert s.stages[0].params == {"out_uri": "o", "seed": 1}


def test_call_kwargs_adds_address_only_where_accepted():
    s = jobspec.parse_spec(spec(scan_stage()))
    assert call_kwargs(s.stages[0], address="auto")["address"] == "auto"
    assert "address" not in call_kwargs(s.stages[0])


def test_looks_like_secret_keeps_ordinary_names():
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "OMP_NUM_THREADS", "BATCHSEP_DATA"):
        assert not looks_like_secret(name)


SPECS = sorted((REPO / "jobs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_specs_validate(path):
    """Every spec in jobs/ validates once the stages it names exist in batchsep.api."""
    data = yaml.safe_load(path.read_text())
    missing = sorted({s["stage"] for s in data["stages"]} - set(stage_functions()))
    if missing:
        pytest.skip(f"batchsep.api has no {', '.join(missing)} yet")
    s = jobspec.load_spec(str(path))
    assert s.name == data["name"] and len(s.stages) == len(data["stages"])


def test_shipped_specs_exist_and_hold_no_secrets():
    names = {p.name for p in SPECS}
    assert {
        "scan_corpus.yaml",
        "enhance_bucket.yaml",
        "train_default_enhancer.yaml",
        "train_default_emotion.yaml",
        "pipeline_e2e.yaml",
    } <= names
    for p in SPECS:
        env = yaml.safe_load(p.read_text()).get("env") or {}
        assert not any(looks_like_secret(k) for k in env), p


def test_set_overrides_stage_params_and_ray_section_without_changing_the_input():
    data = spec(
        scan_stage(),
        {
            "stage": "scan",
            "name": "again",
            "params": {"in_uri": "${scan.out_uri}", "out_uri": "runs/r2"},
        },
    )
    sets = ["scan.out_uri=/abs/r1", "again.shard_size=16", "ray.workers=4", "scan.local= true "]
    s = jobspec.parse_spec(jobspec.apply_overrides(data, sets))
    assert s.stages[0].params["out_uri"] == "/abs/r1" and s.stages[0].params["local"] is True
    assert s.stages[1].params["in_uri"] == "/abs/r1"  # references see the overridden value
    assert s.stages[1].params["shard_size"] == 16 and s.ray.workers == 4
    assert data["stages"][0]["params"]["out_uri"] == "runs/r1"  # the input is not modified


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("scan.out_uri", "must look like STAGE.PARAM=VALUE"),
        ("out_uri=/x", "must look like STAGE.PARAM=VALUE"),
        ("train.model=drnmf", "no stage named 'train'; stages: scan"),
        ("scan.shard_size=[1", "the value is not valid YAML"),
    ],
)
def test_bad_set_overrides(item, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        jobspec.apply_overrides(spec(scan_stage()), [item])


def test_set_overrides_are_validated_like_the_spec(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec(scan_stage())))
    with pytest.raises(ConfigError, match=r"job.yaml: stages\[0\] \(scan\): unknown key 'bogus'"):
        jobspec.load_spec(str(path), overrides=["scan.bogus=1"])
    assert (
        jobspec.load_spec(str(path), overrides=["scan.in_uri=d2"]).stages[0].params["in_uri"]
        == "d2"
    )


def test_shipped_enhancer_is_what_its_spec_trains():
    """batchsep/pretrained/enhancer and jobs/train_default_enhancer.yaml must not drift apart: the weights'
    model, architecture, optimiser settings and data sizes are the spec's."""
    data = yaml.safe_load((REPO / "jobs" / "train_default_enhancer.yaml").read_text())
    # the last stage of each kind: the one whose output ships (train, then its finetune)
    stage = {s["stage"]: s["params"] for s in data["stages"]}
    prep, train = stage["prepare"], stage["train"]
    shipped = REPO / "batchsep" / "pretrained" / "enhancer"
    config = json.loads((shipped / "config.json").read_text())
    metrics = json.loads((shipped / "metrics.json").read_text())
    assert config["model_name"] == metrics["model"] == train["model"]
    model_keys = {k: v for k, v in train["config"].items() if not k.startswith("train.")}
    assert {k: config["config"][k] for k in model_keys} == model_keys
    train_keys = {
        k[len("train.") :]: v for k, v in train["config"].items() if k.startswith("train.")
    }
    assert {k: metrics["train_config"][k] for k in train_keys} == train_keys
    assert metrics["train_config"]["max_epochs"] == train["max_epochs"] == metrics["epochs"]
    assert metrics["data"]["n_train_mixtures"] == prep["n_train"]
    assert metrics["data"]["batch_size"] == train["batch_size"]
    assert metrics["data"]["crop_frames"] == train["crop_frames"]
    assert metrics["data"]["transform"]["psa_target"] == stage["features"].get("psa_target", False)


def train_stage(**params):
    return {"stage": "train", "params": {"run_uri": "runs/r1", **params}}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"model": "drnmff"}, "stages[0] (train): unknown model 'drnmff'; known: blstm, dae, dc,"),
        ({"model": "oracle"}, "unknown model 'oracle'"),  # registered, but not trainable
        ({"model": "lstm", "config": {"hiden": 3}}, "config: unknown key 'hiden' for lstm"),
        ({"model": "lstm", "config": {"hidden": "x"}}, "config: hidden='x' must be an integer"),
        ({"config": {"snmf.ranks": 3}}, "snmf.<key>: unknown key 'ranks' for snmf"),
        ({"config": {"snmf.rank_speech": "x"}}, "snmf.<key>: rank_speech='x' must be an integer"),
        ({"config": {"train.lrate": 1}}, "train.<key>: unknown key 'lrate' for train"),
        ({"config": {"train.lr": -1}}, "train.<key>: lr=-1.0 must be a finite number > 0"),
        ({"model": "emotion-cnn", "config": {"data.actors": [1]}}, "unknown key 'data.actors'"),
    ],
)
def test_train_stage_model_and_config_are_checked_before_running(params, expected):
    assert expected in error(spec(train_stage(**params)))


def test_train_known_models_are_the_cli_choices():
    import click

    from batchsep.cli.main import main

    opt = next(p for p in main.commands["train"].params if p.name == "model")
    assert isinstance(opt.type, click.Choice)
    assert tuple(opt.type.choices) == jobspec.TRAINABLE_MODELS


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"model": "drnmf", "config": {"snmf.rank_speech": 10, "rank_speech": 5, "train.lr": 1e-3}},
        {"model": "sce", "config": {"n_speakers": "auto", "n_noises": "auto"}},
        {"model": "dc", "config": {"inference": "kmeans"}, "max_epochs": 2},
        {"model": "emotion-vae", "config": {"data.valid_actors": [11], "train.swa_epochs": 3}},
    ],
)
def test_valid_train_stages_pass(params):
    (stage,) = jobspec.parse_spec(spec(train_stage(**params))).stages
    assert stage.params["run_uri"] == "runs/r1"


# --- values the CLI refuses are refused by the spec check too (one rule: batchsep.api.check_params) ---


def enhance_stage(**params):
    return {"stage": "enhance", "params": {"in_uri": "in", "out_uri": "out", **params}}


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        (enhance_stage(workers=0), "stages[0] (enhance): workers=0 must be >= 1"),
        (
            enhance_stage(fmt="mp3"),
            "stages[0] (enhance): fmt='mp3' must be one of wav, flac, ogg, opus",
        ),
        (enhance_stage(shard_size=-3), "stages[0] (enhance): shard_size=-3 must be >= 1"),
        (
            enhance_stage(sr="44100"),
            "stages[0] (enhance): sr='44100' must be 'keep' (the input's rate) or 16000",
        ),
        (
            enhance_stage(input_level_db=5),
            "stages[0] (enhance): input_level_db=5.0 must be 'model' (the model's own level), "
            "a level in [-80, 0] dBFS or None (the raw level)",
        ),
        (
            enhance_stage(input_level_db=False),  # YAML reads `off` as false
            "stages[0] (enhance): input_level_db=False must be a number "
            "(the CLI's --input-level off is input_level_db: null)",
        ),
        (scan_stage(shard_size=0), "stages[0] (scan): shard_size=0 must be >= 1"),
        (scan_stage(workers=-1), "stages[0] (scan): workers=-1 must be >= 1"),
        (
            {"stage": "tag", "params": {"in_uri": "i", "out_uri": "o", "workers": 0}},
            "stages[0] (tag): workers=0 must be >= 1",
        ),
        (
            {"stage": "features", "params": {"run_uri": "r", "compression": "gzip"}},
            "stages[0] (features): compression='gzip' must be one of zstd, lz4, snappy, none",
        ),
        (
            {"stage": "features", "params": {"run_uri": "r", "kind": "mfcc"}},
            "stages[0] (features): kind='mfcc' must be one of stft, logmel",
        ),
        (
            {"stage": "features", "params": {"run_uri": "r", "shard_mb": 0}},
            "stages[0] (features): shard_mb=0.0 must be > 0",
        ),
        (train_stage(batch_size=0), "stages[0] (train): batch_size=0 must be >= 1"),
        (
            train_stage(train_fraction=1.5),
            "stages[0] (train): train_fraction=1.5 must be in (0, 1]",
        ),
        (train_stage(max_epochs=-1), "stages[0] (train): max_epochs=-1 must be >= 0"),
        (
            {
                "stage": "prepare",
                "params": {"speech_uri": "s", "noise_uri": "n", "out_uri": "o", "n_train": -1},
            },
            "stages[0] (prepare): n_train=-1 must be >= 0",
        ),
        (
            {"stage": "evaluate", "params": {"run_uri": "r", "metrics": ["sdr", "bleu"]}},
            "stages[0] (evaluate): metrics=['sdr', 'bleu'] must be a list of sdr, si_sdr, pesq, "
            "stoi, dnsmos (empty: emotions only)",
        ),
    ],
)
def test_values_the_cli_refuses_are_spec_errors(stage, expected):
    assert error(spec(stage)) == expected


def test_prepare_mixture_config_is_checked_with_the_other_arguments():
    stage = {
        "stage": "prepare",
        "params": {"speech_uri": "s", "noise_uri": "n", "out_uri": "o", "snr_max": 1,
                   "config": {"snr_min": 5, "valid_fraction": 0.1}},
    }  # fmt: skip
    assert error(spec(stage)) == "stages[0] (prepare): config: snr_min=5.0 must be <= snr_max=1.0"


@pytest.mark.parametrize("sr", [16000, "16000", "keep"])
def test_sr_16000_may_be_written_as_an_int(sr):
    (stage,) = jobspec.parse_spec(spec(enhance_stage(sr=sr, input_level_db=None))).stages
    assert stage.params["sr"] == sr and stage.params["input_level_db"] is None


def test_ray_workers_default_is_checked_once_in_the_ray_section():
    assert error(spec(enhance_stage(), ray={"workers": 0})) == "ray.workers=0 must be >= 1"


def test_every_problem_of_a_spec_is_reported():
    data = {
        "name": "bad name!",
        "extra": 1,
        "ray": {"workers": 0, "adress": "auto"},
        "env": {"AWS_SECRET_ACCESS_KEY": "x", "OK": [1]},
        "stages": [
            scan_stage(shard_size="big", modle=1),
            enhance_stage(workers=0, fmt="mp3", sr="44100", format="flac", overwrite=True),
            {"stage": "scna"},
            {"stage": "scan", "name": "b", "params": {"in_uri": "${nowhere.out_uri}"}},
        ],
    }
    with pytest.raises(jobspec.SpecError) as e:
        jobspec.parse_spec(data)
    assert e.value.problems[:3] == [
        "spec: unknown key 'extra'; allowed: description, env, name, ray, stages",
        "spec: name='bad name!' is required: 1-64 letters, digits, '.', '_' or '-' (starting with "
        "a letter or digit)",
        "ray: unknown key 'adress'; allowed: address, workers; did you mean 'address'?",
    ]
    assert e.value.problems[3] == "ray.workers=0 must be >= 1"
    assert e.value.problems[4].startswith("env: 'AWS_SECRET_ACCESS_KEY' looks like a credential")
    assert e.value.problems[5:7] == [
        "env.OK=[1] must be a string or a number",
        "stages[0] (scan): unknown key 'modle'; allowed: glob, in_uri, local, max_duration_s, "
        "min_duration_s, ok_only, out_uri, shard_size, workers",
    ]
    allowed = ", ".join(
        sorted(
            n
            for n in stage_parameters(api.enhance)
            if n not in ("address", "on_start", "on_progress")
        )
    )
    assert e.value.problems[7:] == [
        "stages[0] (scan): shard_size='big' must be an integer",
        f"stages[1] (enhance): unknown key 'format'; allowed: {allowed}; did you mean 'fmt' (the "
        "CLI's --format)?",
        f"stages[1] (enhance): unknown key 'overwrite'; allowed: {allowed}; did you mean "
        "'resume: false' (the CLI's --overwrite)?",
        "stages[1] (enhance): workers=0 must be >= 1",
        "stages[1] (enhance): fmt='mp3' must be one of wav, flac, ogg, opus",
        "stages[1] (enhance): sr='44100' must be 'keep' (the input's rate) or 16000",
        "stages[2]: unknown stage 'scna'; allowed stages: " + ", ".join(stage_functions()),
        "stages[3] 'b' (scan): in_uri: reference '${nowhere.out_uri}' names no earlier stage (a "
        "reference may only point to a stage before this one); earlier stages: 0 (scan), 1 (enhance)",
        "stages[3] 'b' (scan): missing required parameter 'out_uri'",
    ]
    msg = str(e.value)
    assert msg.startswith(f"{len(e.value.problems)} problems:\n  spec: unknown key 'extra'")
    assert msg.splitlines()[1:] == [f"  {p}" for p in e.value.problems]


def test_a_yaml_spec_with_problems_names_its_source_on_the_first_line():
    text = yaml.safe_dump(spec(enhance_stage(workers=0, fmt="mp3")))
    with pytest.raises(jobspec.SpecError) as e:
        jobspec.parse_yaml(text, source="job.yaml")
    assert str(e.value) == (
        "job.yaml: 2 problems:\n"  # in the order of the spec (safe_dump sorts the keys)
        "  stages[0] (enhance): fmt='mp3' must be one of wav, flac, ogg, opus\n"
        "  stages[0] (enhance): workers=0 must be >= 1"
    )
    with pytest.raises(jobspec.SpecError) as e:
        jobspec.parse_yaml(yaml.safe_dump(spec(scan_stage(shard_size=0))), source="s.yaml")
    assert str(e.value) == "s.yaml: stages[0] (scan): shard_size=0 must be >= 1"
    assert e.value.problems == ["stages[0] (scan): shard_size=0 must be >= 1"]


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("format", "did you mean 'fmt' (the CLI's --format)?"),
        ("input_level", "did you mean 'input_level_db' (the CLI's --input-level; its 'off' is "
                        "input_level_db: null)?"),
        ("input-level", "did you mean 'input_level_db' (the CLI's --input-level;"),
        ("overwrite", "did you mean 'resume: false' (the CLI's --overwrite)?"),
        ("shard-size", "did you mean 'shard_size'?"),
        ("retry_faild", "did you mean 'retry_failed'?"),
        ("emotion_modle", "did you mean 'emotion_model'?"),
    ],
)  # fmt: skip
def test_unknown_keys_hint_at_the_spec_key(key, hint):
    msg = error(spec(enhance_stage(**{key: 1})))
    assert msg.startswith(f"stages[0] (enhance): unknown key {key!r}; allowed: ")
    assert hint in msg


def test_unrelated_unknown_key_gets_no_hint():
    assert "did you mean" not in error(spec(enhance_stage(zzzzzz=1)))


def test_pickled_spec_error_keeps_its_problems():
    import pickle

    err = jobspec.SpecError(["a", "b"], source="s.yaml")
    back = pickle.loads(pickle.dumps(err))
    assert (back.problems, back.source, str(back)) == (["a", "b"], "s.yaml", str(err))


def test_dry_run_lists_every_problem_and_exits_2(tmp_path):
    from click.testing import CliRunner

    from batchsep.cli.main import main

    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            spec(enhance_stage(workers=0, fmt="mp3", sr="44100", shard_size=-3, format="flac"))
        )
    )
    r = CliRunner().invoke(main, ["run", str(path), "--dry-run"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert lines[0] == f"Error: {path}: 5 problems:"
    assert lines[2:] == [  # in the order of the spec (safe_dump sorts the keys)
        "  stages[0] (enhance): fmt='mp3' must be one of wav, flac, ogg, opus",
        "  stages[0] (enhance): shard_size=-3 must be >= 1",
        "  stages[0] (enhance): sr='44100' must be 'keep' (the input's rate) or 16000",
        "  stages[0] (enhance): workers=0 must be >= 1",
    ]
    assert lines[1].startswith("  stages[0] (enhance): unknown key 'format'; allowed: ")
    assert "stage 1/1" not in r.output
