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
from dataclasses import dataclass, field
from typing import Any

import yaml

from batchsep.config import Config, _coerce, register_config
from batchsep.errors import ConfigError
from batchsep.jobspec_credentials import check_no_credentials, looks_like_secret, secret_message
from batchsep.jobspec_references import ReferenceResolver
from batchsep.jobspec_stages import accepts_any_key, coerce_param, stage_functions, stage_parameters

SPEC_KEYS = ("name", "description", "stages", "ray", "env")
STAGE_KEYS = ("stage", "name", "params")
RAY_SET_PARAMS = ("address",)
"""Stage parameters set once for the whole job (``ray.address`` or ``--address``), never per stage."""

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@register_config("job_ray")
@dataclass(frozen=True)
class RaySection(Config):
    """The spec's ``ray:`` section.

    Parameters
    ----------
    address : str, optional
        Where stages run: ``None`` (``$RAY_ADDRESS`` inside a Ray Job, else an embedded local Ray),
        ``"auto"``, ``"local"``, ``"HOST:PORT"`` (GCS) or ``"ray://HOST:10001"``. Not the dashboard URL
        (``http://HEAD:8265``), which is for ``batchsep submit``.
    workers : int, optional
        Default ``workers`` of every stage that takes one (embedded Ray CPUs / tasks in flight).
    """

    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"ray.workers={self.workers} must be >= 1")
        if self.address is not None and self.address.startswith(("http://", "https://")):
            raise ConfigError(
                f"ray.address={self.address!r} is a dashboard (Jobs API) URL; use it with "
                "`batchsep submit --address`, and here a Ray address (auto, HOST:PORT, ray://HOST:10001)"
            )


@dataclass(frozen=True)
class StageSpec:
    """One validated stage: ``stage`` is the ``batchsep.api`` function, ``params`` its resolved kwargs."""

    index: int
    name: str
    stage: str
    params: dict[str, Any]
    raw_params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``stages[i] (stage)`` or ``stages[i] 'name' (stage)``, as used in messages."""
        named = f" {self.name!r}" if self.name != self.stage else ""
        return f"stages[{self.index}]{named} ({self.stage})"


@dataclass(frozen=True)
class JobSpec:
    """A validated job spec (see the module docstring for the YAML form)."""

    name: str
    stages: tuple[StageSpec, ...]
    ray: RaySection = field(default_factory=RaySection)
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The spec as written (references unresolved); :func:`parse_spec` of it gives this spec back."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["stages"] = [
            {
                "stage": s.stage,
                **({"name": s.name} if s.name != s.stage else {}),
                "params": s.raw_params,
            }
            for s in self.stages
        ]
        ray = {k: v for k, v in self.ray.to_dict().items() if k != "type" and v is not None}
        if ray:
            out["ray"] = ray
        if self.env:
            out["env"] = dict(self.env)
        return out


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for k in data:
        if k not in allowed:
            raise ConfigError(f"{where}: unknown key {k!r}; allowed: {', '.join(sorted(allowed))}")


def check_env(env: Any, *, where: str = "env") -> dict[str, str]:
    """Validate the spec's ``env`` (names, scalar values, no credentials); values become strings."""
    out: dict[str, str] = {}
    for k, v in _mapping(env, where).items():
        if not isinstance(k, str) or not _ENV_KEY_RE.match(k):
            raise ConfigError(f"{where}: variable name {k!r} must match [A-Za-z_][A-Za-z0-9_]*")
        if looks_like_secret(k):
            raise ConfigError(secret_message(f"{where}: {k!r}"))
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, str | int | float):
            raise ConfigError(f"{where}.{k}={v!r} must be a string or a number")
        check_no_credentials(str(v), f"{where}.{k}")
        out[k] = str(v)
    return out


