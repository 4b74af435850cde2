"""What every command shares: exit codes, the epilog, progress bars, error exits."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from batchsep.errors import StorageAccessError, StorageError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT): the shell's 128 + SIGINT; re-running the command resumes."""

EPILOG = """\b
Exit status: 0 all files ok; 1 finished but some files failed;
2 usage error (bad option, input URI missing, invalid job spec); 3 fatal error, or the job
stopped early with what it did committed (output not writable, disk full, ...: the message
says what to do); 130 interrupted (Ctrl-C): re-run the same command to resume.
URIs: a local path, file:///path, or s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL,
credentials from the usual AWS_* variables)."""
"""The epilog of the commands that process files (scan, prepare, features, enhance, tag, evaluate, run)."""

_URIS = """URIs: a local path, file:///path, or s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL,
credentials from the usual AWS_* variables)."""

EPILOG_TASK = f"""\b
Exit status: 0 done; 2 usage error (bad option, input missing or not what the command needs);
3 fatal error (output not writable, ...); 130 interrupted (Ctrl-C).
{_URIS}"""
"""The epilog of the commands that make one thing (train, inspect, report): no per-file status 1."""

EPILOG_JOBS = """\b
Exit status: 0 done; 2 usage error (bad option, unknown job id); 3 fatal error (the Jobs API
unreachable, ...). The Jobs API address can also come from RAY_API_SERVER_ADDRESS."""
"""The epilog of the commands that ask a cluster's Jobs API about a job (status, logs, cancel)."""

EPILOG_SUBMIT = """\b
Exit status: 0 submitted; 2 usage error (bad option or spec); 3 fatal error (the Jobs API
unreachable, ...). With --wait, submit exits as the job's driver did (0, 1, 2 or 3).
The Jobs API address can also come from RAY_API_SERVER_ADDRESS."""
"""The epilog of ``submit``."""

EPILOG_MODELS = """\b
Exit status: 0 done; 2 usage error (bad option)."""
"""The epilog of ``models`` (no input, no output, nothing that can fail per file)."""

EPILOG_MAIN = f"""\b
`batchsep COMMAND --help` gives a command's options and its exit status.
{_URIS}"""

COMMAND_ORDER = (
    "scan", "prepare", "features", "train", "inspect", "enhance", "tag", "evaluate", "report",
    "models", "run", "submit", "status", "logs", "cancel",
)  # fmt: skip
"""``batchsep --help`` lists the commands in pipeline order (others, if any, after them)."""


F = TypeVar("F", bound=Callable[..., Any])


def _ray_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a Jobs API URL given where a Ray address belongs, before any work (usage error)."""
    if value:
        from batchsep.distributed.runtime import check_address
        from batchsep.errors import ParameterError

        try:
            check_address(value)
        except ParameterError as e:
            raise click.BadParameter(str(e).removeprefix("--address "), ctx, param) from e
    return value


PLACEMENT_HELP = (
    "Where it runs. Default: on Ray when --address or RAY_ADDRESS names a cluster or --workers is "
    "over 1; otherwise a small job (at most {files} files and {minutes:g} minutes of audio; files not "
    "yet decoded count 1 s per 32 kB) runs in this process with one worker, which saves the 10-30 s "
    "Ray takes to start, and a larger one on an embedded local Ray. --local: always in this process "
    "(one worker); --ray: always on Ray; $BATCHSEP_PLACEMENT=local|ray: the default."
)
"""The help of ``--local/--ray``, with the rule's figures (``batchsep.pipeline.runner``)."""


