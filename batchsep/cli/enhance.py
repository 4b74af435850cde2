"""``batchsep enhance`` and ``batchsep tag``."""

from __future__ import annotations

import sys
from typing import Any

import click

import batchsep.api
from batchsep.cli.common import (
    EPILOG,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_SOME_FAILED,
    SHOW_SKIPPED,
    _check_output,
    _echo_skipped,
    _fail_fatal,
    _fail_input,
    _fail_usage,
    _files,
    _phase_bars,
    _warn_no_audio,
    ray_options,
)
from batchsep.cli.main import main
from batchsep.dsp.level import INPUT_LEVEL_DB, MODEL_LEVEL, InputLevel, check_input_level
from batchsep.errors import BatchsepError, JobStoppedError, ParameterError


def _check_inputs(in_uri: str, out_uri: str, models: dict[str, str]) -> None:
    """Fail early (usage/fatal exits) on a missing input, a bad model, an unwritable output."""
    from batchsep.pipeline.enhance.outfolder import enhance_inputs
    from batchsep.pipeline.enhance.zoo import read_model_meta

    try:
        enhance_inputs(in_uri, out_uri)
    except BatchsepError as e:
        _fail_input(e)
    for option, uri in models.items():
        try:
            read_model_meta(uri)  # a zoo name: its extra installed, its files' checksums right
        except BatchsepError as e:
            _fail_usage(f"{option}: {e}")
    _check_output(out_uri)


