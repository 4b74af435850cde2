"""What every command shares: exit codes, epilogs, the lazy group, progress bars, the checks made before
any work, and api errors turned into exit codes (:func:`api_call`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, NoReturn, TypeVar

import click

from batchsep.errors import (
    BatchsepError,
    ParameterError,
    RegistryError,
    StorageAccessError,
    StorageError,
)

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

T = TypeVar("T")


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands by name, each imported from its ``"module:function"`` when first asked for (click's
    lazy group: a command runs, or help lists it), in the order given; commands added later come after."""

    def __init__(self, specs: Mapping[str, str]) -> None:
        self._specs = dict(specs)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module, _, attr = self._specs[name].partition(":")  # KeyError: no such command
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self._specs[name]} is not a click command")
            self._loaded[name] = command
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._specs and name not in self._loaded:
            raise KeyError(name)
        self._specs.pop(name, None)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._specs
        yield from (n for n in self._loaded if n not in self._specs)

    def __len__(self) -> int:
        return len(self._specs) + sum(n not in self._specs for n in self._loaded)


def _phase_bars() -> tuple[Callable[[str, int], None], Callable[..., None], Callable[[], None]]:
    """Progress callbacks for a multi-phase command (scan inputs, render, ...): ``on_start(phase,
    total)``, ``on_progress(n, seconds, failed)``, ``close()``."""
    from batchsep.cli.console import Progress

    progress = Progress()
    return progress.start, progress.update, progress.close


class InterruptibleGroup(click.Group):
    """A group whose commands exit 130 on Ctrl-C with one line on stderr, not click's "Aborted!" (1).

    Exit status 1 means "finished, but some files failed"; an interrupted command did not finish.
    ``lazy_commands`` (name → ``"module:function"``) are imported only when one runs or help lists
    them (:class:`LazyCommands`); help lists them in that order, each with the first sentence of its
    help, whole.
    """

    def __init__(self, *args: Any, lazy_commands: Mapping[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if lazy_commands:
            self.commands = LazyCommands(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

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


def api_call(
    call: Callable[[], T],
    *,
    usage: tuple[type[BaseException], ...] = (ParameterError, RegistryError),
    input_errors: tuple[type[BaseException], ...] = (),
    fatal: tuple[type[BaseException], ...] = (),
    close: Callable[[], None] | None = None,
) -> T:
    """``call()`` (an api or jobs function), its errors turned into exits: ``fatal`` types first (exit 3),
    then ``usage`` (2), then ``input_errors`` (:func:`_fail_input`: 2, or 3 for an object store that
    refuses or cannot be reached), any other :class:`BatchsepError` 3. ``close`` (a progress display) is
    closed first, also when the call returns."""
    try:
        result = call()
    except BatchsepError as e:
        if close is not None:
            close()
        if isinstance(e, fatal):
            _fail_fatal(str(e))
        if isinstance(e, usage):
            _fail_usage(str(e))
        if isinstance(e, input_errors):
            _fail_input(e)
        _fail_fatal(str(e))
    except BaseException:
        if close is not None:
            close()
        raise
    if close is not None:
        close()
    return result


def _check_input(in_uri: str) -> None:
    """Exit 2 (3 when the object store refuses or cannot be reached), before any work, when ``in_uri`` does
    not exist or cannot be listed: a cheap probe (the first entry of its listing, with the listing's own
    messages), not a listing; the stage lists the input once, itself."""
    from batchsep.io import storage

    files = storage.iter_files(in_uri, sizes=False)
    try:
        next(files, None)
    except StorageError as e:
        _fail_input(e)
    finally:
        getattr(files, "close", lambda: None)()  # a generator: stop its walk here


def _check_params(stage: str, params: Mapping[str, Any]) -> None:
    """Exit 2, before anything is created, when the api would refuse ``params`` of ``stage``
    (:func:`batchsep.api_params.check_params`, with the api's own message)."""
    from batchsep.api_params import check_params

    problems = check_params(stage, params)
    if problems:
        _fail_usage(f"{stage}: " + "; ".join(problems))


def _echo_errors(
    errors: Sequence[tuple[str, str]],
    show: int,
    *,
    label: str = "failed",
    rows: str = "status='error' rows",
) -> None:
    """The first ``show`` failed files of a summary (``  failed: a.wav: why``) and how many more."""
    for rel, err in errors[:show]:
        click.echo(f"  {label}: {rel}: {err}")
    if len(errors) > show:
        click.echo(f"  ... and {len(errors) - show} more ({rows})")
