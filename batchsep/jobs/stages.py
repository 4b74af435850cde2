"""The stages a job spec may name: :mod:`batchsep.api` functions, their settable parameters, kwargs."""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from batchsep.config import Config, _coerce
from batchsep.errors import ConfigError

if TYPE_CHECKING:
    from batchsep.jobs.schema import JobSpec, StageSpec


def stage_functions() -> dict[str, Callable[..., Any]]:
    """Every stage a spec may name: the public functions defined in :mod:`batchsep.api`, except its
    helpers (``api._NOT_STAGES``: :func:`batchsep.api.check_params`)."""
    from batchsep import api

    names = getattr(api, "__all__", None) or [n for n in vars(api) if not n.startswith("_")]
    helpers = set(getattr(api, "_NOT_STAGES", ()))
    return {
        n: f
        for n in sorted(names)
        if n not in helpers
        and inspect.isfunction(f := getattr(api, n, None))
        and f.__module__ == api.__name__
    }


def _is_callable_hint(hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_callable_hint(a) for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint) or hint
    return origin in (Callable, typing.Callable)  # type: ignore[comparison-overlap]


def stage_parameters(fn: Callable[..., Any]) -> dict[str, tuple[inspect.Parameter, Any]]:
    """Parameters a spec may set for ``fn``: name → (parameter, annotated type or ``Any``).

    Callbacks (``Callable`` annotations) and ``*args`` are not settable from a spec. With ``**settings``
    and a ``config`` parameter annotated with a :class:`~batchsep.config.Config` class, the settings are
    that class's fields (see :func:`accepts_any_key` for ``**settings`` without one).
    """
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that cannot be evaluated here: fall back to no type checks
        hints = {}
    out = {}
    params = inspect.signature(fn).parameters
    for name, p in params.items():
        if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL, p.VAR_KEYWORD) or _is_callable_hint(
            hints.get(name)
        ):
            continue
        out[name] = (p, hints.get(name, Any))
    cfg = _config_class(hints.get("config"))
    if cfg is not None and any(p.kind is p.VAR_KEYWORD for p in params.values()):
        cfg_hints = typing.get_type_hints(cfg)
        for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
            default = f.default if f.default is not dataclasses.MISSING else None
            p = inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default)
            out.setdefault(f.name, (p, cfg_hints.get(f.name, Any)))
    return out