def _speed(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


def _report(
    summary: Any,
    verb: str,
    out_uri: str,
    show_errors: int,
    *,
    stopped: str | None = None,
    show_skipped: int = 5,
) -> None:
    """Print the summary and exit: 0 all ok, 1 some files failed; with ``stopped`` (the message of the
    run's JobStoppedError: it did not finish, what it did is committed) that message on stderr, exit 3."""
    if summary.hours_run > 0:
        this_run = (
            f"this run: {summary.hours_run:.3f} h in {summary.wall_s:.1f} s = "
            f"{_speed(summary.x_real_time)} real time (worker start-up included); per worker "
            f"{_speed(summary.x_real_time_per_worker)} real time\n"
        )
    elif summary.files_run:
        this_run = (
            f"this run: {_files(summary.files_run)} tried, none enhanced ({summary.wall_s:.1f} s)\n"
        )
    else:
        this_run = f"this run: nothing new ({summary.wall_s:.1f} s)\n"
    click.echo(
        f"{verb} {_files(summary.files)}: {summary.files_ok} ok, {summary.files_failed} failed "
        f"({summary.files_skipped} already done); {summary.hours:.3f} h of audio\n"
        + this_run
        + f"results: {out_uri}/results"
    )
    if verb == "enhanced":
        level = summary.input_level_db
        click.echo(
            "model input level: "
            + (
                "raw (--input-level off, or a zoo model: it sees the input's own level)"
                if level is None
                else f"{level:g} dBFS RMS per 30 s window"
            )
        )
    if summary.outputs_missing:
        click.echo(
            f"{_files(summary.outputs_missing)} done earlier had lost "
            f"{'its' if summary.outputs_missing == 1 else 'their'} output: done again"
        )
    if summary.failed_retried:
        click.echo(f"{_files(summary.failed_retried)} that failed in an earlier run: tried again")
    if summary.inputs_changed:
        click.echo(f"{_files(summary.inputs_changed)} changed since an earlier run: done again")
    if summary.inputs_gone:
        what = (
            "their rows and outputs removed (--prune-missing)"
            if summary.inputs_gone_pruned
            else "their rows kept, not counted above (--prune-missing removes them)"
        )
        n = summary.inputs_gone
        click.echo(f"{n} input{'' if n == 1 else 's'} no longer present: {what}")
    if summary.rows_repaired:
        click.echo(
            f"results held {summary.rows_repaired} older duplicate row"
            f"{'' if summary.rows_repaired == 1 else 's'}: removed (each file keeps its newest row)"
        )
    if summary.non_audio_skipped:
        _echo_skipped(summary.skipped_names, show_skipped, f"{out_uri}/job.json")
    if summary.files == 0:
        _warn_no_audio("the input")
    for rel, err in summary.errors[:show_errors]:
        click.echo(f"  failed: {rel}: {err}")
    if len(summary.errors) > show_errors:
        click.echo(f"  ... and {len(summary.errors) - show_errors} more (status='error' rows)")
    if stopped:
        click.echo(f"Error: {stopped}", err=True)
        sys.exit(EXIT_FATAL)
    sys.exit(EXIT_SOME_FAILED if summary.files_failed else EXIT_OK)


def _parse_level(text: str) -> InputLevel:
    """``--input-level``: ``model``, dBFS in [-80, 0], or ``off``."""
    if text.strip().lower() == "off":
        return None
    if text.strip().lower() == MODEL_LEVEL:
        return MODEL_LEVEL
    try:
        level = float(text)
        check_input_level(level)
    except (ValueError, BatchsepError):
        _fail_usage(f"--input-level {text!r}: give 'model', dBFS in [-80, 0] or 'off'")
    return level


def _run_options(f: Any) -> Any:
    """Options shared by enhance and tag (applied bottom-up)."""
    for opt in reversed([
        click.option("--gpu/--no-gpu", default=False, show_default=True,
                     help="Run the models on a GPU per actor."),
        click.option("--resume/--overwrite", default=True, show_default=True,
                     help="Skip files already committed in OUT/results (default), or start over "
                          "(the outputs and rows of earlier runs are removed first)."),
        click.option("--retry-failed", is_flag=True, default=False,
                     help="Also do again the files whose committed row says they failed (after fixing "
                          "the cause: a full disk, permissions, an unreachable object store). By "
                          "default a re-run keeps their error rows."),
        click.option("--prune-missing", is_flag=True, default=False,
                     help="Remove from OUT/results the rows of inputs that are no longer there, and "
                          "their outputs. By default they are kept, and not counted in the totals."),
        click.option("--shard-size", type=click.IntRange(min=1), default=None,
                     help="Files per unit of work (one results part, one retry). Default: 1/16 of the "
                          "files, at most 32."),
        SHOW_SKIPPED,
    ]):  # fmt: skip
        f = opt(f)
    return ray_options(workers_help="Model actors (embedded Ray CPUs). Default: all cores.")(f)


@main.command(epilog=EPILOG)
@click.argument("in_uri")
@click.argument("out_uri")
@click.option(
    "--model",
    default="default",
    show_default=True,
    help="'default' (the shipped enhancer, fastest), a zoo model: 'rnnoise', 'nsnet2', "
    "'deepfilternet3' (best quality, slower; pip install 'batchsep[zoo]'), a fusion such as "
    "'rnnoise+deepfilternet3', or a trained model folder URI (local or s3://). "
    "`batchsep models` lists them with measured quality and speed.",
)
@click.option(
    "--emotion/--no-emotion",
    default=None,
    help="Also tag each enhanced file (and each voiced segment) with an emotion. "
    "Default: yes when the shipped tagger is installed.",
)
@click.option(
    "--emotion-model",
    default="default-emotion",
    show_default=True,
    help="'default-emotion' (the shipped tagger) or a trained emotion model URI.",
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
    help="Output format: WAV or FLAC (sample format: see --subtype).",
)
@click.option(
    "--subtype",
    type=click.Choice(["keep", "PCM_16", "PCM_24", "FLOAT"], case_sensitive=False),
    default="keep",
    show_default=True,
    help="Output sample format. keep: a WAV keeps a 16- or 24-bit input's (16-bit in, 16-bit out), "
    "anything else (float, MP3, AAC, ...) is written as 32-bit float WAV; FLAC is 24-bit. Integer "
    "formats are not dithered; samples beyond full scale are clipped and counted in the row's warning. "
    "FLOAT is WAV only.",
)
@click.option(
    "--input-level",
    default=MODEL_LEVEL,
    show_default=True,
    metavar="model|DBFS|off",
    help="RMS level (dBFS) each 30 s window is brought to before the model estimates its mask (the "
    "output keeps the input's level), so quiet and loud recordings are enhanced alike. 'model': the "
    f"level the model was trained at (recorded by `batchsep train`; {INPUT_LEVEL_DB:g} for models "
    "without one, the shipped model's); 'off' gives the model the raw level.",
)
@_run_options
def enhance(
    in_uri: str,
    out_uri: str,
    model: str,
    emotion: bool | None,
    emotion_model: str,
    sr: str,
    fmt: str,
    subtype: str,
    input_level: str,
    **run: Any,
) -> None:
    """Enhance every audio file under IN_URI into OUT_URI (same relative paths).

    Inputs: WAV, FLAC, OGG/Opus, AIFF, ... and, through FFmpeg, MP3, M4A/AAC, the audio
    track of MP4/MOV/WebM/MKV, WMA; other files are skipped by name (--show-skipped).
    Files are decoded, downmixed to mono and resampled to 16 kHz, enhanced in overlapping
    30 s chunks (bounded memory for any length), resampled back to their own rate and
    written atomically. OUT_URI/results/part-*.parquet gets one row per file (status, error,
    warning, durations, model checksum, emotion label and probabilities, timings) and
    OUT_URI/job.json the provenance. Re-running skips files already done; bad files get
    an error row and never stop the job.
    """
    show_errors = run.pop("show_errors")
    show_skipped = run.pop("show_skipped")
    level_db = _parse_level(input_level)
    emotion = batchsep.api._want_emotion(emotion, emotion_model)
    models = {"--model": model, **({"--emotion-model": emotion_model} if emotion else {})}
    _check_inputs(in_uri, out_uri, models)
    on_start, on_progress, close = _phase_bars()
    try:
        summary = batchsep.api.enhance(
            in_uri, out_uri, model=model, emotion=emotion, emotion_model=emotion_model, sr=sr,
            fmt=fmt, subtype=subtype, input_level_db=level_db, on_start=on_start, on_progress=on_progress, **run,
        )  # fmt: skip
    except ParameterError as e:  # e.g. resuming into OUT with other settings
        close()
        _fail_usage(str(e))
    except JobStoppedError as e:  # e.g. the output's disk is full: what is done is committed
        close()
        _report(
            e.summary, "enhanced", out_uri, show_errors, stopped=str(e), show_skipped=show_skipped
        )
    except BatchsepError as e:
        close()
        _fail_fatal(str(e))
    close()
    _report(summary, "enhanced", out_uri, show_errors, show_skipped=show_skipped)


@main.command(epilog=EPILOG)
@click.argument("in_uri")
@click.argument("out_uri")
@click.option(
    "--emotion-model",
    default="default-emotion",
    show_default=True,
    help="'default-emotion' (the shipped tagger) or a trained emotion model URI.",
)
@_run_options
def tag(in_uri: str, out_uri: str, emotion_model: str, **run: Any) -> None:
    """Tag every audio file under IN_URI with an emotion, without enhancing it.

    OUT_URI/results/part-*.parquet gets, per file, the label and the probabilities of the
    8 RAVDESS emotions (neutral, calm, happy, sad, angry, fearful, disgust, surprised),
    and the same per voiced segment (start, end, label, probabilities). No audio is written.
    """
    show_errors = run.pop("show_errors")
    show_skipped = run.pop("show_skipped")
    _check_inputs(in_uri, out_uri, {"--emotion-model": emotion_model})
    on_start, on_progress, close = _phase_bars()
    try:
        summary = batchsep.api.tag(
            in_uri, out_uri, emotion_model=emotion_model, on_start=on_start,
            on_progress=on_progress, **run,
        )  # fmt: skip
    except ParameterError as e:
        close()
        _fail_usage(str(e))
    except JobStoppedError as e:
        close()
        _report(
            e.summary, "tagged", out_uri, show_errors, stopped=str(e), show_skipped=show_skipped
        )
    except BatchsepError as e:
        close()
        _fail_fatal(str(e))
    close()
    _report(summary, "tagged", out_uri, show_errors, show_skipped=show_skipped)
