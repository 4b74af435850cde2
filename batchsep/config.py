"""Frozen dataclass configs with a type key, YAML/JSON round-trip, and name registries.

A config is a frozen dataclass registered under a *type key*; ``to_dict`` includes that key so
``config_from_dict`` can rebuild the right class.  A :class:`Registry` maps names to factories and
refuses duplicates, which is how models, losses and stages are looked up by name.

Example
-------
>>> from dataclasses import dataclass
>>> @register_config("example")
... @dataclass(frozen=True)
... class ExampleConfig(Config):
...     n: int = 3
>>> config_from_dict(ExampleConfig(n=5).to_dict())
ExampleConfig(n=5)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

import yaml

from batchsep.errors import ConfigError, ParameterError, RegistryError

T = TypeVar("T")
C = TypeVar("C", bound="Config")

TYPE_KEY = "type"


class Registry(Generic[T]):
    """A name → object mapping that refuses duplicate names.

    Parameters
    ----------
    kind : str
        What the registry holds (used in error messages), e.g. ``"model"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under ``name``; raises on a duplicate."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


CONFIGS: Registry[type[Config]] = Registry("config type")


def register_config(type_key: str) -> Callable[[type[C]], type[C]]:
    """Register a frozen dataclass config class under ``type_key``."""

    def deco(cls: type[C]) -> type[C]:
        if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
            raise ConfigError(f"config class {cls.__name__} must be a frozen dataclass")
        CONFIGS.add(type_key, cls)  # raises on a duplicate before the class is touched
        cls.type_key = type_key
        return cls

    return deco


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert a plain value (from YAML/JSON) to the field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}={value!r} must be one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}={value!r} must be a list")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}={value!r} must have {len(args)} items")
            return tuple(
                _coerce(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))
            )
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}={value!r} must be a mapping")
        return dict(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}={value!r} must be a number")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}={value!r} must be an integer")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}={value!r} must be true or false")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}={value!r} must be a string")
        return value
    return value


def _plain(value: Any) -> Any:
    """``value`` as plain JSON/YAML data: tuples (at any depth) become lists."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Config:
    """Mixin for frozen dataclass configs: dict/JSON/YAML round-trip and a stable hash."""

    type_key: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {TYPE_KEY: self.type_key}
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if hints.get(f.name) is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)  # lr=1 and lr=1.0 are one config: same dict, JSON and hash
            d[f.name] = _plain(v)
        return d

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build this config from a mapping, rejecting unknown keys and wrong types."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
        data = dict(data)
        key = data.pop(TYPE_KEY, cls.type_key)
        if cls.type_key and key != cls.type_key:
            raise ConfigError(
                f"{TYPE_KEY}={key!r} does not match {cls.__name__} ({cls.type_key!r})"
            )
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown key {unknown[0]!r} for {cls.type_key or cls.__name__}; "
                f"allowed: {', '.join(sorted(fields))}"
            )
        kwargs = {k: _coerce(v, hints[k], k) for k, v in data.items()}
        try:
            return cls(**kwargs)
        except ConfigError:
            raise
        except (TypeError, ParameterError) as e:  # missing field, or a __post_init__ rule broken
            raise ConfigError(f"{cls.type_key or cls.__name__}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls: type[C], text: str) -> C:
        return cls.from_dict(yaml.safe_load(text))

    def config_hash(self) -> str:
        """A short, stable hash of the config's content (sha256 of its sorted JSON)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild any registered config from its ``to_dict`` output (dispatch on the type key)."""
    if not isinstance(data, dict) or TYPE_KEY not in data:
        raise ConfigError(f"config mapping needs a {TYPE_KEY!r} key")
    try:
        cls = CONFIGS.get(data[TYPE_KEY])
    except RegistryError as e:
        raise ConfigError(str(e)) from None
    return cls.from_dict(data)
