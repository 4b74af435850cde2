"""The click options several commands share, each defined once (same name, same help everywhere)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import click

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

TASKS_HELP = "Parallel tasks (embedded Ray CPUs). Default: all cores."
"""``--workers`` of the commands that run Ray tasks (scan, prepare, features, evaluate)."""


def ray_options(
    *,
    workers_help: str = TASKS_HELP,
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
    return _apply(options)


def _apply(options: list[Callable[[Any], Any]]) -> Callable[[F], F]:
    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


OptionRow = tuple[str, Any, Any, str] | tuple[str, Any, Any, str, Mapping[str, Any]]
"""One row of an :func:`option_table`: ``(declarations, type, default, help[, more])``."""
REQUIRED: Mapping[str, Any] = MappingProxyType({"required": True})
MULTIPLE: Mapping[str, Any] = MappingProxyType({"multiple": True})
FLAG: Mapping[str, Any] = MappingProxyType({"is_flag": True})
"""The ``more`` of the rows of a required, a repeatable and an on/off option."""
COUNT = click.IntRange(min=0)
"""A whole number, 0 or more."""


def option_table(*rows: OptionRow) -> Callable[[F], F]:
    """A command's options from a table, one row each, listed (and parsed) in the order given: the same
    as a stack of ``@click.option`` decorators, each written in one line.

    A row is ``(declarations, type, default, help[, more])``: the flag(s) and, where it is not the one
    the flag makes, the parameter name, space-separated (``"--train n_train"``,
    ``"--noise-mag/--no-noise-mag"``); a click type (None: click's, from the default); the default (None:
    none; a default is shown in the help); the help; and further :func:`click.option` keywords
    (:data:`REQUIRED`, :data:`MULTIPLE`, :data:`FLAG`, ``{"metavar": ...}``).
    """
    options = []
    for declarations, type_, default, help_, *more in rows:
        kwargs: dict[str, Any] = dict(more[0]) if more else {}
        if type_ is not None:
            kwargs["type"] = type_
        if default is not None:
            kwargs.update(default=default, show_default=True)
        options.append(click.option(*declarations.split(), help=help_, **kwargs))
    return _apply(options)


def shard_size_option(unit: str, default: int | None, default_help: str = "") -> Callable[[F], F]:
    """``--shard-size``: ``unit`` per task, the unit of work and of retry (scan, prepare, enhance, tag)."""
    return click.option(
        "--shard-size",
        type=click.IntRange(min=1),
        default=default,
        show_default=default is not None,
        help=f"{unit} per task (one unit of work, and of retry when a Ray worker dies).{default_help}",
    )


SHOW_SKIPPED = click.option(
    "--show-skipped",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="How many of the files skipped as not audio (by name) to list; OUT/job.json lists them all.",
)
"""The option of the commands that skip files by name (scan, enhance, tag)."""

EMOTION_MODEL = click.option(
    "--emotion-model",
    default="default-emotion",
    show_default=True,
    help="'default-emotion' (the shipped tagger) or a trained emotion model URI.",
)
"""The emotion tagger of enhance and tag."""


def gpu_option(help: str) -> Callable[[F], F]:
    """``--gpu/--no-gpu`` (enhance, tag, train)."""
    return click.option("--gpu/--no-gpu", default=False, show_default=True, help=help)


SET_OPTION = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="STAGE.PARAM=VALUE",
    help="Override a stage parameter (or ray.KEY) of the spec; VALUE is YAML. Repeatable.",
)
"""``--set`` of run and submit."""

JOBS_ADDRESS = click.option(
    "--address",
    required=True,
    envvar="RAY_API_SERVER_ADDRESS",
    help="Jobs API URL of the cluster head's dashboard, e.g. http://HEAD:8265 (default: "
    "$RAY_API_SERVER_ADDRESS). Not the Ray address HOST:6379 that other commands' --address takes.",
)
"""``--address`` of the commands that talk to a cluster's Jobs API (submit, status, logs, cancel)."""


# fmt: off
INPUT_FILTER_OPTIONS: tuple[OptionRow, ...] = (
    ("--glob", None, None, "Only the inputs whose relative path matches (e.g. 'spk1*/*.wav').",
     {"metavar": "PATTERN"}),
    ("--min-duration min_duration_s", float, None,
     "With a manifest as IN_URI: only inputs of at least S seconds.", {"metavar": "S"}),
    ("--max-duration max_duration_s", float, None,
     "With a manifest as IN_URI: only inputs of at most S seconds.", {"metavar": "S"}),
    ("--ok-only", None, None,
     "With a manifest as IN_URI: only the inputs the scan decoded (status ok).", FLAG),
)
# fmt: on


def input_filter_options(f: F) -> F:
    """Which inputs enhance and tag take: ``--glob``, and with a manifest, a duration range and ``--ok-only``."""
    return option_table(*INPUT_FILTER_OPTIONS)(f)
