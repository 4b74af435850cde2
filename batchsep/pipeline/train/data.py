"""Training inputs: data options, config overrides, the features' transform and level, SCE/DC labels.

Batch sources (train subsets, DDP ranks) are in :mod:`batchsep.pipeline.train.batches`; SNMF dictionary
learning in :mod:`batchsep.pipeline.train.snmf_tasks`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from batchsep.config import Config
from batchsep.dsp.stft import StftConfig, level_db_from_magnitudes
from batchsep.errors import ParameterError, StorageError
from batchsep.evaluation import heldout
from batchsep.io import parquet, storage
from batchsep.models.base import MODELS
from batchsep.pipeline.features.driver import FEATURES_DIR
from batchsep.pipeline.features.worker import read_transform
from batchsep.pipeline.prepare import run as prepare_run
from batchsep.pipeline.train.batches import train_subset
from batchsep.pipeline.train.types import DataOptions
from batchsep.training.data.features import frames_column, list_shards

TRAIN_PREFIX = "train."


def parse_overrides(
    items: Mapping[str, Any] | list[str] | tuple[str, ...] | None,
) -> dict[str, Any]:
    """``["key=value", ...]`` (values parsed as YAML: ``3``, ``1e-3``, ``true``, ``[a, b]``) or a mapping.

    Raises
    ------
    ParameterError
        On an item without ``=`` or with an empty key.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"config override {item!r} must look like KEY=VALUE")
        parsed = yaml.safe_load(value) if value.strip() else ""
        if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                parsed = float(parsed)
        out[key.strip()] = parsed
    return out


def split_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split overrides into model-config keys and ``train.``-prefixed :class:`TrainConfig` keys."""
    model = {k: v for k, v in overrides.items() if not k.startswith(TRAIN_PREFIX)}
    train = {k[len(TRAIN_PREFIX) :]: v for k, v in overrides.items() if k.startswith(TRAIN_PREFIX)}
    return model, train


def model_config(name: str, overrides: Mapping[str, Any], *, n_freq: int) -> Config:
    """The registered config of model ``name`` with ``overrides`` and the features' ``n_freq``.

    Raises
    ------
    RegistryError
        Unknown model name.
    ConfigError
        Unknown key or invalid value (the message names them).
    """
    cls = MODELS.get(name).config_class
    data = {**overrides, "n_freq": n_freq}
    return cls.from_dict({k: v for k, v in data.items() if k != "type"})


def resolve_features(uri: str) -> str:
    """The features folder of ``uri``: ``uri/features`` for a prepare run, else ``uri`` itself.

    Raises
    ------
    StorageError
        When neither holds a ``train/`` split with shards.
    """
    for candidate in (storage.join(uri, FEATURES_DIR), uri):
        if storage.exists(storage.join(candidate, "train")):
            return candidate
    raise StorageError(
        f"cannot read features under {uri}: no train/ split (run `batchsep features` first)"
    )


def feature_transform(
    features_uri: str, data: DataOptions
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The STFT transform of the run's shards, and a description of the training data used."""
    shards = list_shards(storage.join(features_uri, "train"))
    if not shards:
        raise StorageError(f"no feature shards (part-*.parquet) under {features_uri}/train")
    transform = read_transform(shards[0].uri)
    if transform.get("type") != "stft_features":
        raise ParameterError(
            f"{features_uri} holds {transform.get('type')!r} features; training needs STFT features"
        )
    keep = train_subset(features_uri, data.train_fraction, data.seed)
    n_all = sum(s.num_ok for s in shards)
    valid_uri = storage.join(features_uri, "valid")
    n_valid = sum(s.num_ok for s in list_shards(valid_uri)) if storage.exists(valid_uri) else 0
    info = {
        "train_fraction": data.train_fraction,
        "n_train_mixtures": n_all if keep is None else len(keep),
        "n_train_available": n_all,
        "n_valid_mixtures": n_valid,
        "batch_size": data.batch_size,
        "crop_frames": data.crop_frames,
        "seed": data.seed,
        **recorded_sources(features_uri, keep),
    }
    return transform, info


def _feature_ids(split_uri: str) -> dict[str, str | None]:
    """mixture id → speaker (None when the shards lack the column) of the ok rows of a split folder."""
    out: dict[str, str | None] = {}
    for shard in list_shards(split_uri) if storage.exists(split_uri) else []:
        rows = parquet.read_columns(shard.uri, ["mixture_id", "status", "speaker"]).to_pylist()
        out.update({r["mixture_id"]: r.get("speaker") for r in rows if r.get("status") == "ok"})
    return out


def recorded_sources(features_uri: str, keep: frozenset[str] | None = None) -> dict[str, list[str]]:
    """``speakers``, ``valid_speakers`` and ``noise_recordings`` of the mixtures behind the features
    (:func:`batchsep.evaluation.heldout.training_sources`; train: the ``keep`` subset), read from the
    ``mixtures.parquet`` of the prepare run the features folder lies in (``<run>/features``), for
    :func:`batchsep.evaluation.heldout.overlap`. Empty (the keys left out, no error) when there is no such
    table or it does not describe these features (a feature row's mixture id, or its speaker, not in it)."""
    table = storage.join(storage.parent(features_uri), prepare_run.MIXTURES_NAME)
    if not storage.exists(table):
        return {}
    try:
        rows = heldout.read_mixture_rows(table)
        ids = {s: _feature_ids(storage.join(features_uri, s)) for s in ("train", "valid")}
    except (StorageError, OSError, ValueError):
        return {}
    known = {
        (r.get("split"), r.get("mixture_id")): r.get("speaker")
        for r in rows
        if r.get("status") == "ok"
    }
    missing = object()
    for split, by_id in ids.items():
        for mixture_id, speaker in by_id.items():
            recorded = known.get((split, mixture_id), missing)
            if recorded is missing or speaker not in (None, recorded):
                return {}
    train = set(ids["train"]) if keep is None else set(ids["train"]) & keep
    return heldout.training_sources(rows, train, set(ids["valid"]))


