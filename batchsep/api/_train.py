"""The api's model stages: train and inspect (public as :mod:`batchsep.api`)."""

from __future__ import annotations

from typing import Any

from batchsep.api_params import _check


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
    from batchsep.io import storage
    from batchsep.pipeline.runner import FitExecutor, Runner
    from batchsep.pipeline.train import driver as _train
    from batchsep.pipeline.train.data import DataOptions

    overrides = dict(config or {})
    if max_epochs is not None:
        overrides["train.max_epochs"] = max_epochs
    overrides.setdefault("train.seed", seed)
    data = DataOptions(
        batch_size=batch_size, crop_frames=crop_frames, train_fraction=train_fraction, seed=seed,
        snmf_frames=snmf_frames,
    )  # fmt: skip
    runner: Runner | None = None  # local: in this process (the stage's SerialRunner)
    fit_executor: FitExecutor[Any] = _train.serial_fit
    if not local:  # SNMF dictionaries by Ray tasks, deep models on Ray Train
        from batchsep.distributed.train import RayTrainExecutor, snmf_runner

        runner = snmf_runner(workers=workers, address=address, gpu=gpu)
        fit_executor = RayTrainExecutor(workers=workers or 1, gpu=gpu, address=address)
    return _train.train(
        run_uri, out_uri or storage.join(run_uri, "models", model), model=model, overrides=overrides,
        data=data, init_from=init_from, runner=runner, fit_executor=fit_executor,
        device="cuda" if gpu else "cpu", verbose=verbose,
    )  # fmt: skip


def inspect(model_uri: str, out_uri: str) -> Any:
    """Write figures of a trained model (``default``: the shipped one) and an ``index.md`` to ``out_uri``.

    SNMF/DR-NMF: dictionary atoms before training, from the SNMF init and after; DR-NMF per-layer α and λ;
    emotion-vae: the seed-003 latent plots (σ vs μ per latent dimension, coloured by emotion); deep models:
    learning curves. Returns a :class:`batchsep.pipeline.inspect.driver.InspectSummary`.
    """
    from batchsep.pipeline.inspect.driver import inspect_model

    return inspect_model(model_uri, out_uri)