def _parse_stage(
    i: int,
    entry: Any,
    functions: dict[str, Callable[..., Any]],
    resolver: ReferenceResolver,
    ray: RaySection,
) -> StageSpec:
    where = f"stages[{i}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping with a 'stage' key, got {entry!r}")
    _check_keys(entry, STAGE_KEYS, where)
    stage = entry.get("stage")
    if stage not in functions:
        what = "missing the 'stage' key" if stage is None else f"unknown stage {stage!r}"
        raise ConfigError(f"{where}: {what}; allowed stages: {', '.join(functions)}")
    name = entry.get("name", stage)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"{where}: name={name!r} must start with a letter or _ and hold only letters, digits, _ or -"
        )
    if any(s.name == name for s in resolver.stages):
        raise ConfigError(
            f"{where}: stage name {name!r} is already used by an earlier stage; "
            "give each stage a distinct 'name'"
        )
    label = StageSpec(i, name, stage, {}).label
    raw = _mapping(entry.get("params"), f"{label}: params")
    allowed = stage_parameters(functions[stage])
    for k in raw:
        if k in RAY_SET_PARAMS and k in allowed:
            raise ConfigError(
                f"{label}: {k!r} is set once for the whole job, under ray.{k} (or with --{k})"
            )
        if k not in allowed and not accepts_any_key(functions[stage]):
            settable = sorted(n for n in allowed if n not in RAY_SET_PARAMS)
            raise ConfigError(f"{label}: unknown key {k!r}; allowed: {', '.join(settable)}")
    params: dict[str, Any] = {}
    for k, v in raw.items():
        value = resolver.resolve(v, f"{label}: {k}")
        check_no_credentials(value, f"{label}: {k}")
        params[k] = coerce_param(value, allowed[k][1] if k in allowed else Any, f"{label}: {k}")
    if "workers" in allowed and "workers" not in params and ray.workers is not None:
        params["workers"] = ray.workers
    for k, (p, _) in allowed.items():
        if p.default is inspect.Parameter.empty and k not in params and k not in RAY_SET_PARAMS:
            raise ConfigError(f"{label}: missing required parameter {k!r}")
    if stage == "train":
        check_train_params(params, label)
    spec = StageSpec(i, name, stage, params, raw_params=raw)
    resolver.stages.append(spec)
    resolver.defaults.append(
        {k: p.default for k, (p, _) in allowed.items() if p.default is not inspect.Parameter.empty}
    )
    return spec


TRAINABLE_MODELS = (
    "snmf", "drnmf", "lstm", "blstm", "sce", "dc", "dae", "emotion-cnn", "emotion-vae",
)  # fmt: skip
"""The models ``batchsep train --model`` (and a ``train`` stage's ``model``) accepts; ``oracle`` is
registered but needs no training."""


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
    from batchsep.pipeline.train import check_config

    try:
        check_config(str(model), params.get("config"), max_epochs=params.get("max_epochs"))
    except ParameterError as e:
        raise ConfigError(f"{where}: config: {e}") from None


def _parse_ray(value: Any) -> RaySection:
    data = _mapping(value, "ray")
    fields = [f.name for f in dataclasses.fields(RaySection)]
    _check_keys(data, tuple(fields), "ray")
    hints = typing.get_type_hints(RaySection)
    return RaySection(**{k: _coerce(v, hints[k], f"ray.{k}") for k, v in data.items()})


def parse_spec(data: Any) -> JobSpec:
    """Validate a spec given as plain data (the parsed YAML); see the module docstring.

    Raises
    ------
    ConfigError
        On the first problem found, with a message naming where it is and the rule it breaks.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"a job spec must be a mapping, got {type(data).__name__}")
    _check_keys(data, SPEC_KEYS, "spec")
    name = data.get("name")
    if not isinstance(name, str) or not _JOB_NAME_RE.match(name):
        raise ConfigError(
            f"spec: name={name!r} is required: 1-64 letters, digits, '.', '_' or '-' (starting "
            "with a letter or digit)"
        )
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"spec: description={description!r} must be a string")
    ray = _parse_ray(data.get("ray"))
    env = check_env(data.get("env"))
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ConfigError("spec: 'stages' must be a non-empty list of {stage: ..., params: {...}}")
    functions = stage_functions()
    resolver = ReferenceResolver()
    parsed = tuple(_parse_stage(i, e, functions, resolver, ray) for i, e in enumerate(stages))
    return JobSpec(name=name, stages=parsed, ray=ray, env=env, description=description)


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
        raise ConfigError(f"{source}: {e}") from None


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