def log_line(verbose: bool, msg: str) -> None:
    """One progress line on stderr when ``verbose``. Written to the stream, not printed: Ray Train patches
    ``print`` in its workers to also log it, which showed every line twice."""
    if verbose:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()


LEVEL_ROWS = 512
"""Training mixtures :func:`training_level_db` reads (the first ones of the train split's shards)."""


def training_level_db(features_uri: str, stft: Mapping[str, Any]) -> float | None:
    """Median RMS level (dBFS, rounded to 1 dB) of the train split's noisy mixtures, from their STFT
    magnitudes (Parseval, :func:`~batchsep.dsp.stft.level_db_from_magnitudes`; at most ``LEVEL_ROWS``
    mixtures). A mask model's output hardly changes with its input level within a dB; the rounding keeps
    the recorded value stable between runs on other samples of the same data.

    Recorded in the trained model's ``config.json`` as ``input_level_db``: the level the enhancer brings
    each input window to, so the model sees inputs at the level it was trained on. None without rows."""
    config = StftConfig.from_dict(dict(stft))
    levels: list[float] = []
    for shard in list_shards(storage.join(features_uri, "train")):
        t = parquet.read_table(shard.uri, columns=["status", "n_samples", "noisy_mag"])
        ok = [s == "ok" for s in t.column("status").to_pylist()]
        for good, n, mag in zip(
            ok, t.column("n_samples").to_pylist(), frames_column(t.column("noisy_mag"))
        ):
            if good and n and mag is not None and mag.size:
                levels.append(level_db_from_magnitudes(mag, int(n), config))
        if len(levels) >= LEVEL_ROWS:
            break
    return float(round(float(np.median(levels[:LEVEL_ROWS])))) if levels else None


def distinct_values(uri: str, column: str) -> tuple[str, ...]:
    """Sorted distinct non-null values of ``column`` over the ok rows of a split folder's shards.

    Raises
    ------
    StorageError
        When a shard lacks ``column`` or cannot be read.
    """
    values: set[str] = set()
    for shard in list_shards(uri):
        try:
            t = parquet.read_table(shard.uri, columns=["status", column])
        except (StorageError, OSError, KeyError, ValueError) as e:
            raise StorageError(f"cannot read column {column!r} of {shard.uri}: {e}") from e
        for status, value in zip(t.column("status").to_pylist(), t.column(column).to_pylist()):
            if status == "ok" and value is not None:
                values.add(str(value))
    return tuple(sorted(values))


SOURCE_COLUMNS = {
    "n_speakers": ("speaker_idx", "speaker", "speakers"),
    "n_noises": ("noise_idx", "noise_class", "noise_classes"),
}
"""SCE per-source vectors: config key → (batch key, feature column, ``metrics.json`` data key)."""


def embedding_data(
    model: str,
    features_uri: str,
    transform: Mapping[str, Any],
    data: DataOptions,
    overrides: Mapping[str, Any],
) -> tuple[DataOptions, dict[str, Any], dict[str, Any]]:
    """What the embedding models (seed 004) need from the data, added to ``data`` and ``overrides``.

    SCE and DC label each bin by the dominant source: the batches carry ``noise_mag`` when the
    features have it (exact labels; else the models estimate ``|N|`` from ``|X|`` and ``|S|``). For
    SCE, ``n_speakers=auto`` / ``n_noises=auto`` give one source vector per distinct ``speaker`` /
    ``noise_class`` of the train split, and the batches carry ``speaker_idx`` / ``noise_idx``
    (-1 for a speaker or noise class unseen in training, e.g. in the validation split).

    Returns
    -------
    (data, overrides, info)
        Updated options, model-config overrides, and a description for ``metrics.json``.

    Raises
    ------
    ConfigError
        ``auto`` for a model other than SCE.
    """
    from dataclasses import replace

    from batchsep.errors import ConfigError

    overrides = dict(overrides)
    info: dict[str, Any] = {}
    autos = [k for k in SOURCE_COLUMNS if overrides.get(k) == "auto"]
    if autos and model != "sce":
        raise ConfigError(f"{autos[0]}=auto is an SCE option, not one of model {model!r}")
    if model not in ("sce", "dc"):
        return data, overrides, info
    extra = ("noise_mag",) if transform.get("noise_mag") else ()
    index = []
    for key in autos:
        batch_key, column, info_key = SOURCE_COLUMNS[key]
        values = distinct_values(storage.join(features_uri, "train"), column)
        overrides[key] = len(values)
        index.append((batch_key, column, values))
        info[info_key] = list(values)
    info["dominance_labels"] = "noise_mag" if extra else "estimated from noisy_mag and clean_mag"
    data = replace(data, extra_columns=(*data.extra_columns, *extra),
                   index_columns=(*data.index_columns, *index))  # fmt: skip
    return data, overrides, info
