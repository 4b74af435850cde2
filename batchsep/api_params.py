"""The parameter rules of the :mod:`batchsep.api` stages, and the stage options they make.

:func:`check_params` is shared by the API functions, the CLI and job specs (``batchsep.api.check_params``
is this function). :func:`mixture_config`, :func:`augment_config`, :func:`feature_config`,
:func:`enhance_options` and :func:`want_emotion` turn a stage's arguments into its options, the same way
for the checks and for the run.

>>> check_params("scan", {"workers": 2, "shard_size": 0})
['shard_size=0 must be >= 1']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from batchsep.dsp.level import MODEL_LEVEL
from batchsep.errors import ParameterError

_Rule = Callable[[Any], str | None]


def _integer(low: int, high: int | None = None, *, optional: bool = True) -> _Rule:
    """An integer ``>= low`` (and ``<= high``)."""

    def rule(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if high is not None and not low <= value <= high:
            return f"must be in [{low}, {high}]"
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
        "beam_refine": _integer(0, 3, optional=False),
        "beam_noise_power": _number(0, 4),
        "beam_mask": _choice("model", "spatial", "guided"),
    },
    "tag": {**_WORKERS, "shard_size": _integer(1)},
    "evaluate": {**_WORKERS, "shard_size": _integer(1, optional=False), "metrics": _metrics},
}


def augment_config(value: Any) -> Any:
    """``prepare``'s ``augment`` as an :class:`~batchsep.corpus.augment.AugmentConfig` (None: none).

    ``value``: kinds (a list, or ``"a,b"``), an AugmentConfig or its dict. Raises ParameterError
    (ConfigError) for a bad one.
    """
    from batchsep.corpus.augment import AugmentConfig

    if isinstance(value, str):
        return AugmentConfig(kinds=tuple(k.strip() for k in value.split(",") if k.strip()))
    if isinstance(value, list | tuple):
        return AugmentConfig(kinds=tuple(value))
    if isinstance(value, dict):
        return AugmentConfig.from_dict(value)
    if value is not None and not isinstance(value, AugmentConfig):
        raise ParameterError("must be a list of kinds or a mapping of AugmentConfig fields")
    return value


def _augment(value: Any) -> str | None:
    try:
        augment_config(value)
    except ParameterError as e:
        return str(e) if str(e).startswith("must be") else f"is invalid: {e}"
    return None


def mixture_config(params: Mapping[str, Any]) -> Any:
    """``prepare``'s :class:`~batchsep.corpus.mixtures.MixtureConfig` from its arguments ``params``.

    Its ``config`` (a MixtureConfig or its dict; default ``MixtureConfig()``) with the fields the other
    arguments give (those not None) replaced.
    """
    import dataclasses

    from batchsep.corpus.mixtures import MixtureConfig

    fields = {f.name for f in dataclasses.fields(MixtureConfig)}
    overrides = {k: v for k, v in params.items() if k in fields and k != "type" and v is not None}
    if isinstance(overrides.get("holdout_noise_classes"), list):
        overrides["holdout_noise_classes"] = tuple(overrides["holdout_noise_classes"])
    config = params.get("config")
    if isinstance(config, dict):
        config = MixtureConfig.from_dict(config)
    return dataclasses.replace(config or MixtureConfig(), **overrides)


def _mixture_config(params: Mapping[str, Any]) -> str | None:
    """``prepare``: the mixture config its ``config`` and the other arguments make (as the CLI does)."""
    try:
        mixture_config(params)
    except (ParameterError, TypeError) as e:
        return f"config: {e}"
    return None


def feature_config(config: Any, *, kind: str, noise_mag: bool, psa_target: bool) -> Any:
    """``features``' transform configuration.

    ``config`` (a ``StftFeatures``/``LogMelFeatures`` or its dict), else the one ``kind`` names (``stft``
    with ``noise_mag`` and ``psa_target``, or ``logmel``).
    """
    if isinstance(config, dict):
        from batchsep.config import config_from_dict

        return config_from_dict(config)
    if config is not None:
        return config
    from batchsep.pipeline.features.options import LogMelFeatures, StftFeatures

    if kind == "stft":
        return StftFeatures(noise_mag=noise_mag, psa_target=psa_target)
    if kind == "logmel":
        return LogMelFeatures()
    raise ParameterError(f"kind={kind!r} must be 'stft' or 'logmel'")


_ENHANCE_OPTIONS = ("sr", "fmt", "subtype", "input_level_db", "multichannel", "beamformer",
                    "beam_forgetting", "beam_refine", "beam_noise_power", "beam_mask",
                    "beam_postmask")  # fmt: skip


def enhance_options(**given: Any) -> Any:
    """``enhance``'s :class:`~batchsep.pipeline.enhance.file.EnhanceOptions` from its arguments ``given``.

    Of ``sr``, ``fmt``, ``subtype``, ``input_level_db``, ``multichannel``, ``beamformer``,
    ``beam_forgetting``, ``beam_refine``, ``beam_noise_power``, ``beam_mask`` and ``beam_postmask`` (other keys are ignored; defaults for those not given).
    Raises ParameterError when they do not go together (a ``subtype`` the ``fmt`` cannot store).
    """
    from batchsep.pipeline.enhance.file import EnhanceOptions

    values = {k: v for k, v in given.items() if k in _ENHANCE_OPTIONS and k != "sr"}
    if "sr" in given:
        values["out_sr"] = "keep" if given["sr"] == "keep" else int(given["sr"])
    if values.get("multichannel") == "mono":
        values["multichannel"] = "downmix"
    if values.get("beam_forgetting") == 1:  # λ = 1: statistics over the whole file
        values["beam_forgetting"] = None
    return EnhanceOptions(**values)


def _enhance_options(params: Mapping[str, Any]) -> str | None:
    try:
        enhance_options(**params)
    except ParameterError as e:
        return str(e)
    return None


def want_emotion(emotion: bool | None, emotion_model: str) -> bool:
    """Whether ``enhance`` tags emotions.

    ``emotion`` when given; for None, when the shipped tagger is installed or another ``emotion_model``
    is named.
    """
    if emotion is not None:
        return emotion
    from batchsep.io import checkpoint

    return checkpoint.resolve(emotion_model) != emotion_model or emotion_model != "default-emotion"


_WHOLE: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "prepare": _mixture_config,
    "enhance": _enhance_options,
}
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
