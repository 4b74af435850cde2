"""The ``batchsep`` command line: thin click shells over :mod:`batchsep.api`.

Exit status (every command):
  0  everything succeeded
  1  the command ran to the end but some files failed (see the summary / the error rows)
  2  usage error: bad option, missing or unreadable input URI
  3  fatal error: output not writable, cluster unreachable, or another error that stopped the command
  130  interrupted (Ctrl-C / SIGINT): re-run the same command to resume

The group knows each command as ``name → "module:function"`` (:data:`COMMANDS`) and imports a command's
module only when that command runs or help lists it; command modules never import this one.
"""

from __future__ import annotations

import click

import batchsep
from batchsep.cli.common import (
    EPILOG_MAIN,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    InterruptibleGroup,
)

__all__ = [
    "COMMANDS",
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "main",
]

COMMANDS = {
    "scan": "batchsep.cli.data:scan",
    "prepare": "batchsep.cli.prepare:prepare",
    "features": "batchsep.cli.data:features",
    "train": "batchsep.cli.train:train",
    "inspect": "batchsep.cli.train:inspect",
    "enhance": "batchsep.cli.enhance:enhance",
    "tag": "batchsep.cli.enhance:tag",
    "evaluate": "batchsep.cli.evaluate:evaluate",
    "report": "batchsep.cli.evaluate:report",
    "models": "batchsep.cli.models:models",
    "run": "batchsep.cli.jobs:run",
    "submit": "batchsep.cli.jobs:submit",
    "status": "batchsep.cli.jobs:status",
    "logs": "batchsep.cli.jobs:logs",
    "cancel": "batchsep.cli.jobs:cancel",
}
"""Every command, in pipeline order (``batchsep --help`` lists them so): name → ``"module:function"``."""


@click.group(
    cls=InterruptibleGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EPILOG_MAIN,
)
@click.version_option(batchsep.__version__, prog_name="batchsep")
def main() -> None:
    """batchsep: batch speech enhancement and emotion tagging for large audio corpora.

    A small job runs in this process, a larger one on an embedded local Ray, or on a cluster
    with --address (a command's --local/--ray says which).
    """


if __name__ == "__main__":  # pragma: no cover - `python -m batchsep.cli.main`
    main()
