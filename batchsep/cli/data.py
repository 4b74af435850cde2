"""`batchsep scan` and `batchsep features`: list and measure the inputs; features of a prepare run."""

from __future__ import annotations

import sys

import click

from batchsep.cli.common import (
    EPILOG,
    EXIT_OK,
    EXIT_SOME_FAILED,
    _check_input,
    _check_output,
    _echo_errors,
    _echo_skipped,
    _fail_input,
    _fail_usage,
    _gb,
    _phase_bars,
    _warn_no_audio,
    api_call,
)
from batchsep.cli.options import (
    FLAG,
    REQUIRED,
    SHOW_SKIPPED,
    OptionRow,
    option_table,
    ray_options,
    shard_size_option,
)
from batchsep.errors import StorageError


@click.command(epilog=EPILOG)
@click.argument("in_uri")
@option_table(
    ("--out out_uri", None, None, "Run folder (local or s3://) for manifest.parquet.", REQUIRED)
)
@shard_size_option("Files", 32)
@SHOW_SKIPPED
@ray_options()
def scan(
    in_uri: str,
    out_uri: str,
    shard_size: int,
    show_skipped: int,
    workers: int | None,
    address: str | None,
    local: bool | None,
    show_errors: int,
) -> None:
    """Scan IN_URI recursively and write OUT/manifest.parquet: one row per audio file.

    Each row has uri, rel_path, bytes, sha256, sample rate, channels, frames, duration, format,
    subtype, peak, RMS level, and status (ok/error) with a readable error for bad files.
    Non-audio files (by extension) are skipped and counted.
    """
    import batchsep.api

    _check_input(in_uri)  # a missing input: exit 2 before OUT is made
    _check_output(out_uri)
    on_start, on_progress, close = _phase_bars()  # the total comes from the scan's one listing
    summary = api_call(
        lambda: batchsep.api.scan(
            in_uri,
            out_uri,
            workers=workers,
            address=address,
            local=local,
            shard_size=shard_size,
            on_start=on_start,
            on_progress=on_progress,
        ),
        close=close,
    )
    click.echo(
        f"scanned {summary.files} audio files: {summary.files_ok} ok, {summary.files_failed} failed, "
        f"{summary.hours:.2f} h of audio\nmanifest: {summary.manifest_uri}"
    )
    _echo_skipped(summary.skipped_names, show_skipped, f"{out_uri}/job.json")
    if not summary.files:
        _warn_no_audio(in_uri)
    _echo_errors(summary.errors, show_errors)
    sys.exit(EXIT_SOME_FAILED if summary.files_failed else EXIT_OK)


# fmt: off
FEATURES_OPTIONS: tuple[OptionRow, ...] = (
    ("--kind", click.Choice(["stft", "logmel"]), "stft",
     "stft: magnitudes of a prepare run; logmel: 80-mel log-power of a scan run."),
    ("--noise-mag/--no-noise-mag", None, True,
     "Store the noise magnitude too (a third more bytes)."),
    ("--psa psa_target", None, None,
     "Also store the phase-sensitive target (needed to train with --config loss=psa).", FLAG),
    ("--shard-mb", click.FloatRange(min=0, min_open=True), 128.0,
     "Target shard size (MB of uncompressed features)."),
    ("--compression", click.Choice(["zstd", "lz4", "snappy", "none"]), "zstd",
     "Parquet compression of the shards (zstd: smallest; none: faster to write, larger)."),
    ("--out out_uri", None, None, "Features folder (default: RUN/features)."),
)
# fmt: on


@click.command(epilog=EPILOG)
@click.argument("run_uri")
@option_table(*FEATURES_OPTIONS)
@ray_options()
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
    local: bool | None,
    show_errors: int,
) -> None:
    """Compute per-utterance features of RUN into Parquet shards (RUN/features/<split>/).

    stft: |STFT| of noisy, clean (and noise) as list<fixed_size_list<float32, 257>> (frames x
    bins; 512-point sqrt-Hann, hop 128 at 16 kHz), optionally the phase-sensitive target.
    logmel: 80-band log-power mel (dB) of every ok file of a scan run. Shards hold the transform
    parameters and hash in their metadata; a re-run skips shards already written.
    """
    import batchsep.api
    from batchsep.io import storage

    needed, stage = (
        ("mixtures.parquet", "prepare") if kind == "stft" else ("manifest.parquet", "scan")
    )
    try:
        if not storage.exists(storage.join(run_uri, needed)):
            _fail_usage(f"{run_uri} has no {needed} (run `batchsep {stage}` first)")
    except StorageError as e:
        _fail_input(e)
    _check_output(out_uri or storage.join(run_uri, "features"))
    on_start, on_progress, close = _phase_bars()
    summary = api_call(
        lambda: batchsep.api.features(
            run_uri,
            kind=kind,
            noise_mag=noise_mag,
            psa_target=psa_target,
            out_uri=out_uri,
            shard_mb=shard_mb,
            compression=compression,
            workers=workers,
            address=address,
            local=local,
            on_start=on_start,
            on_progress=on_progress,
        ),
        usage=(),
        close=close,
    )
    click.echo(
        f"features: {summary.rows_ok} rows ok, {summary.rows_failed} failed, {summary.hours:.2f} h "
        f"of audio; {summary.shards} shards ({summary.shards_skipped} already done), "
        f"{_gb(summary.bytes)} ({_gb(summary.bytes_per_hour)} per hour of audio)\n"
        f"transform {summary.transform_hash}; shards: {summary.out_uri}/<split>/part-*.parquet"
    )
    if summary.shards_replaced:
        before = summary.previous_transform
        why = (
            f"other settings: transform {before} -> {summary.transform_hash}"
            if before and before != summary.transform_hash
            else "same transform, another shard plan (--shard-mb)"
        )
        click.echo(f"replaced {summary.shards_replaced} shards of an earlier features run ({why})")
    _echo_errors(summary.errors, show_errors)
    sys.exit(EXIT_SOME_FAILED if summary.rows_failed else EXIT_OK)
