"""The train stage, Ray-free: a model from a name and config overrides, trained on a features run.

Layout written under ``out_uri`` (any storage URI)::

    config.json, weights.safetensors   the best model (lowest validation loss) + its STFT config
    metrics.json                       history, best epoch, valid loss, parameter count, data, wall time
    curves.json, curves.png            learning curves (deep models)
    state.pt                           resumable trainer state (torch.save), written after every epoch
    init/                              the untrained model (DR-NMF: the SNMF initialisation)
    snmf/                              the SNMF a DR-NMF run trained first (without ``init_from``)

:func:`train` is the driver: it learns SNMF dictionaries through a :class:`~batchsep.pipeline.runner.Runner`
(frame sampling per shard, then the fit, as tasks; :mod:`batchsep.pipeline.train.snmf`), or builds a
:class:`TrainJob` for a deep model and hands it to a ``fit_executor``: :func:`serial_fit` runs
:func:`run_worker` in this process; Ray Train runs it on every DDP worker (``batchsep.distributed.train``).
Rank 0 writes the outputs (:mod:`batchsep.pipeline.train.outputs`); a re-run resumes from ``state.pt``
(more ``max_epochs`` continue training; the same settings only rewrite the outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from batchsep.dsp.stft import StftConfig
from batchsep.errors import BatchsepError, ConfigError, ParameterError
from batchsep.io import checkpoint, storage
from batchsep.models.base import MODELS, build_model
from batchsep.pipeline.runner import FitExecutor, Runner, SerialRunner
from batchsep.pipeline.train.batches import make_sources
from batchsep.pipeline.train.data import (
    embedding_data,
    feature_transform,
    log_line,
    model_config,
    parse_overrides,
    resolve_features,
    split_overrides,
    training_level_db,
)
from batchsep.pipeline.train.outputs import (
    ArtifactWriter,
    check_resumable,
    read_state,
    with_defaults,
    write_model,
)
from batchsep.pipeline.train.snmf import init_drnmf, train_snmf
from batchsep.pipeline.train.types import DataOptions, TrainJob, TrainSummary
from batchsep.training.loop import TrainerState, fit
from batchsep.training.state import TrainConfig

if TYPE_CHECKING:  # run_worker imports it when an emotion job comes
    from batchsep.pipeline.train.emotion_worker import EmotionTrainJob

MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "lstm": {"lr": 1e-4, "grad_clip": 1.0},  # seed 001
    "blstm": {"lr": 1e-4, "grad_clip": 1.0},
    "drnmf": {"lr": 1e-3},
    "sce": {"lr": 1e-3, "grad_clip": 1.0},  # seed 004 embeddings (lr not stated for SCE+MI)
    "dc": {"lr": 1e-3, "grad_clip": 1.0},
    "dae": {"lr": 1e-3},  # seed 004: 5e-5 for the 30-layer DAE; the small DAE here trains faster
}


def run_worker(
    job: TrainJob | EmotionTrainJob,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    reduce_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> dict[str, Any] | None:
    """Train ``job`` on one (DDP) worker; rank 0 writes the outputs and returns ``metrics.json``'s content.

    An :class:`~batchsep.pipeline.train.emotion_worker.EmotionTrainJob` goes to
    :func:`~batchsep.pipeline.train.emotion_worker.run_emotion_worker` (same arguments, same outputs).
    """
    from batchsep.pipeline.train.emotion_worker import EmotionTrainJob, run_emotion_worker

    if isinstance(job, EmotionTrainJob):
        return run_emotion_worker(
            job, rank=rank, world_size=world_size, device=device, wrap=wrap,
            reduce_metrics=reduce_metrics,
        )  # fmt: skip
    torch.manual_seed(TrainConfig.from_dict(job.train_config).seed)
    model = build_model(job.model, job.model_config)
    if job.init_uri is not None:  # the weights of a checkpoint of the same architecture
        model.load_state_dict(checkpoint.read_checkpoint(job.init_uri)["state"])
    resume = read_state(job.out_uri)
    check_resumable(job.out_uri, job.model_config, resume)
    train_src, valid_src = make_sources(
        job.features_uri, job.data, rank=rank, world_size=world_size
    )
    config = TrainConfig.from_dict(job.train_config)
    writer = ArtifactWriter(job, model) if rank == 0 else None
    result = fit(
        model,
        train_src,
        valid_src,
        config=config,
        device=device,
        callbacks=[writer] if writer else [],
        resume=resume,
        wrap=wrap,
        reduce_metrics=reduce_metrics,
    )
    if writer is None:
        return None
    state = TrainerState(model, torch.optim.Adam([torch.zeros(1)]), config, torch.device("cpu"))
    state.history, state.best_epoch, state.best_loss = (
        result.history,
        result.best_epoch,
        result.best_loss,
    )
    metrics = writer.metrics(state, result.stop_reason)
    if result.best_state is not None:  # the model holds the best weights (restore_best)
        write_model(
            job.out_uri, model, job.stft, metrics=metrics, input_level_db=job.input_level_db
        )
    if result.history:
        writer.write_png(result.history)
    log_line(
        job.verbose,
        f"[train {job.model}] done: {result.stop_reason}, wall {metrics['wall_s']:.1f} s",
    )
    return metrics


def serial_fit(job: TrainJob | EmotionTrainJob) -> dict[str, Any]:
    """The :class:`~batchsep.pipeline.runner.FitExecutor` of this process: :func:`run_worker`, one worker
    (CPU or ``cuda``)."""
    metrics = run_worker(job, device=job.device)
    if metrics is None:  # pragma: no cover - rank 0 always returns them
        raise BatchsepError("rank 0 returned no metrics")
    return metrics


def train(
    features_uri: str,
    out_uri: str,
    *,
    model: str = "drnmf",
    overrides: Mapping[str, Any] | None = None,
    data: DataOptions | None = None,
    init_from: str | None = None,
    runner: Runner | None = None,
    fit_executor: FitExecutor[TrainJob | EmotionTrainJob] = serial_fit,
    device: str = "cpu",
    verbose: bool = True,
) -> TrainSummary:
    """Train ``model`` on a features run and write it (and its metrics) to ``out_uri``.

    Parameters
    ----------
    features_uri : str
        A prepare run holding ``features/``, or a features folder (``<split>/part-*.parquet``).
    out_uri : str
        Model folder (local, ``file://`` or ``s3://``).
    model : {"snmf", "drnmf", "lstm", "blstm", "sce", "dc", "dae", "emotion-cnn", "emotion-vae"}
        The emotion models go to :func:`batchsep.pipeline.train.emotion.train_emotion` (``features_uri``:
        a log-mel features run, a scan run or an audio folder with RAVDESS file names; ``data``: only
        ``batch_size`` and ``seed``; ``runner`` unused).
    overrides : mapping, optional
        Model config keys (e.g. ``n_layers``, ``hidden``, ``rank_speech``), ``train.<key>`` for
        :class:`TrainConfig` (e.g. ``train.lr``, ``train.max_epochs``, ``train.patience``); for DR-NMF
        ``snmf.<key>`` sets the SNMF it is initialised from (its ranks follow ``rank_speech/noise``);
        for the emotion models also ``data.<key>`` (``data.valid_actors``, ``data.test_actors`` …).
    data : DataOptions, optional
        Batching, cropping, train fraction, SNMF frame budget, device.
    init_from : str, optional
        DR-NMF: a trained SNMF model folder to initialise from (else an SNMF is trained first into
        ``out_uri/snmf``, or reused from there). The other deep models (not the emotion models): a
        trained model folder of the same model and architecture (its config may differ only in the
        loss fields, :data:`INIT_FREE_KEYS`) whose weights start the training, e.g. to fine-tune the
        shipped enhancer on a corpus or with another loss. A ``state.pt`` in ``out_uri`` still wins
        (a re-run resumes).
    runner : Runner, optional
        Runs the SNMF tasks (default: in this process).
    fit_executor : FitExecutor
        Runs a :class:`TrainJob` or an emotion model's ``EmotionTrainJob`` (default :func:`serial_fit`;
        Ray Train in ``batchsep.distributed``).
    device : str
        ``"cpu"`` or ``"cuda"`` (SNMF fit and serial training; Ray Train picks its workers' device).
    verbose : bool
        Print one line per epoch (and the wall time) to stderr.

    Returns
    -------
    TrainSummary
        Best epoch and validation loss, wall time, and the content of ``out_uri/metrics.json``.

    Raises
    ------
    StorageError
        Features missing/unreadable, or ``out_uri`` not writable.
    ConfigError, RegistryError, ParameterError
        Unknown model, bad override key/value or option.
    """
    data = data or DataOptions()
    MODELS.get(model)  # unknown name → RegistryError before any work
    check_config(model, overrides)  # every override, before any data is read
    if model.startswith("emotion-"):  # RAVDESS-named corpus, speaker-independent (actor) splits
        from batchsep.pipeline.train.emotion import train_emotion

        if init_from is not None:
            raise ParameterError(f"init_from={init_from!r} is not supported for {model!r}")
        return train_emotion(
            features_uri, out_uri, model=model, overrides=overrides, batch_size=data.batch_size,
            seed=data.seed, fit_executor=fit_executor, device=device, verbose=verbose,
        )  # fmt: skip
    runner = runner or SerialRunner()
    features_uri = storage.normalize(resolve_features(features_uri))
    out_uri = storage.normalize(out_uri)  # absolute: Ray Train workers change directory
    storage.check_writable(out_uri)
    transform, info = feature_transform(features_uri, data)
    stft = StftConfig(
        sample_rate=transform["sample_rate"], n_fft=transform["n_fft"],
        hop_length=transform["hop_length"], window=transform["window"],
    ).to_dict()  # fmt: skip
    n_freq = StftConfig.from_dict(stft).n_freq
    model_over, train_over = split_overrides(parse_overrides(overrides))
    level = training_level_db(features_uri, stft)
    if model == "snmf":
        if init_from is not None:
            raise ParameterError(f"init_from={init_from!r} is not supported for {model!r}")
        info = train_snmf(
            features_uri, out_uri, model_over, data, stft, runner, verbose, device, level
        )
        return TrainSummary.from_metrics(out_uri, info)
    train_cfg = TrainConfig.from_dict({**MODEL_DEFAULTS.get(model, {}), **train_over})
    init_uri = None
    if model == "drnmf":
        init_uri = storage.join(out_uri, "init")
        built, init_from = init_drnmf(
            features_uri, out_uri, model_over, data, stft, init_from, runner, verbose, device,
            level,
        )  # fmt: skip
        check_resumable(out_uri, built.config.to_dict(), read_state(out_uri))  # before any worker
        write_model(init_uri, built, stft, input_level_db=level)
        cfg = built.config
        info["init_from"] = init_from
    else:
        data, model_over, data_info = embedding_data(
            model, features_uri, transform, data, model_over
        )
        info.update(data_info)  # seed 004 models: noise_mag, per-source labels (sce)
        cfg = model_config(model, model_over, n_freq=n_freq)
        check_resumable(out_uri, cfg.to_dict(), read_state(out_uri))  # before any worker
        if init_from is not None:
            init_uri = storage.normalize(init_from)
            check_init(init_uri, model, cfg.to_dict(), stft)
            info["init_from"] = init_uri
    data = _loss_columns(cfg, transform, data)
    info = {**info, "features_uri": features_uri, "transform": transform, "input_level_db": level}
    job = TrainJob(
        model, features_uri, out_uri, cfg.to_dict(), train_cfg.to_dict(), data, stft,
        init_uri, info, device, verbose, level,
    )  # fmt: skip
    return TrainSummary.from_metrics(out_uri, fit_executor(job))


INIT_FREE_KEYS = frozenset({"loss", "loss_power", "dropout"})
"""Model config fields an ``init_from`` checkpoint may differ in (they do not change the weights' shapes)."""


def check_init(
    init_uri: str, model: str, model_cfg: Mapping[str, Any], stft: Mapping[str, Any]
) -> None:
    """Refuse (``ConfigError``) an ``init_from`` checkpoint of another model, architecture or STFT.

    Raises
    ------
    StorageError
        ``init_uri`` holds no readable checkpoint.
    ConfigError
        Another model, a config field outside :data:`INIT_FREE_KEYS` differs, or another STFT.
    """
    info = checkpoint.read_checkpoint(init_uri)
    if info["model_name"] != model:
        raise ConfigError(
            f"init_from {init_uri} holds a {info['model_name']!r} model, not {model!r}"
        )
    theirs = {k: v for k, v in with_defaults(info["config"]).items() if k not in INIT_FREE_KEYS}
    ours = {k: v for k, v in with_defaults(model_cfg).items() if k not in INIT_FREE_KEYS}
    diff = [
        f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}"
        for k in sorted(ours)
        if theirs.get(k) != ours[k]
    ]
    if diff:
        raise ConfigError(f"init_from {init_uri} has another architecture ({'; '.join(diff)})")
    their_stft = info.get("stft")
    if their_stft is not None and dict(their_stft) != dict(stft):
        raise ConfigError(
            f"init_from {init_uri} was trained on STFT {dict(their_stft)}, these features are {dict(stft)}"
        )


def check_config(model: str, config: Any, *, max_epochs: Any = None) -> None:
    """Check ``model``'s config overrides (``KEY=VALUE`` strings or a mapping) as :func:`train` reads them,
    without any data: model fields and values, ``train.<key>`` (:class:`TrainConfig`), a DR-NMF's
    ``snmf.<key>``, an emotion model's ``data.<key>`` and its extra ``train.<key>`` options. Values that
    depend on the features (``n_freq``; ``n_speakers: auto`` of SCE) are left to the stage.

    Raises
    ------
    ConfigError, ParameterError, RegistryError
    """
    import batchsep.models  # noqa: F401  (registers every model)
    from batchsep.pipeline.train.data import SOURCE_COLUMNS

    parsed = parse_overrides(config)
    bad = [k for k in parsed if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"key {bad[0]!r} must be a string")
    if max_epochs is not None:
        parsed["train.max_epochs"] = max_epochs
    if model.startswith("emotion-"):
        from batchsep.pipeline.train.emotion import DATA_KEYS, DATA_PREFIX, TRAIN_KEYS

        data = [k[len(DATA_PREFIX) :] for k in parsed if k.startswith(DATA_PREFIX)]
        unknown = sorted(set(data) - set(DATA_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown key 'data.{unknown[0]}'; allowed: data.{', data.'.join(DATA_KEYS)}"
            )
        parsed = {k: v for k, v in parsed.items() if not k.startswith(DATA_PREFIX)}
    model_over, train_over = split_overrides(parsed)
    if model.startswith("emotion-"):
        for k in TRAIN_KEYS:
            train_over.pop(k, None)
    try:
        TrainConfig.from_dict(train_over)
    except ConfigError as e:
        raise ConfigError(f"train.<key>: {e}") from None
    if model == "drnmf":
        snmf_over = {k[5:]: v for k, v in model_over.items() if k.startswith("snmf.")}
        model_over = {k: v for k, v in model_over.items() if not k.startswith("snmf.")}
        try:
            MODELS.get("snmf").config_class.from_dict(snmf_over)
        except ConfigError as e:
            raise ConfigError(f"snmf.<key>: {e}") from None
    if model == "sce":  # "auto": one source vector per distinct value, known from the features
        model_over = {
            k: (0 if k in SOURCE_COLUMNS and v == "auto" else v) for k, v in model_over.items()
        }
    if model.startswith("emotion-"):
        MODELS.get(model).config_class.from_dict(model_over)
    else:
        n_freq = model_over.pop("n_freq", 257)  # the features' n_freq replaces it at run time
        model_config(model, model_over, n_freq=n_freq if isinstance(n_freq, int) else 257)


def _loss_columns(cfg: Any, transform: Mapping[str, Any], data: DataOptions) -> DataOptions:
    """Add the stored phase-sensitive target to the batches of a model trained with ``loss="psa"``."""
    if getattr(cfg, "loss", None) != "psa" or "psa_target" in data.extra_columns:
        return data
    if not transform.get("psa_target"):
        raise ConfigError(
            "loss='psa' needs features with the phase-sensitive target: run the features stage "
            "with psa_target=true (`batchsep features RUN --psa`)"
        )
    return replace(data, extra_columns=(*data.extra_columns, "psa_target"))


__all__ = [
    "TrainJob",
    "TrainSummary",
    "check_config",
    "log_line",
    "model_config",
    "parse_overrides",
    "run_worker",
    "serial_fit",
    "split_overrides",
    "train",
]
