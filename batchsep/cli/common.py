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
2 usage error (bad option, input URI missing, invalid job spec); 3 fatal error (output
not writable, ...); 130 interrupted (Ctrl-C): re-run the same command to resume.
URIs: a local path, file:///path, or s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL,
credentials from the usual AWS_* variables)."""


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


def ray_options(
    *,
    workers_help: str,
    local_help: str = "Run in this process without Ray (small inputs, debugging).",
    show_errors: bool = True,
) -> Callable[[F], F]:
    """How a command runs, the same in every command: ``--workers``, ``--address``, ``--local`` and, for
    commands that summarise failed files, ``--show-errors``."""
    options = [
        click.option("--workers", type=click.IntRange(min=1), default=None, help=workers_help),
        click.option(
            "--address",
            default=None,
            callback=_ray_address,
            help="Ray cluster address HOST:6379, ray://HOST:10001 or 'auto' (default: embedded "
            "local Ray).",
        ),
        click.option("--local", is_flag=True, help=local_help),
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


def _progress(total: int, unit: str, desc: str) -> tuple[Any, Callable[[int, float], None]]:
    """A tqdm bar over files that also shows hours of audio done (hidden when stderr is no terminal)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, file=sys.stderr, disable=None)
    audio_s = [0.0]

    def update(n: int, seconds: float) -> None:
        audio_s[0] += seconds
        bar.set_postfix_str(f"{audio_s[0] / 3600:.2f} h audio", refresh=False)
        bar.update(n)

    return bar, update


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


class InterruptibleGroup(click.Group):
    """A group whose commands exit 130 on Ctrl-C with one line on stderr, not click's "Aborted!" (1).

    Exit status 1 means "finished, but some files failed"; an interrupted command did not finish.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: re-run the same command to resume", err=True)
            ctx.exit(EXIT_INTERRUPTED)


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
