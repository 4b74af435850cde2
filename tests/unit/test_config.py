"""Configs: dict/JSON/YAML round-trip, strict validation, registries, stable hashes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import yaml

from batchsep.config import (
    CONFIGS,
    TYPE_KEY,
    Config,
    Registry,
    config_from_dict,
    register_config,
)
from batchsep.dsp.stft import StftConfig
from batchsep.errors import ConfigError, ParameterError, RegistryError


@register_config("test-config-full")
@dataclass(frozen=True)
class FullConfig(Config):
    n: int = 3
    lr: float = 1e-3
    flag: bool = False
    name: str = "abc"
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, str] = (4, "x")
    weights: list[float] = field(default_factory=lambda: [0.5])
    extra: dict[str, Any] = field(default_factory=dict)
    maybe: int | None = None
    grid: tuple[tuple[int, int], ...] = ((1, 2), (3, 4))

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ParameterError(f"n={self.n} must be >= 0")


@register_config("test-config-required")
@dataclass(frozen=True)
class RequiredConfig(Config):
    size: int
    scale: float = 1.0


CUSTOM = FullConfig(
    n=7, lr=0.25, flag=True, name="ünï cöde", mode="b", sizes=(3, 4, 5), pair=(9, "y"),
    weights=[1.5, 2.0], extra={"k": [1, 2], "s": "v"}, maybe=11, grid=((5, 6),),
)  # fmt: skip


@pytest.mark.parametrize(
    "cfg", [FullConfig(), CUSTOM, RequiredConfig(size=2)], ids=["default", "custom", "req"]
)
def test_round_trip_dict_json_yaml(cfg):
    d = cfg.to_dict()
    assert d[TYPE_KEY] == type(cfg).type_key
    assert type(cfg).from_dict(d) == cfg
    assert config_from_dict(d) == cfg
    assert config_from_dict(json.loads(cfg.to_json())) == cfg
    assert type(cfg).from_yaml(cfg.to_yaml()) == cfg
    assert config_from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    assert type(cfg).from_dict(d) is not cfg


def test_to_dict_is_plain_data():
    d = CUSTOM.to_dict()
    assert d == {
        "type": "test-config-full", "n": 7, "lr": 0.25, "flag": True, "name": "ünï cöde", "mode": "b",
        "sizes": [3, 4, 5], "pair": [9, "y"], "weights": [1.5, 2.0], "extra": {"k": [1, 2], "s": "v"},
        "maybe": 11, "grid": [[5, 6]],
    }  # fmt: skip
    # tuples come back as tuples, ints as floats where the field is a float
    back = FullConfig.from_dict({"lr": 1, "sizes": [1], "grid": [[7, 8]]})
    assert back.sizes == (1,) and back.grid == ((7, 8),)
    assert back.lr == 1.0 and type(back.lr) is float


def test_yaml_is_readable_text():
    text = StftConfig().to_yaml()
    assert yaml.safe_load(text) == {
        "type": "stft", "sample_rate": 16000, "n_fft": 512, "hop_length": 128, "window": "sqrt_hann",
    }  # fmt: skip
    assert StftConfig.from_yaml("n_fft: 256\nhop_length: 64\n") == StftConfig(
        n_fft=256, hop_length=64
    )


def test_unknown_key_names_key_and_allowed_fields():
    with pytest.raises(ConfigError) as e:
        StftConfig.from_dict({"n_fft": 512, "hopsize": 128})
    msg = str(e.value)
    assert "'hopsize'" in msg
    for name in ("hop_length", "n_fft", "sample_rate", "window"):
        assert name in msg


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ({"n": "3"}, ["n=", "'3'", "integer"]),
        ({"n": 3.0}, ["n=3.0", "integer"]),
        ({"n": True}, ["n=True", "integer"]),
        ({"lr": "fast"}, ["lr=", "number"]),
        ({"lr": False}, ["lr=False", "number"]),
        ({"flag": 1}, ["flag=1", "true or false"]),
        ({"name": 5}, ["name=5", "string"]),
        ({"mode": "c"}, ["mode='c'", "one of", "'a'", "'b'"]),
        ({"sizes": 3}, ["sizes=3", "list"]),
        ({"sizes": [1, "x"]}, ["sizes[1]", "integer"]),
        ({"pair": [1]}, ["pair=", "2 items"]),
        ({"pair": ["a", "b"]}, ["pair[0]", "integer"]),
        ({"weights": ["w"]}, ["weights[0]", "number"]),
        ({"extra": [1]}, ["extra=", "mapping"]),
        ({"maybe": "x"}, ["maybe=", "integer"]),
        ({"grid": [[1, "z"]]}, ["grid[0][1]", "integer"]),
    ],
)
def test_wrong_type_names_key_and_type(data, needles):
    with pytest.raises(ConfigError) as e:
        FullConfig.from_dict(data)
    for needle in needles:
        assert needle in str(e.value), (needle, str(e.value))


def test_optional_accepts_none():
    assert FullConfig.from_dict({"maybe": None}).maybe is None


def test_literal_of_stft_window():
    with pytest.raises(
        ConfigError, match=r"window='hamming' must be one of \['sqrt_hann', 'hann'\]"
    ):
        StftConfig.from_dict({"window": "hamming"})


def test_missing_required_field_and_bad_mapping():
    with pytest.raises(ConfigError, match="size"):
        RequiredConfig.from_dict({})
    with pytest.raises(ConfigError, match="expects a mapping"):
        RequiredConfig.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="expects a mapping, got NoneType"):
        RequiredConfig.from_yaml("")


def test_value_rule_violations_are_config_errors():
    """A __post_init__ check failing while loading a config is a ConfigError (still a ParameterError)."""
    with pytest.raises(ConfigError, match=r"n=-1 must be >= 0"):
        FullConfig.from_dict({"n": -1})
    with pytest.raises(ConfigError, match="hop_length=0"):
        StftConfig.from_dict({"hop_length": 0})
    with pytest.raises(ParameterError):  # direct construction keeps the plain ParameterError
        FullConfig(n=-1)


def test_type_key_dispatch_and_mismatch():
    assert isinstance(config_from_dict({"type": "stft"}), StftConfig)
    with pytest.raises(ConfigError, match=r"type='stft' does not match FullConfig"):
        FullConfig.from_dict({"type": "stft"})
    with pytest.raises(ConfigError, match="needs a 'type' key"):
        config_from_dict({"n_fft": 512})
    with pytest.raises(ConfigError, match=r"unknown config type 'nope'; known: .*stft"):
        config_from_dict({"type": "nope"})


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        StftConfig().n_fft = 1024  # type: ignore[misc]


def test_register_config_requires_frozen_dataclass():
    class NotADataclass(Config):
        pass

    @dataclass
    class Mutable(Config):
        x: int = 1

    for cls in (NotADataclass, Mutable):
        with pytest.raises(ConfigError, match="must be a frozen dataclass"):
            register_config(f"test-bad-{cls.__name__}")(cls)
        assert f"test-bad-{cls.__name__}" not in CONFIGS


def test_duplicate_config_registration_raises_and_keeps_the_original():
    @dataclass(frozen=True)
    class Impostor(Config):
        x: int = 1

    with pytest.raises(RegistryError, match="'stft' is already registered"):
        register_config("stft")(Impostor)
    assert CONFIGS.get("stft") is StftConfig
    assert Impostor.type_key == ""  # the failed registration left the class untouched


def test_registry_basics():
    reg: Registry[object] = Registry("widget")  # values: an int and factories
    reg.add("b", 2)

    @reg.register("a")
    def make_a() -> int:
        return 1

    assert reg.get("b") == 2 and reg.get("a") is make_a
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"]
    assert "a" in reg and "c" not in reg
    with pytest.raises(RegistryError, match=r"widget 'a' is already registered"):
        reg.add("a", 3)
    with pytest.raises(RegistryError, match=r"widget 'b' is already registered"):
        reg.register("b")(lambda: 0)
    assert reg.get("b") == 2
    with pytest.raises(RegistryError, match=r"unknown widget 'zz'; known: a, b"):
        reg.get("zz")
    with pytest.raises(RegistryError, match=r"known: \(none\)"):
        Registry("thing").get("x")


def test_config_hash_known_value():
    """The hash is sha256 of the sorted JSON: pinned, so a change in serialisation is noticed."""
    canonical = '{"hop_length": 128, "n_fft": 512, "sample_rate": 16000, "type": "stft", "window": "sqrt_hann"}'
    assert StftConfig().to_json() == canonical
    assert StftConfig().config_hash() == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert StftConfig().config_hash() == "458c2aa8a57cc691"


def test_config_hash_stable_and_sensitive():
    base = FullConfig()
    assert base.config_hash() == FullConfig().config_hash()
    assert base.config_hash() == FullConfig.from_yaml(base.to_yaml()).config_hash()
    assert len(base.config_hash()) == 16
    changes: list[dict[str, Any]] = [
        {"n": 4}, {"lr": 2e-3}, {"flag": True}, {"name": "abd"}, {"mode": "b"}, {"sizes": (2, 1)},
        {"pair": (4, "y")}, {"weights": [0.5, 0.0]}, {"extra": {"a": 1}}, {"maybe": 0}, {"grid": ()},
    ]  # fmt: skip
    hashes = {base.config_hash()} | {dataclasses.replace(base, **c).config_hash() for c in changes}
    assert len(hashes) == len(changes) + 1
    # same content under another type key hashes differently
    assert StftConfig().config_hash() != FullConfig().config_hash()


def test_config_hash_equal_for_equal_configs():
    """lr=1 and lr=1.0 are the same config (and YAML `lr: 1` loads as 1.0): same hash."""
    a, b = FullConfig(lr=1), FullConfig(lr=1.0)
    assert a == b
    assert a.config_hash() == b.config_hash() == FullConfig.from_yaml("lr: 1\n").config_hash()
