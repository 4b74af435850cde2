"""`batchsep train` and `batchsep inspect`: models from features, and what they learned."""

from __future__ import annotations

import sys

import click

from batchsep.cli.common import (
    EPILOG_TASK,
    EXIT_OK,
    _check_output,
    _fail_input,
    _fail_usage,
    api_call,
)
from batchsep.cli.options import (
    COUNT,
    REQUIRED,
    OptionRow,
    gpu_option,
    option_table,
    ray_options,
)
from batchsep.errors import StorageError
from batchsep.jobs.spec import TRAINABLE_MODELS

# fmt: off
TRAIN_OPTIONS: tuple[OptionRow, ...] = (
    ("--model", click.Choice(TRAINABLE_MODELS), "drnmf",
     "Model to train. Enhancers: snmf (sparse NMF dictionaries), drnmf (deep recurrent NMF, "
     "unfolded from an SNMF), lstm / blstm (recurrent mask estimators), sce / dc (BLSTM embeddings "
     "trained with a source-contrastive or deep-clustering loss, plus a mask-inference head; "
     "--config inference=kmeans masks by clustering them instead), dae (convolutional denoising "
     "autoencoder). Emotion taggers: emotion-cnn, emotion-vae (held-out actors via --config "
     "data.valid_actors=[..] data.test_actors=[..]), emotion-stats (the shipped tagger: MLPs over "
     "utterance statistics; leave-actors-out CV over --config data.n_folds=4, then all actors)."),
    ("--features run_uri", None, None,
     "Prepare run with features/ (or a features folder); emotion models: a log-mel features "
     "run, a scan run or an audio folder with RAVDESS file names.", REQUIRED),
    ("--out out_uri", None, None, "Model folder (default: RUN/models/MODEL)."),
    ("--config overrides", None, None,
     "Model config key (n_layers=2, hidden=54, rank_speech=100); train.KEY for the optimiser "
     "(train.lr=1e-3, train.patience=10); snmf.KEY for a DR-NMF's SNMF init. Repeatable.",
     {"multiple": True, "metavar": "KEY=VALUE"}),
    ("--max-epochs", COUNT, None,
     "Epoch limit (default: the model's: 100 for enhancers, 60 emotion-cnn, 150 emotion-vae). "
     "A larger value on a finished run continues its training."),
    ("--train-fraction", click.FloatRange(min=0, max=1, min_open=True), 1.0,
     "Share of the train mixtures used (a fixed seeded subset)."),
    ("--init-from", None, None, "A model folder whose weights start the training: DR-NMF, a trained SNMF; lstm/blstm/dae/dc/sce, a model of the same architecture (e.g. fine-tune the shipped enhancer with another loss or on your corpus)."),
    ("--batch-size", click.IntRange(min=1), 32, "Utterances per optimiser step (per worker)."),
    ("--crop-frames", COUNT, 500,
     "Random crop of longer training utterances (frames); 0 keeps them whole."),
    ("--snmf-frames", click.IntRange(min=1), 20000, "Frames sampled for SNMF dictionary learning."),
    ("--seed", int, 0,
     "Seed of initialisation, crops and batch order (same seed, same data: same model)."),
)
# fmt: on


