"""``batchsep enhance`` and ``batchsep tag``."""

from __future__ import annotations

import sys
from typing import Any

import click

from batchsep.cli.common import (
    EPILOG,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_SOME_FAILED,
    _check_input,
    _check_output,
    _check_params,
    _echo_errors,
    _echo_skipped,
    _fail_usage,
    _files,
    _phase_bars,
    _warn_no_audio,
    api_call,
)
from batchsep.cli.options import (
    EMOTION_MODEL,
    SHOW_SKIPPED,
    gpu_option,
    input_filter_options,
    ray_options,
    shard_size_option,
)
from batchsep.dsp.level import INPUT_LEVEL_DB, MODEL_LEVEL, InputLevel, check_input_level
from batchsep.errors import BatchsepError, JobStoppedError, ParameterError


def _run(
    stage: str, in_uri: str, out_uri: str, kwargs: dict[str, Any], models: dict[str, str]
) -> None:
    """Run ``batchsep.api.<stage>`` (enhance or tag) and report.

    Checked first, exit 2 (3: an output that cannot be written): the parameters (the api's own rules, so
    nothing is created for a refused one), that the input exists (a probe, not a listing: the stage lists
    it once), each model, the output folder.
    """
    import batchsep.api
    from batchsep.pipeline.enhance.zoo import read_model_meta

    show_errors, show_skipped = kwargs.pop("show_errors"), kwargs.pop("show_skipped")
    _check_params(stage, kwargs)
    _check_input(in_uri)
    for option, uri in models.items():
        try:  # a checkpoint is read once per process (io.checkpoint), not again by the stage
            read_model_meta(uri)  # a zoo name: its extra installed, its files' checksums right
        except BatchsepError as e:
            _fail_usage(f"{option}: {e}")
    _check_output(out_uri)
    on_start, on_progress, close = _phase_bars()
    stage_fn = getattr(batchsep.api, stage)

    def call() -> tuple[Any, str | None]:
        try:
            summary = stage_fn(
                in_uri, out_uri, on_start=on_start, on_progress=on_progress, **kwargs
            )
        except JobStoppedError as e:  # e.g. the output's disk is full: what is done is committed
            return e.summary, str(e)
        return summary, None

    summary, stopped = api_call(call, usage=(ParameterError,), close=close)  # e.g. other settings
    verb = "enhanced" if stage == "enhance" else "tagged"
    _report(summary, verb, out_uri, show_errors, stopped=stopped, show_skipped=show_skipped)


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
    _echo_errors(summary.errors, show_errors)
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


def _multichannel(multichannel: str | None, channels: str | None) -> str:
    """``--multichannel``, or ``--channels`` (mono → downmix); both given must agree."""
    from_channels = {"mono": "downmix", "keep": "keep", None: None}[channels]
    if multichannel and from_channels and multichannel != from_channels:
        _fail_usage(f"--channels {channels} and --multichannel {multichannel} disagree: give one")
    return multichannel or from_channels or "downmix"


def _run_options(f: Any) -> Any:
    """Options shared by enhance and tag (applied bottom-up)."""
    for opt in reversed([
        gpu_option("Run the models on a GPU per actor."),
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
        shard_size_option("Files", None, " One results part each. Default: 1/16 of the files, at most 32."),
        input_filter_options,
        click.option("--check-outputs/--trust-record", default=True, show_default=True,
                     help="On a resume, find outputs gone missing with one listing of OUT_URI, or "
                          "trust OUT_URI/results without listing it."),
        SHOW_SKIPPED,
    ]):  # fmt: skip
        f = opt(f)
    return ray_options(workers_help="Model actors (embedded Ray CPUs). Default: all cores.")(f)


