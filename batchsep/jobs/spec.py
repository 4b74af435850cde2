"""Job specs: a pipeline of ``batchsep.api`` calls declared in YAML, validated before anything runs.

A spec names its stages; each stage is one function of :mod:`batchsep.api` (the same functions the CLI
commands call) with its keyword parameters. Parameters are checked against that function's *signature*
(names, required parameters, annotated types via :func:`batchsep.config._coerce`), so a new API function
is a new stage with no change here.

The format (``name``, ``stages: [{stage, name?, params}]``, ``ray: {address?, workers?}``, ``env``) is
described in ``jobs/README.md``.

A value ``"${NAME.PARAM}"`` (or ``"${stages.NAME_OR_INDEX.PARAM}"``) is replaced by parameter ``PARAM`` of an
*earlier* stage (its value in the spec, else the function's default); inside a longer string it is
interpolated (``"${prepare.out_uri}/eval"``). ``$${`` writes a literal ``${``.

Credentials never belong in a spec: ``env`` keys that look like secrets and URIs with embedded
``user:password@`` are rejected; object-storage credentials come from the environment of the machine or
cluster that runs the job.

Example
-------
>>> spec = parse_spec({"name": "demo", "stages": [
...     {"stage": "scan", "params": {"in_uri": "data/", "out_uri": "runs/r1", "shard_size": 8}}]})
>>> spec.stages[0].params["shard_size"]
8
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from batchsep.config import Config, _coerce
from batchsep.errors import ConfigError
from batchsep.io.credentials import check_no_credentials, looks_like_secret, secret_message
from batchsep.jobs.references import ReferenceResolver
from batchsep.jobs.schema import (
    RAY_SET_PARAMS,
    SPEC_KEYS,
    STAGE_KEYS,
    JobSpec,
    RaySection,
    SpecError,
    StageSpec,
    unknown_keys,
)
from batchsep.jobs.stages import accepts_any_key, coerce_param, stage_functions, stage_parameters
from batchsep.pipeline.train.types import TRAINABLE_MODELS

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _problems(e: ConfigError) -> list[str]:
    return list(e.problems) if isinstance(e, SpecError) else [str(e)]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    return dict(value)


def check_env(env: Any, *, where: str = "env") -> dict[str, str]:
    """Validate the spec's ``env`` (names, scalar values, no credentials); values become strings.

    Raises
    ------
    SpecError
        Listing every bad variable.
    """
    out: dict[str, str] = {}
    problems: list[str] = []
    for k, v in _mapping(env, where).items():
        if not isinstance(k, str) or not _ENV_KEY_RE.match(k):
            problems.append(f"{where}: variable name {k!r} must match [A-Za-z_][A-Za-z0-9_]*")
            continue
        if looks_like_secret(k):
            problems.append(secret_message(f"{where}: {k!r}"))
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, str | int | float):
            problems.append(f"{where}.{k}={v!r} must be a string or a number")
            continue
        try:
            check_no_credentials(str(v), f"{where}.{k}")
        except ConfigError as e:
            problems += _problems(e)
            continue
        out[k] = str(v)
    if problems:
        raise SpecError(problems)
    return out


def _parse_stage(
    i: int,
    entry: Any,
    functions: dict[str, Callable[..., Any]],
    resolver: ReferenceResolver,
    ray: RaySection,
    problems: list[str],
) -> StageSpec | None:
    """Validate one stage, adding every problem found to ``problems``; the stage (registered for
    references even when it has problems), or ``None`` when it cannot be one."""
    from batchsep.api import check_params

    where = f"stages[{i}]"
    if not isinstance(entry, Mapping):
        problems.append(f"{where} must be a mapping with a 'stage' key, got {entry!r}")
        return None
    unknown = unknown_keys(entry, STAGE_KEYS, where)
    problems += unknown
    stage = entry.get("stage")
    if not isinstance(stage, str) or stage not in functions:
        what = "missing the 'stage' key" if stage is None else f"unknown stage {stage!r}"
        problems.append(f"{where}: {what}; allowed stages: {', '.join(functions)}")
        return None
    name = entry.get("name", stage)
    register = True
    if not isinstance(name, str) or not _NAME_RE.match(name):
        problems.append(
            f"{where}: name={name!r} must start with a letter or _ and hold only letters, digits, _ or -"
        )
        name, register = stage, False
    elif any(s.name == name for s in resolver.stages):
        problems.append(
            f"{where}: stage name {name!r} is already used by an earlier stage; "
            "give each stage a distinct 'name'"
        )
        register = False
    label = StageSpec(i, name, stage, {}).label
    fn = functions[stage]
    try:
        raw = _mapping(entry.get("params"), f"{label}: params")
        params_ok = "params" in entry or not unknown  # not: a misspelt 'params' key
    except ConfigError as e:
        problems += _problems(e)
        raw, params_ok = {}, False
    allowed = stage_parameters(fn)
    any_key = accepts_any_key(fn)
    settable = sorted(n for n in allowed if n not in RAY_SET_PARAMS)
    skip: set[Any] = set()
    for k in raw:
        if k in RAY_SET_PARAMS and k in allowed:
            problems.append(
                f"{label}: {k!r} is set once for the whole job, under ray.{k} (or with --{k})"
            )
            skip.add(k)
        elif k not in allowed and not any_key:
            problems += unknown_keys({k: None}, settable, label)
            skip.add(k)
    params: dict[str, Any] = {}
    for k, v in raw.items():
        if k in skip:
            continue
        try:
            value = resolver.resolve(v, f"{label}: {k}")
            check_no_credentials(value, f"{label}: {k}")
            params[k] = coerce_param(value, allowed[k][1] if k in allowed else Any, f"{label}: {k}")
        except ConfigError as e:
            found = _problems(e)
            if k == "input_level_db" and (v is False or v == "off"):
                found = [f"{found[0]} (the CLI's --input-level off is input_level_db: null)"]
            problems += found
            skip.add(k)
    if "workers" in allowed and "workers" not in raw and ray.workers is not None:
        params["workers"] = ray.workers
    for k, (p, _) in allowed.items():
        missing = k not in params and k not in raw and k not in RAY_SET_PARAMS
        if p.default is inspect.Parameter.empty and missing and params_ok:
            problems.append(f"{label}: missing required parameter {k!r}")
    bad_values = [f"{label}: {m}" for m in check_params(stage, params)]
    problems += bad_values
    if stage == "train" and not bad_values and not skip & {"model", "config", "max_epochs"}:
        try:
            check_train_params(params, label)
        except ConfigError as e:
            problems += _problems(e)
    spec = StageSpec(i, name, stage, params, raw_params=raw)
    if register:
        resolver.stages.append(spec)
        resolver.defaults.append(
            {
                k: p.default
                for k, (p, _) in allowed.items()
                if p.default is not inspect.Parameter.empty
            }
        )
    return spec


def check_train_params(params: Mapping[str, Any], where: str = "train") -> None:
    """Check a ``train`` stage's ``model`` and its ``config`` overrides before anything runs.

    ``model`` must be one of :data:`TRAINABLE_MODELS`; ``config`` keys must be fields of the model's
    config (values checked too), ``train.<key>`` fields of :class:`~batchsep.training.state.TrainConfig`,
    ``snmf.<key>`` (DR-NMF) fields of the SNMF config and ``data.<key>`` (emotion models) data options.
    Values that depend on the features (``n_speakers: auto`` of SCE) are left to the stage.

    Raises
    ------
    ConfigError
        With ``where`` and the offending model or key in the message.
    """
    from batchsep.errors import ParameterError

    model = params.get("model", "drnmf")
    if model not in TRAINABLE_MODELS:
        raise ConfigError(
            f"{where}: unknown model {model!r}; known: {', '.join(sorted(TRAINABLE_MODELS))}"
        )
    from batchsep.pipeline.train.driver import check_config

    try:
        check_config(str(model), params.get("config"), max_epochs=params.get("max_epochs"))
    except ParameterError as e:
        raise ConfigError(f"{where}: config: {e}") from None


def _parse_ray(value: Any) -> RaySection:
    """The ``ray:`` section; :class:`SpecError` listing every problem in it."""
    data = _mapping(value, "ray")
    fields = [f.name for f in dataclasses.fields(RaySection)]
    problems = unknown_keys(data, tuple(fields), "ray")
    hints = typing.get_type_hints(RaySection)
    values = {}
    for k, v in data.items():
        if k in fields:
            try:
                values[k] = _coerce(v, hints[k], f"ray.{k}")
            except ConfigError as e:
                problems += _problems(e)
    try:
        ray = RaySection(**values)
    except ConfigError as e:
        problems += _problems(e)
    if problems:
        raise SpecError(problems)
    return ray


def parse_spec(data: Any) -> JobSpec:
    """Validate a spec given as plain data (the parsed YAML); see the module docstring.

    Every problem is looked for (unknown keys, wrong types, missing or bad parameter values, bad names
    and references, credentials), not just the first one.

    Raises
    ------
    SpecError
        A :class:`~batchsep.errors.ConfigError` listing every problem found (``problems``), each naming
        where it is and the rule it breaks.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"a job spec must be a mapping, got {type(data).__name__}")
    problems = unknown_keys(data, SPEC_KEYS, "spec")
    name = data.get("name")
    if not isinstance(name, str) or not _JOB_NAME_RE.match(name):
        problems.append(
            f"spec: name={name!r} is required: 1-64 letters, digits, '.', '_' or '-' (starting "
            "with a letter or digit)"
        )
    description = data.get("description") or ""
    if not isinstance(description, str):
        problems.append(f"spec: description={description!r} must be a string")
    ray, env = RaySection(), {}
    try:
        ray = _parse_ray(data.get("ray"))
    except ConfigError as e:
        problems += _problems(e)
    try:
        env = check_env(data.get("env"))
    except ConfigError as e:
        problems += _problems(e)
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        problems.append("spec: 'stages' must be a non-empty list of {stage: ..., params: {...}}")
        raise SpecError(problems)
    functions = stage_functions()
    resolver = ReferenceResolver()
    parsed = [_parse_stage(i, e, functions, resolver, ray, problems) for i, e in enumerate(stages)]
    if problems:
        raise SpecError(problems)
    return JobSpec(
        name=str(name),
        stages=tuple(s for s in parsed if s is not None),
        ray=ray,
        env=env,
        description=description,
    )


