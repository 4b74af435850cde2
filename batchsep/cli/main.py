"""The ``batchsep`` command line: thin click shells over :mod:`batchsep.api`.

Exit status (every command):
  0  everything succeeded
  1  the command ran to the end but some files failed (see the summary / the error rows)
  2  usage error: bad option, missing or unreadable input URI
  3  fatal error: output not writable, cluster unreachable, or another error that stopped the command
  130  interrupted (Ctrl-C / SIGINT): re-run the same command to resume
"""

from __future__ import annotations

import click

import batchsep
import batchsep.api
from batchsep.cli.common import (
    EPILOG_MAIN,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    InterruptibleGroup,
)

__all__ = ["EXIT_FATAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "main"]


@click.group(
    cls=InterruptibleGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EPILOG_MAIN,
)
@click.version_option(batchsep.__version__, prog_name="batchsep")
def main() -> None:
    """batchsep: batch speech enhancement and emotion tagging for large audio corpora.

    A small job runs in this process, a larger one on an embedded local Ray, or on a cluster
    with --address (a command's --local/--ray says which).
    """


from batchsep.cli import data as _data_commands  # noqa: E402, F401  (scan, features)
from batchsep.cli import enhance as _enhance_commands  # noqa: E402, F401  (registers enhance, tag)
from batchsep.cli import evaluate as _evaluate_commands  # noqa: E402, F401  (evaluate, report)
from batchsep.cli import jobs as _jobs_commands  # noqa: E402, F401  (run, submit, status, logs, cancel)
from batchsep.cli import models as _models_commands  # noqa: E402, F401  (models)
from batchsep.cli import prepare as _prepare_commands  # noqa: E402, F401  (prepare)
from batchsep.cli import train as _train_commands  # noqa: E402, F401  (train, inspect)

if __name__ == "__main__":  # pragma: no cover - `python -m batchsep.cli.main`
    from batchsep.cli.main import main as _main  # the imported module: where commands registered

    _main()