@click.command(epilog=EPILOG)
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
@EMOTION_MODEL
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
    type=click.Choice(["wav", "flac", "ogg", "opus"]),
    default="wav",
    show_default=True,
    help="Output format, also the outputs' suffix: WAV, FLAC, Ogg Vorbis or Ogg Opus (lossy; Opus "
    "writes 8/12/16/24/48 kHz only, other rates at 48 kHz). Sample format: see --subtype.",
)
@click.option(
    "--subtype",
    type=click.Choice(
        ["keep", "PCM_16", "PCM_24", "FLOAT", "VORBIS", "OPUS"], case_sensitive=False
    ),
    default="keep",
    show_default=True,
    help="Output sample format. keep: a WAV keeps a 16- or 24-bit input's (16-bit in, 16-bit out), "
    "anything else (float, MP3, AAC, ...) is written as 32-bit float WAV; FLAC is 24-bit. Integer "
    "formats are not dithered; samples beyond full scale are clipped and counted in the row's warning. "
    "FLOAT is WAV only; FLAC takes PCM_16 or PCM_24, ogg VORBIS, opus OPUS.",
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
@click.option(
    "--multichannel",
    type=click.Choice(["downmix", "keep", "beamform"]),
    default=None,
    help="What a file of several channels becomes. downmix (default): averaged to mono (a channel out "
    "of phase with the first is inverted first, so a pair does not cancel), then enhanced; keep: each "
    "channel enhanced on its own, as many channels out; beamform: the model's speech masks (per "
    "channel) give speech and noise spatial covariances, a beamformer (--beamformer) makes one channel "
    "(the speech at the reference microphone, chosen by SNR), then the model's mask is applied to it "
    "(--no-beam-postmask: not). The row's warning says what was done.",
)
@click.option(
    "--channels",
    type=click.Choice(["mono", "keep"]),
    default=None,
    help="Same as --multichannel downmix|keep (the older spelling).",
)
@click.option(
    "--beamformer",
    type=click.Choice(["mvdr", "gev_ban", "mwf", "delay_and_sum"]),
    default="mvdr",
    show_default=True,
    help="With --multichannel beamform: MVDR (Souden form), GEV with the BAN gain, the multichannel "
    "Wiener filter, or delay-and-sum (a baseline).",
)
@click.option(
    "--beam-forgetting",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    metavar="LAMBDA",
    help="With --multichannel beamform: spatial statistics updated recursively with this forgetting "
    "factor (e.g. 0.99 per frame; one pass over the file, the filter follows moving talkers). "
    "Default: over the whole file (the file is read 2 + --beam-refine times).",
)
@click.option(
    "--beam-refine",
    type=click.IntRange(0, 3),
    default=1,
    show_default=True,
    metavar="N",
    help="With --multichannel beamform: N rounds (0 to 3) in which the model's mask of the beamformed "
    "signal replaces the channels' masks and the spatial statistics are estimated again (each one more "
    "model pass and, with whole-file statistics, one more read of the file; 0: the channels' masks only).",
)
@click.option(
    "--beam-noise-power",
    type=click.FloatRange(0, 4, min_open=True),
    default=None,
    metavar="P",
    help="With --multichannel beamform: the noise statistics weight each bin by (1 - mask)^P, P in "
    "(0, 4]. Default: the beamformer's own, 1 for mwf (its filter assumes speech + noise = input), "
    "2 for mvdr, gev_ban and delay_and_sum (bins the mask calls half speech count little as noise).",
)
@click.option(
    "--beam-mask",
    type=click.Choice(["model", "spatial", "guided"]),
    default="model",
    show_default=True,
    help="With --multichannel beamform: what the spatial statistics are estimated from: the model's "
    "masks; 'spatial': those refined by a two-class spatial mixture model of the channels (cACGMM, "
    "initialised from them); 'guided': the same with the model's mask as each bin's prior.",
)
@click.option(
    "--beam-postmask/--no-beam-postmask",
    default=True,
    show_default=True,
    help="With --multichannel beamform: apply the model's mask to the beamformer's output too.",
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
    multichannel: str | None,
    channels: str | None,
    beamformer: str,
    beam_forgetting: float | None,
    beam_refine: int,
    beam_noise_power: float | None,
    beam_mask: str,
    beam_postmask: bool,
    **run: Any,
) -> None:
    """Enhance every audio file under IN_URI into OUT_URI (same relative paths).

    IN_URI is a folder or prefix, or a scan's RUN/manifest.parquet (any Parquet file with a uri
    column): then nothing is listed, and --ok-only, --min-duration, --max-duration filter it.

    Inputs: WAV, FLAC, OGG/Opus, AIFF, ... and, through FFmpeg, MP3, M4A/AAC, the audio
    track of MP4/MOV/WebM/MKV, WMA; other files are skipped by name (--show-skipped).
    Files are decoded, downmixed to mono and resampled to 16 kHz, enhanced in overlapping
    30 s chunks (bounded memory for any length), resampled back to their own rate and
    written atomically. OUT_URI/results/part-*.parquet gets one row per file (status, error,
    warning, durations, model checksum, emotion label and probabilities, timings) and
    OUT_URI/job.json the provenance. Re-running skips files already done; bad files get
    an error row and never stop the job.
    """
    from batchsep.api_params import want_emotion

    level_db = _parse_level(input_level)
    mode = _multichannel(multichannel, channels)
    emotion = want_emotion(emotion, emotion_model)
    models = {"--model": model, **({"--emotion-model": emotion_model} if emotion else {})}
    kwargs = dict(
        model=model, emotion=emotion, emotion_model=emotion_model, sr=sr, fmt=fmt, subtype=subtype,
        input_level_db=level_db, multichannel=mode, beamformer=beamformer,
        beam_forgetting=beam_forgetting, beam_refine=beam_refine, beam_noise_power=beam_noise_power,
        beam_mask=beam_mask, beam_postmask=beam_postmask, **run,
    )  # fmt: skip
    _run("enhance", in_uri, out_uri, kwargs, models)


@click.command(epilog=EPILOG)
@click.argument("in_uri")
@click.argument("out_uri")
@EMOTION_MODEL
@_run_options
def tag(in_uri: str, out_uri: str, emotion_model: str, **run: Any) -> None:
    """Tag every audio file under IN_URI with an emotion, without enhancing it.

    OUT_URI/results/part-*.parquet gets, per file, the label and the probabilities of the
    8 RAVDESS emotions (neutral, calm, happy, sad, angry, fearful, disgust, surprised),
    and the same per voiced segment (start, end, label, probabilities). No audio is written.
    """
    _run(
        "tag",
        in_uri,
        out_uri,
        {"emotion_model": emotion_model, **run},
        {"--emotion-model": emotion_model},
    )
