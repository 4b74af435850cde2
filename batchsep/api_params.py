"""The parameter rules of the :mod:`batchsep.api` stages.

:func:`check_params` is shared by the API functions, the CLI and job specs (``batchsep.api.check_params``
is this function).

>>> check_params("scan", {"workers": 2, "shard_size": 0})
['shard_size=0 must be >= 1']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from batchsep.dsp.level import MODEL_LEVEL
from batchsep.errors import ParameterError

_Rule = Callable[[Any], str | None]


def _integer(low: int, *, optional: bool = True) -> _Rule:
    def rule(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        return f"must be >= {low}" if value < low else None

    return rule


def _number(low: float, high: float | None = None, *, optional: bool = True) -> _Rule:
    """A number ``> low`` (and ``<= high``)."""

    def rule(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if value <= low or (high is not None and value > high):
            return f"must be > {low:g}" if high is None else f"must be in ({low:g}, {high:g}]"
        return None

    return rule


def _choice(*choices: Any) -> _Rule:
    def rule(value: Any) -> str | None:
        if isinstance(value, bool) or value not in choices:
            return f"must be one of {', '.join(map(str, choices))}"
        return None

    return rule


def _sr(value: Any) -> str | None:
    if isinstance(value, bool) or value not in ("keep", "16000", 16000):
        return "must be 'keep' (the input's rate) or 16000"
    return None


def _fmt(value: Any) -> str | None:
    from batchsep.io.audio import ENCODE_FORMATS

    return _choice(*ENCODE_FORMATS)(value)


def _input_level(value: Any) -> str | None:
    if value is None or value == MODEL_LEVEL:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not -80 <= value <= 0:
        return "must be 'model' (the model's own level), a level in [-80, 0] dBFS or None (the raw level)"
    return None


def _metrics(value: Any) -> str | None:
    """Names from ``METRIC_FAMILIES``; None: the default; an empty list scores no audio (emotions only)."""
    from batchsep.evaluation.metrics import METRIC_FAMILIES

    if value is None:
        return None
    if not isinstance(value, list | tuple) or any(m not in METRIC_FAMILIES for m in value):
        return f"must be a list of {', '.join(METRIC_FAMILIES)} (empty: emotions only)"
    return None


def _train_model(value: Any) -> str | None:
    from batchsep.pipeline.train.types import TRAINABLE_MODELS

    if value not in TRAINABLE_MODELS:
        return f"unknown model {value!r}; known: {', '.join(sorted(TRAINABLE_MODELS))}"
    return None


_WORKERS = {"workers": _integer(1)}
_RULES: dict[str, dict[str, _Rule]] = {
    "scan": {**_WORKERS, "shard_size": _integer(1, optional=False)},
    "prepare": {
        **_WORKERS,
        "shard_size": _integer(1, optional=False),
        "n_train": _integer(0),
        "n_valid": _integer(0),
        "n_test": _integer(0),
        "max_seconds": _number(0),
        "augment": lambda v: _augment(v),
    },
    "features": {
        **_WORKERS,
        "kind": _choice("stft", "logmel"),
        "shard_mb": _number(0, optional=False),
        "compression": _choice("zstd", "lz4", "snappy", "none"),
    },
    "train": {
        **_WORKERS,
        "model": _train_model,
        "max_epochs": _integer(0),
        "train_fraction": _number(0, 1, optional=False),
        "batch_size": _integer(1, optional=False),
        "crop_frames": _integer(0),
        "snmf_frames": _integer(1, optional=False),
    },
    "enhance": {
        **_WORKERS,
        "shard_size": _integer(1),
        "sr": _sr,
        "fmt": _fmt,
        "subtype": _choice("keep", "PCM_16", "PCM_24", "FLOAT", "VORBIS", "OPUS"),
        "input_level_db": _input_level,
        "multichannel": _choice("downmix", "keep", "beamform", "mono"),
        "beamformer": _choice("mvdr", "gev_ban", "mwf", "delay_and_sum"),
        "beam_forgetting": _number(0, 1),
    },
    "tag": {**_WORKERS, "shard_size": _integer(1)},
    "evaluate": {**_WORKERS, "shard_size": _integer(1, optional=False), "metrics": _metrics},
}


def _augment(value: Any) -> str | None:
    """``prepare``'s ``augment``: None, kinds (a list or "a,b"), or an AugmentConfig (or its dict)."""
    from batchsep.corpus.augment import AugmentConfig
    from batchsep.errors import ConfigError

    try:
        if isinstance(value, str):
            AugmentConfig(kinds=tuple(k.strip() for k in value.split(",") if k.strip()))
        elif isinstance(value, list | tuple):
            AugmentConfig(kinds=tuple(value))
        elif isinstance(value, dict):
            AugmentConfig.from_dict(value)
        elif value is not None and not isinstance(value, AugmentConfig):
            return "must be a list of kinds or a mapping of AugmentConfig fields"
    except (ParameterError, ConfigError) as e:
        return f"is invalid: {e}"
    return None


def _mixture_config(params: Mapping[str, Any]) -> str | None:
    """``prepare``: the mixture config its ``config`` and the other arguments make (as the CLI does)."""
    import dataclasses

    from batchsep.corpus.mixtures import MixtureConfig

    fields = {f.name for f in dataclasses.fields(MixtureConfig)}
    overrides = {k: v for k, v in params.items() if k in fields and k != "type" and v is not None}
    if isinstance(overrides.get("holdout_noise_classes"), list):
        overrides["holdout_noise_classes"] = tuple(overrides["holdout_noise_classes"])
    config = params.get("config")
    try:
        if isinstance(config, dict):
            config = MixtureConfig.from_dict(config)
        if config is None or isinstance(config, MixtureConfig):
            dataclasses.replace(config or MixtureConfig(), **overrides)
    except (ParameterError, TypeError) as e:
        return f"config: {e}"
    return None


_WHOLE: dict[str, Callable[[Mapping[str, Any]], str | None]] = {"prepare": _mixture_config}
"""Checks of a stage's parameters together, made when each value passes its own rule."""


def check_params(stage: str, params: Mapping[str, Any]) -> list[str]:
    """The problems with the values of ``params`` for ``batchsep.api.<stage>`` (empty when none).

    The same value rules as the CLI command's options (``workers >= 1``, ``shard_size >= 1``,
    ``sr`` keep|16000, ``fmt`` wav|flac, ...), one message per bad value (``"workers=0 must be >= 1"``).
    Parameters not given, and stages or parameters without a rule, are not checked; types are checked
    only as far as a rule needs them. Every API function calls it first; a job spec checks each stage
    with it before anything runs.

    >>> check_params("enhance", {"workers": 0, "fmt": "wav"})
    ['workers=0 must be >= 1']
    """
    rules = _RULES.get(stage, {})
    problems = []
    for name, value in params.items():
        rule = rules.get(name)
        message = rule(value) if rule is not None else None
        if message:  # a rule's message is "must be ..." (after NAME=VALUE) or a whole sentence
            problems.append(
                message if message.startswith("unknown ") else f"{name}={value!r} {message}"
            )
    whole = _WHOLE.get(stage)
    message = whole(params) if whole is not None and not problems else None
    return [*problems, message] if message else problems


def _check(stage: str, **params: Any) -> None:
    """Raise :class:`ParameterError` listing every problem :func:`check_params` finds."""
    problems = check_params(stage, params)
    if problems:
        raise ParameterError(f"{stage}: " + "; ".join(problems))