def apply_overrides(data: Any, overrides: Sequence[str]) -> Any:
    """The spec ``data`` with ``--set`` overrides applied (a copy; ``data`` is not changed).

    Each override is ``STAGE.PARAM=VALUE`` (``STAGE``: a stage's name, i.e. its ``name`` or else its
    ``stage``) or ``ray.KEY=VALUE``; ``VALUE`` is read as YAML (``3``, ``true``, ``[a, b]``, a string).
    Example: ``prepare.out_uri=/data/runs/e2e``.

    Raises
    ------
    ConfigError
        A malformed override or an unknown stage name (the message lists the stage names).
    """
    if not overrides:
        return data
    if not isinstance(data, Mapping) or not isinstance(data.get("stages"), list):
        return data  # parse_spec reports what is wrong with the spec itself
    out = copy.deepcopy(dict(data))
    names = [
        e.get("name", e.get("stage")) if isinstance(e, Mapping) else None for e in out["stages"]
    ]
    for item in overrides:
        target, sep, text = item.partition("=")
        section, dot, key = target.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise ConfigError(f"--set {item!r} must look like STAGE.PARAM=VALUE or ray.KEY=VALUE")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {e}") from None
        if section == "ray":
            out["ray"] = {**(out.get("ray") or {}), key: value}
        elif section in names:
            entry = dict(out["stages"][names.index(section)])
            entry["params"] = {**(entry.get("params") or {}), key: value}
            out["stages"][names.index(section)] = entry
        else:
            raise ConfigError(
                f"--set {item!r}: no stage named {section!r}; stages: {', '.join(map(str, names))}"
            )
    return out


