"""Training emotion models (``emotion-cnn``, ``emotion-vae``) with held-out actors, Ray-free.

:func:`train_emotion` is the driver: it builds an :class:`EmotionTrainJob` and hands it to a fit
executor (:func:`serial_emotion_fit` here; Ray Train runs
:func:`~batchsep.pipeline.train.emotion_worker.run_emotion_worker` on every DDP worker). The data come from
a log-mel features run, a scan run or an audio folder with RAVDESS file names
(:func:`batchsep.training.data.emotion.load_emotion_corpus`), split by actor into train / valid (early
stopping and model selection) / test (reported only). Training is :func:`batchsep.training.loop.fit`
with a linear warm-up and cosine decay of the learning rate.

Layout written under ``out_uri`` (as the enhancement models')::

    config.json, weights.safetensors   the best model (lowest validation loss) + "features" (its input)
    metrics.json                       history, best epoch, and valid/test accuracy, UAR, macro-F1, confusion
    curves.json, curves.png            learning curves
    state.pt                           resumable trainer state, written after every epoch
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batchsep.dsp.mel import EmotionFeatureConfig
from batchsep.errors import BatchsepError, ConfigError, ParameterError
from batchsep.io import storage
from batchsep.models.base import MODELS
from batchsep.pipeline.runner import FitExecutor
from batchsep.pipeline.train.data import parse_overrides, split_overrides
from batchsep.pipeline.train.emotion_worker import (
    EMOTION_MODELS,
    EmotionTrainJob,
    run_emotion_worker,
)
from batchsep.pipeline.train.types import TrainSummary
from batchsep.training.data.emotion import DEFAULT_TEST_ACTORS, DEFAULT_VALID_ACTORS, check_labelled
from batchsep.training.state import TrainConfig

DATA_PREFIX = "data."
DATA_KEYS = ("valid_actors", "test_actors", "max_mel_shift", "cache_uri", "noise_uri", "n_folds")
"""``data.<key>`` options; ``noise_uri`` and ``n_folds`` are ``emotion-stats``'s (the others the deep models')."""
TRAIN_KEYS = ("swa_epochs", "warmup_epochs", "select")
"""``train.<key>`` options of the emotion models that are not :class:`TrainConfig` fields."""
EMOTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "emotion-cnn": {"lr": 2e-3, "max_epochs": 60, "patience": None},
    "emotion-vae": {"lr": 2e-3, "max_epochs": 150, "patience": None},
    "emotion-stats": {"max_epochs": 60},
}


def serial_emotion_fit(job: EmotionTrainJob) -> dict[str, Any]:
    """The :class:`~batchsep.pipeline.runner.FitExecutor` of this process: :func:`run_emotion_worker`."""
    metrics = run_emotion_worker(job, device=job.device)
    if metrics is None:  # pragma: no cover - rank 0 always returns them
        raise BatchsepError("rank 0 returned no metrics")
    return metrics


def train_emotion(
    data_uri: str,
    out_uri: str,
    *,
    model: str = "emotion-cnn",
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    valid_actors: Sequence[int] = DEFAULT_VALID_ACTORS,
    test_actors: Sequence[int] = DEFAULT_TEST_ACTORS,
    batch_size: int = 32,
    seed: int = 0,
    max_mel_shift: int = 3,
    swa_epochs: int = 0,
    warmup_epochs: int = 3,
    select: str = "uar",
    features: EmotionFeatureConfig | None = None,
    cache_uri: str | None = None,
    fit_executor: FitExecutor[EmotionTrainJob] | None = None,
    device: str = "cpu",
    verbose: bool = True,
) -> TrainSummary:
    """Train an emotion model on a corpus with RAVDESS file names; report held-out actors.

    Parameters
    ----------
    data_uri : str
        A log-mel features run (``batchsep features --kind logmel``), a scan run, or an audio folder.
    out_uri : str
        Model folder (local, ``file://`` or ``s3://``).
    model : {"emotion-cnn", "emotion-vae", "emotion-stats"}
        ``emotion-stats`` trains in this process by
        :func:`batchsep.pipeline.train.emotion_stats.train_emotion_stats` (leave-actors-out CV over
        ``data.n_folds`` folds, default 4, for its figures and temperature, then every actor;
        ``data.noise_uri``: noise for augmentation; ``train.max_epochs``); ``fit_executor``,
        ``batch_size``, actor splits and the deep-model options do not apply to it.
    overrides : mapping or list of "KEY=VALUE", optional
        Model config keys (``dropout``, ``label_smoothing``, ``channels``, ``beta`` …), ``train.<key>``
        for :class:`TrainConfig` (``train.lr``, ``train.max_epochs``, ``train.patience`` …), and
        ``data.<key>`` for the keyword options below (``data.valid_actors=[11, 12]``,
        ``data.test_actors``, ``data.max_mel_shift``, ``data.cache_uri``), which they override.
    valid_actors, test_actors : sequence of int
        Held-out actors: validation (early stopping, model choice) and test (reported in
        ``metrics.json["test"]``, never used to choose anything). All other actors train.
    batch_size, seed, max_mel_shift
        Batching, randomness, and the largest mel-axis shift of the augmentation (0: none).
    swa_epochs : int
        Average the weights of the last ``swa_epochs`` epochs (stochastic weight averaging, batch-norm
        statistics recomputed on the training split); the average replaces the selected epoch when it
        scores at least as well on validation (``metrics.json["swa"]``). Override: ``train.swa_epochs``.
    warmup_epochs : int
        Epochs of linear learning-rate warm-up before the cosine decay (``train.warmup_epochs``).
    select : {"uar", "loss"}
        The epoch kept: best validation UAR, or lowest validation loss (``train.select``).
    features : EmotionFeatureConfig, optional
        The input features (default: seed 003's); stored with the model for the tagger.
    cache_uri : str, optional
        ``.npz`` cache of the decoded corpus (audio inputs only).
    fit_executor : FitExecutor, optional
        Runs the job: default :func:`serial_emotion_fit` (this process); anything that calls
        :func:`batchsep.pipeline.train.driver.run_worker` on each worker (Ray Train's executor) once that
        function hands an :class:`EmotionTrainJob` to :func:`run_emotion_worker`.

    Returns
    -------
    TrainSummary
        ``metrics`` holds ``valid`` and ``test`` (accuracy, uar, macro_f1, confusion, actors).

    Raises
    ------
    RegistryError, ConfigError, ParameterError
        Unknown or non-emotion model, bad override, bad actor split.
    StorageError
        No readable data, or ``out_uri`` not writable.
    """
    if model not in EMOTION_MODELS:
        MODELS.get(model)  # RegistryError for an unknown name
        raise ParameterError(
            f"model={model!r} is not an emotion model; use one of {EMOTION_MODELS}"
        )
    out_uri, data_uri = storage.normalize(out_uri), storage.normalize(data_uri)  # workers move
    storage.check_writable(out_uri)
    check_labelled(
        data_uri
    )  # before any worker: "no RAVDESS name" is the data's fault, not a crash
    parsed = parse_overrides(overrides)  # type: ignore[arg-type]
    if model == "emotion-stats":
        return _train_stats(data_uri, out_uri, parsed, seed=seed, verbose=verbose)
    data_over = {k[len(DATA_PREFIX) :]: v for k, v in parsed.items() if k.startswith(DATA_PREFIX)}
    unknown = sorted(set(data_over) - set(DATA_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key 'data.{unknown[0]}'; allowed: data.{', data.'.join(DATA_KEYS)}"
        )
    valid_actors = data_over.get("valid_actors", valid_actors)
    test_actors = data_over.get("test_actors", test_actors)
    max_mel_shift = int(data_over.get("max_mel_shift", max_mel_shift))
    cache_uri = data_over.get("cache_uri", cache_uri)
    model_over, train_over = split_overrides(
        {k: v for k, v in parsed.items() if not k.startswith(DATA_PREFIX)}
    )
    swa_epochs = int(train_over.pop("swa_epochs", swa_epochs))
    warmup_epochs = int(train_over.pop("warmup_epochs", warmup_epochs))
    select = str(train_over.pop("select", select))
    if select not in ("uar", "loss"):
        raise ConfigError(f"train.select={select!r} must be 'uar' or 'loss'")
    cfg = MODELS.get(model).config_class.from_dict(model_over)
    train_cfg = TrainConfig.from_dict({**EMOTION_DEFAULTS[model], "seed": seed, **train_over})
    feats = (features or EmotionFeatureConfig()).to_dict()
    info = {
        "data_uri": data_uri,
        "valid_actors": [int(a) for a in valid_actors],
        "test_actors": [int(a) for a in test_actors],
        "batch_size": batch_size,
        "max_mel_shift": max_mel_shift,
        "seed": seed,
        "swa_epochs": swa_epochs,
        "warmup_epochs": warmup_epochs,
        "select": select,
    }
    job = EmotionTrainJob(
        model, data_uri, out_uri, cfg.to_dict(), train_cfg.to_dict(), feats,
        tuple(int(a) for a in valid_actors), tuple(int(a) for a in test_actors), batch_size, seed,
        max_mel_shift, warmup_epochs, swa_epochs, select, cache_uri, device, verbose, info,
    )  # fmt: skip
    return TrainSummary.from_metrics(out_uri, (fit_executor or serial_emotion_fit)(job))


def _train_stats(
    data_uri: str, out_uri: str, parsed: Mapping[str, Any], *, seed: int, verbose: bool
) -> TrainSummary:
    """``emotion-stats``: options from ``parsed`` overrides, then :func:`train_emotion_stats`."""
    from batchsep.pipeline.train.emotion_stats import train_emotion_stats

    data_over = {k[len(DATA_PREFIX) :]: v for k, v in parsed.items() if k.startswith(DATA_PREFIX)}
    bad = sorted(set(data_over) - {"noise_uri", "n_folds"})
    if bad:
        raise ConfigError(
            f"data.{bad[0]} does not apply to emotion-stats (data.noise_uri, data.n_folds)"
        )
    model_over, train_over = split_overrides(
        {k: v for k, v in parsed.items() if not k.startswith(DATA_PREFIX)}
    )
    epochs = int(train_over.pop("max_epochs", EMOTION_DEFAULTS["emotion-stats"]["max_epochs"]))
    seed = int(train_over.pop("seed", seed))
    lr = float(train_over.pop("lr", 1e-3))
    weight_decay = float(train_over.pop("weight_decay", 1e-3))
    if train_over:
        raise ConfigError(f"train.{sorted(train_over)[0]} does not apply to emotion-stats "
                          "(train.max_epochs, train.seed, train.lr, train.weight_decay)")  # fmt: skip
    noise = data_over.get("noise_uri")
    return train_emotion_stats(
        data_uri, out_uri, overrides=model_over, noise_uri=storage.normalize(noise) if noise else None,
        n_folds=int(data_over.get("n_folds", 4)), seed=seed, epochs=epochs, lr=lr,
        weight_decay=weight_decay, verbose=verbose,
    )  # fmt: skip