@click.command(epilog=EPILOG_TASK)
@option_table(*TRAIN_OPTIONS)
@gpu_option("One GPU per worker (nccl).")
@ray_options(
    workers_help="DDP workers (default 1).",
    local_help="Train in this process without Ray.",
    show_errors=False,
)
def train(
    model: str,
    run_uri: str,
    out_uri: str | None,
    overrides: tuple[str, ...],
    max_epochs: int | None,
    train_fraction: float,
    init_from: str | None,
    batch_size: int,
    crop_frames: int,
    snmf_frames: int,
    seed: int,
    workers: int | None,
    gpu: bool,
    address: str | None,
    local: bool,
) -> None:
    """Train a model: an enhancer on the STFT features of a prepare run, or an emotion model.

    Deep models (drnmf, lstm, blstm, sce, dc, dae, emotion-*) train with Adam and early stopping on
    the validation loss, data-parallel on Ray Train (--workers N); SNMF dictionaries are learned by
    Ray tasks. A DR-NMF starts from a trained SNMF (--init-from, or one trained first into OUT/snmf);
    the other deep enhancers can start from a trained model of the same architecture (--init-from).
    Emotion models take a log-mel features run, a scan run or a folder of RAVDESS-named audio, split
    by actor (held-out actors are scored into metrics.json["test"]). OUT gets the best model
    (config.json, weights.safetensors), metrics.json, curves.json/png and state.pt: re-running the
    same command resumes; a larger --max-epochs continues training.
    """
    import time

    import batchsep.api
    from batchsep.errors import ParameterError, RegistryError
    from batchsep.io import storage
    from batchsep.pipeline.train.data import resolve_features
    from batchsep.pipeline.train.driver import check_config, parse_overrides

    t0 = time.perf_counter()
    try:
        config = parse_overrides(list(overrides))
        check_config(model, config, max_epochs=max_epochs)  # before --out is created
        if not model.startswith("emotion-"):
            resolve_features(run_uri)
        elif not storage.exists(run_uri):
            raise StorageError(f"--features {run_uri} does not exist")
        else:
            from batchsep.training.data.emotion import check_labelled

            check_labelled(run_uri)  # StorageError: no RAVDESS-named file
    except (ParameterError, RegistryError, StorageError) as e:
        _fail_input(e)
    target = out_uri or storage.join(run_uri, "models", model)
    _check_output(target)
    s = api_call(
        lambda: batchsep.api.train(
            run_uri,
            model=model,
            out_uri=target,
            config=config,
            max_epochs=max_epochs,
            train_fraction=train_fraction,
            init_from=init_from,
            batch_size=batch_size,
            crop_frames=crop_frames or None,
            snmf_frames=snmf_frames,
            seed=seed,
            workers=workers,
            gpu=gpu,
            address=address,
            local=local,
        )
    )
    loss = "n/a" if s.best_valid_loss is None else f"{s.best_valid_loss:.5f}"
    by = s.metrics.get("selected_by")  # emotion models: the best epoch by validation UAR, say
    click.echo(
        f"trained {s.model}: {s.param_count} parameters, best epoch {s.best_epoch} of {s.epochs}"
        f"{f' (selected by {by})' if by else ''}, "
        f"validation loss {loss} ({s.stop_reason}); training {s.wall_s:.1f} s, "
        f"wall {time.perf_counter() - t0:.1f} s\nmodel: {s.out_uri}"
    )
    test = s.metrics.get("test") if model.startswith("emotion-") else None
    if isinstance(test, dict) and "accuracy" in test:
        click.echo(
            f"held-out actors {test.get('actors')}: accuracy {test['accuracy']:.3f}, "
            f"UAR {test['uar']:.3f}, macro-F1 {test['macro_f1']:.3f} ({test['n']} files)"
        )
    sys.exit(EXIT_OK)


@click.command(epilog=EPILOG_TASK)
@click.argument("model_uri")
@click.option(
    "--out", "out_uri", required=True, help="Folder (local or s3://) for PNGs + index.md."
)
def inspect(model_uri: str, out_uri: str) -> None:
    """Plot what a trained model learned: MODEL_URI is a model folder or 'default'.

    SNMF/DR-NMF: speech and noise dictionary atoms (before training, from the SNMF init, after),
    DR-NMF per-layer step sizes α and thresholds λ; emotion-vae: σ against μ of each latent
    dimension coloured by emotion, on the corpus it was trained on; deep models:
    learning curves. Writes PNGs and an index.md.
    """
    import batchsep.api
    from batchsep.errors import BatchsepError
    from batchsep.io import checkpoint

    try:
        checkpoint.read_checkpoint(model_uri)  # read once: io.checkpoint keeps it for the api
    except BatchsepError as e:
        _fail_usage(str(e))
    s = api_call(lambda: batchsep.api.inspect(model_uri, out_uri), usage=())
    click.echo(
        f"inspected {s.model}: {len(s.files)} figure{'s' if len(s.files) != 1 else ''} ({', '.join(s.files)})\nindex: {s.index_uri}"
    )
    sys.exit(EXIT_OK)