def accepts_any_key(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes ``**settings`` that no annotation describes (unknown keys pass unchecked)."""
    params = inspect.signature(fn).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return False
    try:
        return _config_class(typing.get_type_hints(fn).get("config")) is None
    except Exception:
        return True


def spec_schema() -> dict[str, dict[str, str]]:
    """The job-spec schema as it follows from :mod:`batchsep.api`: stage → parameter → ``"type = default"``.

    ``{"enhance": {"in_uri": "str (required)", "workers": "int | None = None", ...}, ...}`` (defaults as
    ``repr``; key ``"**"`` where a stage passes unknown keys on unchecked).
    ``tests/unit/jobs/jobspec_schema.txt`` pins it, so that renaming, retyping or re-defaulting a keyword
    of an ``api`` function cannot change the job-spec format unseen.

    Returns
    -------
    dict
        Stage name → parameter name → its type and default, as text.
    """
    out: dict[str, dict[str, str]] = {}
    for name, fn in stage_functions().items():
        params: dict[str, str] = {}
        for key, (p, hint) in stage_parameters(fn).items():
            typ = getattr(hint, "__name__", None) or str(hint)
            if hint is not Any and typing.get_args(
                hint
            ):  # unions, Literal, generics: the full form
                typ = str(hint).replace("typing.", "").replace("collections.abc.", "")
            empty = p.default is inspect.Parameter.empty
            params[key] = f"{typ} (required)" if empty else f"{typ} = {p.default!r}"
        if accepts_any_key(fn):
            params["**"] = "any key"
        out[name] = params
    return out


def _config_class(hint: Any) -> type[Config] | None:
    for arg in (hint, *typing.get_args(hint)):
        if isinstance(arg, type) and issubclass(arg, Config):
            return arg
    return None


def coerce_param(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to ``hint`` (a mapping for a :class:`~batchsep.config.Config` class: ``from_dict``)."""
    cls = _config_class(hint)
    if cls is not None and isinstance(value, Mapping):
        try:
            return cls.from_dict(dict(value))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return _coerce(value, hint, where)


def call_kwargs(stage: StageSpec, *, address: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``batchsep.api.<stage>``: its params plus ``address`` if it takes one."""
    kwargs = dict(stage.params)
    fn = stage_functions()[stage.stage]
    if address is not None and "address" in inspect.signature(fn).parameters:
        kwargs["address"] = address
    return kwargs


INPUT_PARAMS: dict[str, tuple[str, ...]] = {
    "scan": ("in_uri",),
    "prepare": ("speech_uri", "noise_uri"),
    "features": ("run_uri",),
    "train": ("run_uri", "init_from"),
    "enhance": ("in_uri", "model", "emotion_model"),
    "tag": ("in_uri", "emotion_model"),
    "evaluate": ("run_uri", "references"),
    "inspect": ("model_uri",),
    "report": ("run_uris",),
}
"""The parameters of each stage that name data it reads (see :func:`missing_inputs`)."""

OUTPUT_PARAMS = ("out_uri", "run_uri")
"""Parameters naming where a stage writes (``features``, ``train`` and ``evaluate`` write into their run)."""


def missing_inputs(spec: JobSpec) -> tuple[list[str], list[str]]:
    """The inputs of the spec's stages that do not exist, and those that could not be checked (one
    message each, in stage order).

    An input an earlier stage writes (at or under its ``out_uri`` / ``run_uri``) is not checked: it appears
    when the job runs. Shipped model names (``default``, ``default-emotion``) are not URIs. An input whose
    storage cannot be asked from here (an S3 bucket without network or credentials, say) is "unchecked":
    the spec may be meant for a cluster that can.
    """
    from batchsep.errors import StorageError
    from batchsep.io import storage

    written: list[str] = []
    missing, unchecked = [], []
    for stage in spec.stages:
        for name, uri in _uris(stage, INPUT_PARAMS.get(stage.stage, ())):
            norm = storage.normalize(uri)
            if any(norm == w or norm.startswith(w + "/") for w in written):
                continue
            try:
                exists = storage.exists(uri)
            except StorageError as e:
                unchecked.append(f"{stage.label}: {name}: {str(e).splitlines()[0]}")
                continue
            if not exists:
                missing.append(f"{stage.label}: {name}={uri}: no such file, folder or prefix")
        written += [
            storage.normalize(v)
            for v in (stage.params.get(p) for p in OUTPUT_PARAMS)
            if isinstance(v, str) and v
        ]
    return missing, unchecked


def relative_paths(spec: JobSpec) -> list[str]:
    """The spec's local paths that are relative, each once with where it first appears: a submitted job
    resolves them in the head's working folder, not where ``submit`` ran."""
    from batchsep.io import storage

    found: dict[str, str] = {}
    for stage in spec.stages:
        names = dict.fromkeys((*INPUT_PARAMS.get(stage.stage, ()), *OUTPUT_PARAMS))
        for name, uri in _uris(stage, names):
            if not (storage.is_s3(uri) or uri.startswith("file://") or os.path.isabs(uri)):
                found.setdefault(uri, f"{uri} ({stage.label}: {name})")
    return list(found.values())


def _uris(stage: StageSpec, names: Iterable[str]) -> Iterator[tuple[str, str]]:
    """``(param, uri)`` for each URI among the stage's parameters ``names`` (lists give one each); shipped
    model names (``default``, ``default-emotion``) and zoo model names (``rnnoise``, ``a+b``) are not URIs."""
    from batchsep.io import checkpoint
    from batchsep.pipeline.enhance.zoo import is_zoo_name

    for name in names:
        value = stage.params.get(name)
        for uri in value if isinstance(value, list | tuple) else [value]:
            if not (isinstance(uri, str) and uri) or is_zoo_name(uri):
                continue
            if checkpoint.resolve(uri) == uri:
                yield name, uri
