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
from batchsep.errors import BatchsepError, StorageError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3

EPILOG = """\b
Exit status: 0 all files ok; 1 finished but some files failed;
2 usage error (bad option, input URI missing); 3 fatal error (output not writable, ...).
URIs: a local path, file:///path, or s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL,
credentials from the usual AWS_* variables)."""


def _progress(total: int, unit: str, desc: str) -> tuple[Any, Callable[[int, float], None]]:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total, unit=unit, desc=desc, dynamic_ncols=True, file=sys.stderr, disable=None
    )  # disable=None: no bar when stderr is not a terminal
    audio_s = [0.0]

    def update(n: int, seconds: float) -> None:
        audio_s[0] += seconds
        bar.set_postfix_str(f"{audio_s[0] / 3600:.2f} h audio", refresh=False)
        bar.update(n)

    return bar, update


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(batchsep.__version__, prog_name="batchsep")
def main() -> None:
    """batchsep: batch speech enhancement and emotion tagging for large audio corpora.

    Every stage runs on an embedded local Ray by default, or on a cluster with --address.
    """


def _fail_usage(msg: str) -> None:
    click.echo(f"Error: {msg}", err=True)
    sys.exit(EXIT_USAGE)


def _fail_fatal(msg: str) -> None:
    click.echo(f"Error: {msg}", err=True)
    sys.exit(EXIT_FATAL)


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


@main.command(epilog=EPILOG)
@click.argument("in_uri")
@click.argument("out_uri")
@click.option(
    "--model",
    default="default",
    show_default=True,
    help="'default' (the shipped enhancer) or a trained model folder URI (local or s3://).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Model actors (embedded Ray CPUs). Default: all cores.",
)
@click.option(
    "--gpu/--no-gpu", default=False, show_default=True, help="Run the model on a GPU per actor."
)
@click.option(
    "--sr",
    type=click.Choice(["keep", "16000"]),
    default="keep",
    show_default=True,
    help="Output sample rate: the input's, or the model's 16 kHz.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["wav", "flac"]),
    default="wav",
    show_default=True,
    help="Output format: 32-bit float WAV or 24-bit FLAC.",
)
@click.option(
    "--resume/--overwrite",
    default=True,
    show_default=True,
    help="Skip files already committed in OUT/results (default), or start over.",
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Files per unit of work (and per results part).",
)
@click.option("--address", default=None, help="Ray cluster address (default: embedded local Ray).")
@click.option("--local", is_flag=True, help="Run in this process without Ray.")
@click.option(
    "--show-errors",
    type=int,
    default=10,
    show_default=True,
    help="How many failed files to list in the summary.",
)
def enhance(
    in_uri: str,
    out_uri: str,
    model: str,
    workers: int | None,
    gpu: bool,
    sr: str,
    fmt: str,
    resume: bool,
    shard_size: int,
    address: str | None,
    local: bool,
    show_errors: int,
) -> None:
    """Enhance every audio file under IN_URI into OUT_URI (same relative paths).

    Files are decoded, downmixed and resampled to 16 kHz, enhanced in overlapping 30 s
    chunks (bounded memory for any length), resampled back and written atomically.
    OUT_URI/results/part-*.parquet gets one row per file (status, error, durations,
    model checksum, timings) and OUT_URI/job.json the provenance. Re-running skips
    files already done; bad files get an error row and never stop the job.
    """
    from batchsep.io import checkpoint, storage
    from batchsep.pipeline.scan import list_audio

    try:
        entries, _ = list_audio(in_uri)
    except StorageError as e:
        _fail_usage(str(e))
    try:
        checkpoint.read_checkpoint(model)
    except BatchsepError as e:
        _fail_usage(f"--model: {e}")
    try:
        storage.check_writable(out_uri)
    except StorageError as e:
        _fail_fatal(f"output {e}")
    bar, update = _progress(len(entries), "file", "enhance")
    try:
        with bar:
            summary = batchsep.api.enhance(
                in_uri,
                out_uri,
                model=model,
                workers=workers,
                address=address,
                local=local,
                gpu=gpu,
                sr=sr,
                fmt=fmt,
                resume=resume,
                shard_size=shard_size,
                on_progress=update,
            )
    except BatchsepError as e:
        _fail_fatal(str(e))
    click.echo(
        f"enhanced {summary.files} files: {summary.files_ok} ok, {summary.files_failed} failed "
        f"({summary.files_skipped} already done); {summary.hours:.3f} h of audio in "
        f"{summary.wall_s:.1f} s\nresults: {out_uri}/results"
    )
    for rel, err in summary.errors[:show_errors]:
        click.echo(f"  failed: {rel}: {err}")
    if len(summary.errors) > show_errors:
        click.echo(f"  ... and {len(summary.errors) - show_errors} more (status='error' rows)")
    sys.exit(EXIT_SOME_FAILED if summary.files_failed else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
