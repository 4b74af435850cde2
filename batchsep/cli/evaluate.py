"""``batchsep evaluate`` and ``batchsep report``."""

from __future__ import annotations

import sys

import click

from batchsep.cli.common import (
    EPILOG,
    EPILOG_TASK,
    EXIT_OK,
    EXIT_SOME_FAILED,
    _echo_errors,
    _fail_usage,
    api_call,
)
from batchsep.cli.options import ray_options
from batchsep.errors import ParameterError, StorageError

METRIC_NAMES = ("sdr", "si_sdr", "pesq", "stoi", "dnsmos")


@click.command(epilog=EPILOG)
@click.argument("run_uri")
@click.option(
    "--references",
    default=None,
    help="Clean references: a prepare run (mixtures.parquet), a folder of clean files "
    "with the same relative paths as the enhanced inputs, or a pairs root: a folder with clean/ "
    "beside noisy/ (VoiceBank-DEMAND's layout; for a run of its noisy/ or of the root). Default: the prepare run the "
    "enhanced inputs came from (its mixtures folder), if any. Needed for sdr, si_sdr, pesq and "
    "stoi. Without any reference (none given, none found) evaluate scores DNSMOS only "
    "(reference-free) and says so; with an explicit --metrics list that lacks dnsmos it stops "
    "with exit status 2 instead (unless the files are RAVDESS-named and emotion-tagged: then "
    "only emotions are evaluated). A --references that matches no file: exit status 2. Not "
    "needed for a tag run.",
)
@click.option(
    "--metrics",
    default=None,
    help="Comma-separated subset of sdr (BSS Eval SDR/SIR/SAR), si_sdr, pesq, stoi (these need "
    "clean references) and dnsmos (DNSMOS P.835 SIG/BAK/OVRL and P.808: reference-free, "
    "needs the zoo extra: pip install 'batchsep[zoo]'). Default: sdr,si_sdr,pesq,stoi plus "
    "dnsmos when installed; dnsmos only for a run without references.",
)
@ray_options()
def evaluate(
    run_uri: str,
    references: str | None,
    metrics: str,
    workers: int | None,
    address: str | None,
    local: bool | None,
    show_errors: int,
) -> None:
    """Score the enhance run RUN_URI into RUN_URI/metrics/part-*.parquet.

    Per file: SDR/SIR/SAR (BSS Eval, speech vs the rest), SI-SDR, PESQ (wide-band at
    16 kHz, narrow-band at 8 kHz), STOI and DNSMOS (SIG, BAK, OVRL, P.808; no reference
    needed; 9.01 s windows, 1 s hop, averaged) for the enhanced output and the unprocessed
    input, their improvements, breakdown fields (input SNR, noise class, speaker, split,
    model) and, for tagged RAVDESS files, true and predicted emotions. A metric that
    cannot be computed is NaN with a reason in <metric>_error; a file that cannot be
    scored at all (no reference, lengths differ, unreadable) has a reason in error and
    makes the exit status 1.
    """
    import batchsep.api

    chosen = None
    if metrics is not None:
        chosen = [m.strip() for m in metrics.split(",") if m.strip()]
        bad = sorted(set(chosen) - set(METRIC_NAMES))
        if bad or not chosen:
            _fail_usage(
                f"--metrics: unknown {bad or 'empty'}; choose from {', '.join(METRIC_NAMES)}"
            )
    s = api_call(
        lambda: batchsep.api.evaluate(
            run_uri,
            references=references,
            metrics=chosen,
            workers=workers,
            address=address,
            local=local,
        ),
        usage=(),
        input_errors=(StorageError, ParameterError),
    )
    if references is None and s.references is not None:
        click.echo(f"references: {s.references} (the prepare run of the enhanced inputs)")
    for note in s.notes:
        click.echo(note)
    means = ", ".join(
        f"{k} {v:+.2f}" if k.endswith("_i") or "sdr" in k else f"{k} {v:.2f}"
        for k, v in s.means.items()
    )
    if s.scored or not s.emotion:
        click.echo(f"scored {s.scored}/{s.files} files ({means or 'no metric'})")
    if s.emotion:
        emo = s.emotion
        click.echo(
            f"emotion: accuracy {100 * emo['accuracy']:.1f} %, UAR {100 * emo['uar']:.1f} %, "
            f"macro F1 {100 * emo['macro_f1']:.1f} % over {emo['n']} tagged "
            f"file{'s' if emo['n'] != 1 else ''} with a true label (RAVDESS names)"
        )
    click.echo(f"metrics: {s.metrics_uri}")
    if s.files_failed:
        click.echo(f"{s.files_failed} files could not be scored (their metrics rows say why):")
    _echo_errors(s.errors, show_errors, label="not scored", rows="rows with an error")
    if s.files_failed and s.references is None:
        click.echo(f"no clean references given for {run_uri}: pass --references CLEAN_URI")
    sys.exit(EXIT_SOME_FAILED if s.files_failed else EXIT_OK)


@click.command(epilog=EPILOG_TASK)
@click.argument("run_uris", nargs=-1, required=True)
@click.option("--out", "out_uri", required=True, help="Folder (local or s3://) for the report.")
@click.option(
    "--name",
    "names",
    multiple=True,
    help="Display name per run, in order (default: the runs' folder names).",
)
def report(run_uris: tuple[str, ...], out_uri: str, names: tuple[str, ...]) -> None:
    """Compare evaluated runs: OUT/report.md, OUT/index.html (self-contained) and PNG plots.

    Summary per model (mean/median SDRi, SI-SDRi, PESQ, STOI, DNSMOS OVRL, processing speed
    per worker), PESQ/STOI/SI-SDR and DNSMOS SIG/BAK/OVRL/P.808 input → output per system,
    SDRi (else SI-SDRi) by input SNR and by noise type, per-speaker spread, a per-file table
    (worst first by SDRi, else SI-SDRi, else DNSMOS OVRL; linked to the listening examples),
    the distribution of emotion tags per tagged system, emotion accuracy, UAR and confusion
    matrix per system with true labels, and spectrograms with audio players of every system
    for the worst, median and best file (each says why it was chosen). Local paths in the
    provenance are relative to OUT. Runs evaluated
    without references (DNSMOS only) are reported too: what needs references is left out,
    with a line saying so. Plots of an earlier report in OUT that this one does not make
    are removed. The same run given twice is a usage error (2); an unwritable OUT exits 3.
    """
    import batchsep.api
    from batchsep.io import storage
    from batchsep.pipeline.report.driver import ReportOutputError

    if names and len(names) != len(run_uris):
        _fail_usage(f"--name given {len(names)} times for {len(run_uris)} runs")
    written = api_call(
        lambda: batchsep.api.report(list(run_uris), out_uri, names=list(names) or None),
        usage=(),
        input_errors=(StorageError, ParameterError),
        fatal=(ReportOutputError,),
    )
    n_plots = sum(u.endswith(".png") for u in written)
    click.echo(
        f"wrote report.md, index.html and {n_plots} plots to {out_uri} "
        f"(open {storage.join(out_uri, 'index.html')})"
    )