def ray_options(
    *,
    workers_help: str,
    local_help: str | None = None,
    show_errors: bool = True,
) -> Callable[[F], F]:
    """How a command runs, the same in every command: ``--workers``, ``--address``, ``--local/--ray``
    (``local`` True, False or None: :func:`batchsep.distributed.runtime.placement`) and, for commands
    that summarise failed files, ``--show-errors``. With ``local_help``, a plain ``--local`` flag with
    that help instead (``train``: Ray unless ``--local``)."""
    from batchsep.pipeline.runner import SMALL_JOB_FILES, SMALL_JOB_SECONDS

    options = [
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help=workers_help
            + ("" if local_help is not None else " In this process: one; over 1 runs on Ray."),
        ),
        click.option(
            "--address",
            default=None,
            callback=_ray_address,
            help="Ray cluster to run on: HOST:6379, ray://HOST:10001 or 'auto' (default: "
            "$RAY_ADDRESS when set, as inside a Ray Job; else this machine, see --local). Not "
            "the Jobs API URL http://HOST:8265: that is for submit, status, logs and cancel (or "
            "$RAY_API_SERVER_ADDRESS).",
        ),
        click.option("--local", is_flag=True, help=local_help)
        if local_help is not None
        else click.option(
            "--local/--ray",
            default=None,
            help=PLACEMENT_HELP.format(files=SMALL_JOB_FILES, minutes=SMALL_JOB_SECONDS / 60),
        ),
    ]
    if show_errors:
        options.append(
            click.option(
                "--show-errors",
                type=click.IntRange(min=0),
                default=10,
                show_default=True,
                help="How many failed files to list in the summary.",
            )
        )

    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def _progress(total: int, unit: str, desc: str) -> tuple[Any, Callable[..., None]]:
    """Progress over one phase of ``total`` items: a bar on a terminal, plain lines elsewhere (see
    :mod:`batchsep.cli.console`). Returns the progress (a context manager) and its update callback."""
    from batchsep.cli.console import Progress

    progress = Progress(unit=unit)
    progress.start(desc, total)
    return progress, progress.update


def _phase_bars() -> tuple[Callable[[str, int], None], Callable[..., None], Callable[[], None]]:
    """Progress callbacks for a multi-phase command (scan inputs, render, ...): ``on_start(phase,
    total)``, ``on_progress(n, seconds, failed)``, ``close()``."""
    from batchsep.cli.console import Progress

    progress = Progress()
    return progress.start, progress.update, progress.close


class InterruptibleGroup(click.Group):
    """A group whose commands exit 130 on Ctrl-C with one line on stderr, not click's "Aborted!" (1).

    Exit status 1 means "finished, but some files failed"; an interrupted command did not finish.
    Its help lists the commands in pipeline order (:data:`COMMAND_ORDER`), each with the first
    sentence of its help, whole.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            rows.append((name, cmd.short_help or _first_sentence(cmd.help or "")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from batchsep.cli.console import filtered_stderr
        from batchsep.pipeline.common import interrupt

        interrupt.install()  # a Ctrl-C inside a C callback is not lost (see the module)
        try:
            with filtered_stderr():  # Ray's misleading console lines dropped, nothing else
                return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: re-run the same command to resume", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def _first_sentence(text: str) -> str:
    """The first sentence of a command's help (its first paragraph, up to the first ". "), whole."""
    para = " ".join(text.split("\n\n", 1)[0].split())
    head, sep, _ = para.partition(". ")
    return head + "." if sep else para


def _fail_usage(msg: str) -> NoReturn:
    click.echo(f"Error: {msg}", err=True)
    sys.exit(EXIT_USAGE)


def _fail_fatal(msg: str) -> NoReturn:
    click.echo(f"Error: {msg}", err=True)
    sys.exit(EXIT_FATAL)


def _fail_input(e: BaseException) -> NoReturn:
    """An input that cannot be used: a usage error (exit 2), unless the object store refused the
    credentials or could not be reached (exit 3, as for the output)."""
    (_fail_fatal if isinstance(e, StorageAccessError) else _fail_usage)(str(e))


SHOW_SKIPPED = click.option(
    "--show-skipped",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="How many of the files skipped as not audio (by name) to list; OUT/job.json lists them all.",
)
"""The option of the commands that skip files by name (scan, enhance, tag)."""


def _echo_skipped(names: list[str], show: int, where: str) -> None:
    """``3 files skipped: not audio (by name): a.txt, b.csv, ... and 1 more (all in OUT/job.json)``."""
    if not names:
        return
    shown = ", ".join(names[:show])
    more = len(names) - min(show, len(names))
    tail = f"{': ' + shown if shown else ''}{f' ... and {more} more' if more and shown else ''}"
    click.echo(
        f"{_files(len(names))} skipped: not audio (by name){tail}"
        + (f" (all in {where})" if more else "")
    )


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _files(n: int) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} file" + ("" if n == 1 else "s")


def _check_output(out_uri: str) -> None:
    """Exit 3, before any work, when nothing can be written under the output folder ``out_uri``."""
    from batchsep.io import storage

    try:
        storage.check_writable(out_uri)
    except StorageError as e:
        _fail_fatal(f"output folder: {e}")


def _warn_no_audio(where: str) -> None:
    """The console warning of a command whose input holds no audio file (by name)."""
    from batchsep.io.audio import AUDIO_SUFFIXES

    click.echo(f"warning: no audio files found under {where} ({' '.join(sorted(AUDIO_SUFFIXES))})")