def parse_yaml(text: str, *, source: str = "spec", overrides: Sequence[str] = ()) -> JobSpec:
    """Parse and validate a YAML spec, with ``--set`` overrides applied first; ``source`` names it
    in messages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:  # its message would name the source "<unicode string>"
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(filter(None, (getattr(e, "context", None), getattr(e, "problem", None))))
        raise ConfigError(f"{source}{where}: not valid YAML: {what or e}") from None
    data = apply_overrides(data, overrides)
    try:
        return parse_spec(data)
    except ConfigError as e:
        raise SpecError(_problems(e), source=source) from None


def load_spec(uri: str, *, overrides: Sequence[str] = ()) -> JobSpec:
    """Read and validate the spec at ``uri`` (a local path, ``file://`` or ``s3://``), with
    ``--set`` overrides (:func:`apply_overrides`).

    Raises
    ------
    StorageError
        If the spec cannot be read.
    ConfigError
        If it is not a valid spec.
    """
    from batchsep.io import storage

    text = storage.read_text(uri)
    return parse_yaml(text, source=uri, overrides=overrides)


def describe(value: Any, *, limit: int = 80) -> str:
    """A short one-line rendering of a parameter value for plans and logs."""
    if dataclasses.is_dataclass(value) and isinstance(value, Config):
        value = value.to_dict()
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
