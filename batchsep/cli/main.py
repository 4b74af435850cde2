"""The ``batchsep`` command line: thin click shells over :mod:`batchsep.api`.

Exit status (every command):
  0  everything succeeded
  1  the command ran to the end but some files failed (see the summary / the error rows)
  2  usage error: bad option, missing or unreadable input URI
  3  fatal error: output not writable, cluster unreachable, or another error that stopped the command
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

import batchsep
import batchsep.api
from batchsep.cli.common import (
    EPILOG,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    _fail_fatal,
    _fail_usage,
    _progress,
)
from batchsep.errors import BatchsepError, StorageError

__all__ = ["EXIT_FATAL", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(batchsep.__version__, prog_name="batchsep")
def main() -> None:
    """batchsep: batch speech enhancement and emotion tagging for large audio corpora.

    Every stage runs on an embedded local Ray by default, or on a cluster with --address.
    """


@main.command(epilog=EPILOG)
@click.argument("in_uri")
@click.option(
    "--out", "out_uri", required=True, help="Run folder (local or s3://) for manifest.parquet."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Parallel tasks (embedded Ray CPUs). Default: all cores.",
)
@click.option("--address", default=None, help="Ray cluster address (default: embedded local Ray).")
@click.option(
    "--local", is_flag=True, help="Run in this process without Ray (small inputs, debugging)."
)
@click.option(
    "--show-errors",
    type=int,
    default=10,
    show_default=True,
    help="How many failed files to list in the summary.",
)
def scan(
    in_uri: str,
    out_uri: str,
    workers: int | None,
    address: str | None,
    local: bool,
    show_errors: int,
) -> None:
    """Scan IN_URI recursively and write OUT/manifest.parquet: one row per audio file.

    Each row has uri, rel_path, bytes, sha256, sample rate, channels, frames, duration, format,
    subtype, peak, RMS level, and status (ok/error) with a readable error for bad files.
    Non-audio files (by extension) are skipped and counted.
    """
    from batchsep.io import storage
    from batchsep.pipeline.scan import list_audio

    try:
        entries, _ = list_audio(in_uri)
    except StorageError as e:
        _fail_usage(str(e))
    try:
        storage.check_writable(out_uri)
    except StorageError as e:
        _fail_fatal(f"output {e}")
    bar, update = _progress(len(entries), "file", "scan")
    try:
        with bar:
            summary = batchsep.api.scan(
                in_uri, out_uri, workers=workers, address=address, local=local, on_progress=update
            )
    except BatchsepError as e:
        _fail_fatal(str(e))
    click.echo(
        f"scanned {summary.files} audio files: {summary.files_ok} ok, {summary.files_failed} failed, "
        f"{summary.hours:.2f} h of audio; {summary.skipped_non_audio} non-audio files skipped\n"
        f"manifest: {summary.manifest_uri}"
    )
    for rel, err in summary.errors[:show_errors]:
        click.echo(f"  failed: {rel}: {err}")
    if len(summary.errors) > show_errors:
        click.echo(f"  ... and {len(summary.errors) - show_errors} more (status='error' rows)")
    sys.exit(EXIT_SOME_FAILED if summary.files_failed else EXIT_OK)


def _phase_bars() -> tuple[
    Callable[[str, int], None], Callable[[int, float], None], Callable[[], None]
]:
    """Progress callbacks for a multi-phase command: one bar per phase (scan inputs, render, ...)."""
    state: dict[str, Any] = {"bar": None, "update": None}

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()
            state["bar"] = None

    def on_start(phase: str, total: int) -> None:
        close()
        state["bar"], state["update"] = _progress(total, "file", phase)

    def on_progress(n: int, seconds: float) -> None:
        if state["update"] is not None:
            state["update"](n, seconds)

    return on_start, on_progress, close


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


@main.command(epilog=EPILOG)
@click.option(
    "--speech", "speech_uri", required=True, help="Speech folder/prefix or scan manifest."
)
@click.option("--noise", "noise_uri", required=True, help="Noise folder/prefix or scan manifest.")
@click.option("--out", "out_uri", required=True, help="Run folder (local or s3://).")
@click.option("--train", "n_train", type=click.IntRange(min=0), default=3000, show_default=True)
@click.option("--valid", "n_valid", type=click.IntRange(min=0), default=300, show_default=True)
@click.option("--test", "n_test", type=click.IntRange(min=0), default=300, show_default=True)
@click.option("--snr-min", type=float, default=-5.0, show_default=True, help="Lowest SNR (dB).")
@click.option("--snr-max", type=float, default=5.0, show_default=True, help="Highest SNR (dB).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every draw.")
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Crop longer utterances to this length at a random offset (default: whole utterances).",
)
@click.option(
    "--speaker-from",
    default="parent",
    show_default=True,
    help="Speaker of a speech file: parent | dir | top | file | re:REGEX (on the file name).",
)
@click.option(
    "--noise-class-from",
    default="dir",
    show_default=True,
    help="Noise class of a noise file: dir (its folder path) | parent | top | file | re:REGEX.",
)
@click.option(
    "--noise-clip-from",
    default="recording",
    show_default=True,
    help="Noise recording (split unit): recording (UrbanSound8K fsID, else the file) | file | ...",
)
@click.option(
    "--holdout-noise-class",
    "holdout",
    multiple=True,
    help="Noise class never used in training (repeatable), e.g. urbansound8k/gun_shot.",
)
@click.option("--valid-fraction", type=float, default=0.2, show_default=True)
@click.option("--test-fraction", type=float, default=0.2, show_default=True)
@click.option(
    "--recipe-only", is_flag=True, help="Store the recipes only (no audio; regenerated on the fly)."
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Mixtures per task.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Parallel tasks (embedded Ray CPUs). Default: all cores.",
)
@click.option("--address", default=None, help="Ray cluster address (default: embedded local Ray).")
@click.option("--local", is_flag=True, help="Run in this process without Ray.")
@click.option("--show-errors", type=int, default=10, show_default=True)
def prepare(
    speech_uri: str,
    noise_uri: str,
    out_uri: str,
    n_train: int,
    n_valid: int,
    n_test: int,
    snr_min: float,
    snr_max: float,
    seed: int,
    max_seconds: float | None,
    speaker_from: str,
    noise_class_from: str,
    noise_clip_from: str,
    holdout: tuple[str, ...],
    valid_fraction: float,
    test_fraction: float,
    recipe_only: bool,
    shard_size: int,
    workers: int | None,
    address: str | None,
    local: bool,
    show_errors: int,
) -> None:
    """Mix a speech corpus and a noise corpus into OUT: mixtures.parquet and 16 kHz audio.

    Inputs are scanned (unreadable files are reported and excluded; silent or too-short ones are
    skipped with a reason, see OUT/sources.parquet). Train, valid and test are disjoint by speaker
    and by noise recording; each mixture's draws (speech, noise, SNR uniform in the range, offsets)
    come from (seed, split, index), so the output is byte-identical on any number of workers.
    Audio: OUT/mixtures/<split>/{noisy,clean,noise}/<id>.flac (24-bit; noisy = clean + noise
    exactly). Re-running resumes and skips what is done.
    """
    from batchsep.corpus.mixtures import MixtureConfig
    from batchsep.errors import ParameterError
    from batchsep.io import storage

    try:
        config = MixtureConfig(
            n_train=n_train, n_valid=n_valid, n_test=n_test, snr_min=snr_min, snr_max=snr_max,
            seed=seed, max_seconds=max_seconds, speaker_from=speaker_from,
            noise_class_from=noise_class_from, noise_clip_from=noise_clip_from,
            holdout_noise_classes=tuple(holdout), valid_fraction=valid_fraction,
            test_fraction=test_fraction,
        )  # fmt: skip
    except ParameterError as e:
        _fail_usage(str(e))
    for uri in (speech_uri, noise_uri):
        try:
            if not storage.exists(uri):
                _fail_usage(f"input {uri}: no such file, folder or prefix")
        except StorageError as e:
            _fail_usage(str(e))
    try:
        storage.check_writable(out_uri)
    except StorageError as e:
        _fail_fatal(f"output {e}")
    on_start, on_progress, close = _phase_bars()
    try:
        summary = batchsep.api.prepare(
            speech_uri, noise_uri, out_uri, config=config, recipe_only=recipe_only,
            workers=workers, address=address, local=local, shard_size=shard_size,
            on_start=on_start, on_progress=on_progress,
        )  # fmt: skip
    except ParameterError as e:
        close()
        _fail_usage(str(e))
    except BatchsepError as e:
        close()
        _fail_fatal(str(e))
    close()
    splits = ", ".join(f"{k} {v}" for k, v in summary.mixtures_ok.items())
    click.echo(
        f"prepared {summary.mixtures} mixtures ({splits}), {summary.hours:.2f} h of audio, "
        f"{summary.mixtures_failed} failed; {summary.shards} shards "
        f"({summary.shards_skipped} already done); audio {_gb(summary.audio_bytes)}\n"
        f"inputs: {summary.inputs.get('speech', 0)} speech + {summary.inputs.get('noise', 0)} noise "
        f"files used, {len(summary.skipped_inputs)} skipped (silent/too short), "
        f"{len(summary.input_errors)} unreadable\nmixtures: {summary.mixtures_uri}"
    )
    failures = summary.input_errors + summary.errors
    for rel, err in failures[:show_errors]:
        click.echo(f"  failed: {rel}: {err}")
    if len(failures) > show_errors:
        click.echo(f"  ... and {len(failures) - show_errors} more (status='error' rows)")
    sys.exit(EXIT_SOME_FAILED if summary.failed else EXIT_OK)


@main.command(epilog=EPILOG)
@click.argument("run_uri")
@click.option(
    "--kind",
    type=click.Choice(["stft", "logmel"]),
    default="stft",
    show_default=True,
    help="stft: magnitudes of a prepare run; logmel: 80-mel log-power of a scan run.",
)
@click.option(
    "--noise-mag/--no-noise-mag",
    default=True,
    show_default=True,
    help="Store the noise magnitude too (a third more bytes).",
)
@click.option("--psa", "psa_target", is_flag=True, help="Store the phase-sensitive target.")
@click.option(
    "--shard-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=128.0,
    show_default=True,
    help="Target shard size (MB of uncompressed features).",
)
@click.option(
    "--compression",
    type=click.Choice(["zstd", "lz4", "snappy", "none"]),
    default="zstd",
    show_default=True,
)
@click.option("--out", "out_uri", default=None, help="Features folder (default: RUN/features).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Parallel tasks (embedded Ray CPUs). Default: all cores.",
)
@click.option("--address", default=None, help="Ray cluster address (default: embedded local Ray).")
@click.option("--local", is_flag=True, help="Run in this process without Ray.")
@click.option("--show-errors", type=int, default=10, show_default=True)
def features(
    run_uri: str,
    kind: str,
    noise_mag: bool,
    psa_target: bool,
    shard_mb: float,
    compression: str,
    out_uri: str | None,
    workers: int | None,
    address: str | None,
    local: bool,
    show_errors: int,
) -> None:
    """Compute per-utterance features of RUN into Parquet shards (RUN/features/<split>/).

    stft: |STFT| of noisy, clean (and noise) as list<fixed_size_list<float32, 257>> (frames x
    bins; 512-point sqrt-Hann, hop 128 at 16 kHz), optionally the phase-sensitive target.
    logmel: 80-band log-power mel (dB) of every ok file of a scan run. Shards hold the transform
    parameters and hash in their metadata; a re-run skips shards already written.
    """
    from batchsep.io import storage

    needed, stage = (
        ("mixtures.parquet", "prepare") if kind == "stft" else ("manifest.parquet", "scan")
    )
    try:
        if not storage.exists(storage.join(run_uri, needed)):
            _fail_usage(f"{run_uri} has no {needed} (run `batchsep {stage}` first)")
        storage.check_writable(out_uri or storage.join(run_uri, "features"))
    except StorageError as e:
        _fail_fatal(f"output {e}")
    on_start, on_progress, close = _phase_bars()
    try:
        summary = batchsep.api.features(
            run_uri, kind=kind, noise_mag=noise_mag, psa_target=psa_target, out_uri=out_uri,
            shard_mb=shard_mb, compression=compression, workers=workers, address=address,
            local=local, on_start=on_start, on_progress=on_progress,
        )  # fmt: skip
    except BatchsepError as e:
        close()
        _fail_fatal(str(e))
    close()
    click.echo(
        f"features: {summary.rows_ok} rows ok, {summary.rows_failed} failed, {summary.hours:.2f} h "
        f"of audio; {summary.shards} shards ({summary.shards_skipped} already done), "
        f"{_gb(summary.bytes)} ({_gb(summary.bytes_per_hour)} per hour of audio)\n"
        f"transform {summary.transform_hash}; shards: {summary.out_uri}/<split>/part-*.parquet"
    )
    for rel, err in summary.errors[:show_errors]:
        click.echo(f"  failed: {rel}: {err}")
    if len(summary.errors) > show_errors:
        click.echo(f"  ... and {len(summary.errors) - show_errors} more (status='error' rows)")
    sys.exit(EXIT_SOME_FAILED if summary.rows_failed else EXIT_OK)


@main.command(epilog=EPILOG)
@click.option(
    "--model",
    type=click.Choice(
        ["snmf", "drnmf", "lstm", "blstm", "sce", "dc", "dae", "emotion-cnn", "emotion-vae"]
    ),
    default="drnmf",
    show_default=True,
    help="Model to train (seed 001: sparse NMF, deep recurrent NMF, (B)LSTM mask; seed 004: "
    "SCE+MI, DC+MI (--config inference=kmeans for the clustering mask), conv DAE; seed 003: "
    "emotion CNN / VAE, held-out actors via --config data.valid_actors=[..] data.test_actors=[..]).",
)
@click.option(
    "--features",
    "run_uri",
    required=True,
    help="Prepare run with features/ (or a features folder); emotion models: a log-mel features "
    "run, a scan run or an audio folder with RAVDESS file names.",
)
@click.option("--out", "out_uri", default=None, help="Model folder (default: RUN/models/MODEL).")
@click.option(
    "--config",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Model config key (n_layers=2, hidden=54, rank_speech=100); train.KEY for the optimiser "
    "(train.lr=1e-3, train.patience=10); snmf.KEY for a DR-NMF's SNMF init. Repeatable.",
)
@click.option("--max-epochs", type=click.IntRange(min=0), default=None, help="Epoch limit.")
@click.option(
    "--train-fraction",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=1.0,
    show_default=True,
    help="Share of the train mixtures used (a fixed seeded subset).",
)
@click.option(
    "--init-from", default=None, help="DR-NMF: a trained SNMF model folder to start from."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--crop-frames",
    type=click.IntRange(min=0),
    default=500,
    show_default=True,
    help="Random crop of longer training utterances (frames); 0 keeps them whole.",
)
@click.option(
    "--snmf-frames",
    type=click.IntRange(min=1),
    default=20000,
    show_default=True,
    help="Frames sampled for SNMF dictionary learning.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="DDP workers (default 1)."
)
@click.option("--gpu/--no-gpu", default=False, show_default=True, help="One GPU per worker (nccl).")
@click.option("--address", default=None, help="Ray cluster address (default: embedded local Ray).")
@click.option("--local", is_flag=True, help="Train in this process without Ray.")
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
    Ray tasks. A DR-NMF starts from a trained SNMF (--init-from, or one trained first into OUT/snmf).
    Emotion models take a log-mel features run, a scan run or a folder of RAVDESS-named audio, split
    by actor (held-out actors are scored into metrics.json["test"]). OUT gets the best model
    (config.json, weights.safetensors), metrics.json, curves.json/png and state.pt: re-running the
    same command resumes; a larger --max-epochs continues training.
    """
    import time

    from batchsep.errors import ConfigError, ParameterError, RegistryError
    from batchsep.io import storage
    from batchsep.pipeline.train import parse_overrides
    from batchsep.pipeline.train_data import resolve_features

    t0 = time.perf_counter()
    try:
        config = parse_overrides(list(overrides))
        if not model.startswith("emotion-"):
            resolve_features(run_uri)
        elif not storage.exists(run_uri):
            raise StorageError(f"--features {run_uri} does not exist")
    except (ParameterError, StorageError) as e:
        _fail_usage(str(e))
    target = out_uri or storage.join(run_uri, "models", model)
    try:
        storage.check_writable(target)
    except StorageError as e:
        _fail_fatal(f"output {e}")
    try:
        s = batchsep.api.train(
            run_uri, model=model, out_uri=target, config=config, max_epochs=max_epochs,
            train_fraction=train_fraction, init_from=init_from, batch_size=batch_size,
            crop_frames=crop_frames or None, snmf_frames=snmf_frames, seed=seed, workers=workers,
            gpu=gpu, address=address, local=local,
        )  # fmt: skip
    except (ConfigError, ParameterError, RegistryError) as e:
        _fail_usage(str(e))
    except BatchsepError as e:
        _fail_fatal(str(e))
    loss = "n/a" if s.best_valid_loss is None else f"{s.best_valid_loss:.5f}"
    click.echo(
        f"trained {s.model}: {s.param_count} parameters, best epoch {s.best_epoch} of {s.epochs}, "
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


@main.command(epilog=EPILOG)
@click.argument("model_uri")
@click.option(
    "--out", "out_uri", required=True, help="Folder (local or s3://) for PNGs + index.md."
)
def inspect(model_uri: str, out_uri: str) -> None:
    """Plot what a trained model learned: MODEL_URI is a model folder or 'default'.

    SNMF/DR-NMF: speech and noise dictionary atoms (before training, from the SNMF init, after),
    DR-NMF per-layer step sizes α and thresholds λ; emotion-vae: σ against μ of each latent
    dimension coloured by emotion (seed 003), on the corpus it was trained on; deep models:
    learning curves. Writes PNGs and an index.md.
    """
    from batchsep.io import checkpoint

    try:
        checkpoint.read_checkpoint(model_uri)
    except BatchsepError as e:
        _fail_usage(str(e))
    try:
        s = batchsep.api.inspect(model_uri, out_uri)
    except BatchsepError as e:
        _fail_fatal(str(e))
    click.echo(
        f"inspected {s.model}: {len(s.files)} figures ({', '.join(s.files)})\nindex: {s.index_uri}"
    )
    sys.exit(EXIT_OK)


# --- job specs and the Ray Jobs API (run, submit, status, logs, cancel) -------------------------

_JOBS_ADDRESS_HELP = "Jobs API URL of the cluster head's dashboard, e.g. http://HEAD:8265."


def _jobs_call(fn: Callable[[], Any]) -> Any:
    """Run a jobs helper: bad spec/option/job id → exit 2; unreachable cluster, other errors → 3."""
    from batchsep.errors import ParameterError

    try:
        return fn()
    except ParameterError as e:
        _fail_usage(str(e))
    except BatchsepError as e:
        _fail_fatal(str(e))


@main.command(epilog=EPILOG)
@click.argument("spec_uri")
@click.option(
    "--address",
    default=None,
    help="Ray address for every stage (overrides the spec's ray.address). Default: $RAY_ADDRESS "
    "(set inside a Ray Job), else an embedded local Ray.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="STAGE.PARAM=VALUE",
    help="Override a stage parameter (or ray.KEY) of the spec; VALUE is YAML. Repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Validate the spec and print the plan; run nothing.")
def run(spec_uri: str, address: str | None, overrides: tuple[str, ...], dry_run: bool) -> None:
    """Run the job spec SPEC_URI (YAML): every stage in order, with a summary per stage.

    A stage is a batchsep command (scan, enhance, ...) with its options as params; a value
    "${STAGE.PARAM}" takes a parameter of an earlier stage. See jobs/README.md. The same spec
    runs on a cluster with `batchsep submit`.
    """
    from batchsep import jobspec

    try:
        spec = jobspec.load_spec(spec_uri, overrides=overrides)
    except BatchsepError as e:  # invalid (ConfigError) or unreadable (StorageError) spec
        _fail_usage(str(e))
    click.echo(f"job {spec.name}: {len(spec.stages)} stage(s)")
    for s in spec.stages:
        params = ", ".join(f"{k}={jobspec.describe(v)}" for k, v in s.params.items())
        click.echo(f"  {s.index}. {s.name} ({s.stage}): {params}")
    if spec.env:
        click.echo(f"  env: {', '.join(sorted(spec.env))}")
    if dry_run:
        sys.exit(EXIT_OK)
    from batchsep.distributed import jobs

    def started(s: Any) -> None:
        click.echo(f"stage {s.index + 1}/{len(spec.stages)} {s.name} ({s.stage}) ...")

    def done(o: Any) -> None:
        click.echo(f"  done in {o.seconds:.1f} s: {jobs.summarize(o.result)}")
        for rel, err in list(getattr(o.result, "errors", None) or [])[:5]:
            click.echo(f"  failed: {rel}: {err}")

    try:
        outcomes = _jobs_call(
            lambda: jobs.run_spec(spec, address=address, on_stage_start=started, on_stage_done=done)
        )
    except Exception as e:  # not a batchsep error: show it, and say the job stopped
        import traceback

        traceback.print_exc()
        _fail_fatal(f"job {spec.name} stopped: {type(e).__name__}: {e}")
    failed = sum(o.failed for o in outcomes)
    click.echo(f"job {spec.name}: {len(outcomes)} stage(s) done, {failed} item(s) failed")
    sys.exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@main.command(epilog=EPILOG)
@click.argument("spec_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--address", required=True, envvar="RAY_API_SERVER_ADDRESS", help=_JOBS_ADDRESS_HELP)
@click.option("--wait", is_flag=True, help="Stream the job's logs until it ends; exit as it did.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after SECONDS.")
@click.option(
    "--runtime-env", default=None, help="Base Ray runtime env: a JSON/YAML file or inline JSON."
)
@click.option(
    "--pip",
    "pip_reqs",
    multiple=True,
    help="pip requirement(s) that install batchsep on the cluster (default: batchsep==VERSION).",
)
@click.option("--wheel", is_flag=True, help="Ship a wheel built from this checkout instead.")
@click.option(
    "--no-install", is_flag=True, help="The cluster's Python already has batchsep (an image)."
)
@click.option(
    "--working-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder to upload, holding the spec (default: a folder with only the spec).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="STAGE.PARAM=VALUE",
    help="Override a stage parameter (or ray.KEY) of the spec; VALUE is YAML. Repeatable.",
)
@click.option("--submission-id", default=None, help="Job id to use (default: batchsep-NAME-XXXX).")
@click.option(
    "--dry-run", is_flag=True, help="Print the entrypoint and runtime env; submit nothing."
)
def submit(
    spec_path: str,
    address: str,
    wait: bool,
    timeout: float | None,
    runtime_env: str | None,
    pip_reqs: tuple[str, ...],
    wheel: bool,
    no_install: bool,
    working_dir: str | None,
    overrides: tuple[str, ...],
    submission_id: str | None,
    dry_run: bool,
) -> None:
    """Submit the job spec SPEC_PATH to a Ray cluster through the Jobs API; print the job id.

    The job runs `batchsep run SPEC` on the cluster. Credentials are never sent: object
    storage credentials (AWS_*) must be in the cluster's environment (see cluster/README.md).
    """
    import json

    from batchsep.distributed import jobs

    if sum([wheel, no_install, bool(pip_reqs)]) > 1:
        _fail_usage("choose one of --pip, --wheel and --no-install")
    install = "wheel" if wheel else "none" if no_install else "pip"
    base = _jobs_call(lambda: jobs.load_runtime_env(runtime_env))
    if dry_run:
        spec, sub = _jobs_call(
            lambda: jobs.prepare_submission(
                spec_path,
                install=install,  # type: ignore[arg-type]
                pip=list(pip_reqs) or None,
                working_dir=working_dir,
                runtime_env=base,
                submission_id=submission_id,
                overrides=overrides,
            )
        )
        click.echo(f"job {spec.name} ({len(spec.stages)} stage(s)) would be submitted to {address}")
        click.echo(f"  submission id: {sub.submission_id}\n  entrypoint: {sub.entrypoint}")
        click.echo(f"  runtime env: {json.dumps(sub.runtime_env, sort_keys=True)}")
        click.echo(f"  uploads: {', '.join(sub.files)}")
        if sub.staging_dir:
            import shutil

            shutil.rmtree(sub.staging_dir, ignore_errors=True)
        sys.exit(EXIT_OK)
    job_id = _jobs_call(
        lambda: jobs.submit(
            spec_path,
            address=address,
            install=install,  # type: ignore[arg-type]
            pip=list(pip_reqs) or None,
            working_dir=working_dir,
            runtime_env=base,
            submission_id=submission_id,
            overrides=overrides,
        )
    )
    click.echo(f"submitted job {job_id} to {address}")
    if not wait:
        click.echo(
            f"follow it with: batchsep logs {job_id} --address {address} --follow\n"
            f"status: batchsep status {job_id} --address {address}"
        )
        sys.exit(EXIT_OK)
    state = _jobs_call(
        lambda: jobs.wait(
            job_id, address=address, timeout_s=timeout, write=lambda s: click.echo(s, nl=False)
        )
    )
    click.echo(jobs.describe_state(state))
    sys.exit(jobs.exit_code(state))


@main.command(epilog=EPILOG)
@click.argument("job_id")
@click.option("--address", required=True, envvar="RAY_API_SERVER_ADDRESS", help=_JOBS_ADDRESS_HELP)
def status(job_id: str, address: str) -> None:
    """Print the status of job JOB_ID (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    from batchsep.distributed import jobs

    click.echo(jobs.describe_state(_jobs_call(lambda: jobs.status(job_id, address=address))))


@main.command(epilog=EPILOG)
@click.argument("job_id")
@click.option("--address", required=True, envvar="RAY_API_SERVER_ADDRESS", help=_JOBS_ADDRESS_HELP)
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the job ends.")
def logs(job_id: str, address: str, follow: bool) -> None:
    """Print the logs (driver output) of job JOB_ID."""
    from batchsep.distributed import jobs

    if follow:
        _jobs_call(
            lambda: jobs.follow_logs(
                job_id, address=address, write=lambda s: click.echo(s, nl=False)
            )
        )
    else:
        click.echo(_jobs_call(lambda: jobs.logs(job_id, address=address)), nl=False)


@main.command(epilog=EPILOG)
@click.argument("job_id")
@click.option("--address", required=True, envvar="RAY_API_SERVER_ADDRESS", help=_JOBS_ADDRESS_HELP)
def cancel(job_id: str, address: str) -> None:
    """Stop job JOB_ID (its driver and tasks); outputs already committed stay, re-runs resume."""
    from batchsep.distributed import jobs

    stopped = _jobs_call(lambda: jobs.cancel(job_id, address=address))
    click.echo(f"job {job_id}: " + ("stop requested" if stopped else "was not running"))


from batchsep.cli import enhance as _enhance_commands  # noqa: E402, F401  (registers enhance, tag)
from batchsep.cli import evaluate as _evaluate_commands  # noqa: E402, F401  (evaluate, report)

if __name__ == "__main__":  # pragma: no cover - `python -m batchsep.cli.main`
    from batchsep.cli.main import main as _main  # the imported module: where commands registered

    _main()
