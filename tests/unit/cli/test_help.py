"""``batchsep --help``: commands in pipeline order, summaries whole, the exit-status footer where it applies."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from batchsep.cli.main import COMMANDS, main


def _help(*args: str) -> str:
    r = CliRunner().invoke(main, [*args, "--help"], terminal_width=100)
    assert r.exit_code == 0, r.output
    return r.output


def test_commands_are_listed_in_pipeline_order_with_whole_summaries():
    out = _help()
    section = out.split("Commands:", 1)[1]
    names = re.findall(r"^  (\w+)  ", section, flags=re.M)
    assert names == list(COMMANDS)
    assert names[:6] == ["scan", "prepare", "features", "train", "inspect", "enhance"]
    assert "models" in names and names.index("models") < names.index("run")
    assert "..." not in section  # click's cut-off summaries
    assert "Exit status" not in out  # each command says its own


def test_no_seed_names_in_user_facing_help():
    for name in main.commands:
        assert not re.search(r"seed 00\d", _help(name)), name


@pytest.mark.parametrize(
    ("name", "per_file"),
    [("scan", True), ("enhance", True), ("evaluate", True), ("run", True), ("train", False),
     ("inspect", False), ("report", False), ("models", False), ("submit", False), ("status", False)],
)  # fmt: skip
def test_the_exit_status_footer_is_the_commands_own(name, per_file):
    text = " ".join(_help(name).split())
    assert "Exit status: 0" in text
    assert ("1 finished but some files failed" in text) is per_file


def test_help_imports_no_heavy_library_and_commands_load_on_demand():
    """`batchsep --help` imports every command module (for the summaries) but none of torch, ray, pyarrow
    or numpy (it takes well under a second); a command's module is imported when the command runs."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from batchsep.cli.main import main\n"
        "assert not any(m.startswith('batchsep.cli.enhance') for m in sys.modules)\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'ray', 'pyarrow', 'numpy') if m in sys.modules))\n"
        "print('batchsep.cli.enhance' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stdout + out.stderr


def test_lazy_commands_keep_order_and_take_added_commands():
    from batchsep.cli.common import LazyCommands

    commands = LazyCommands(
        {"models": "batchsep.cli.models:models", "logs": "batchsep.cli.jobs:logs"}
    )
    assert list(commands) == ["models", "logs"] and len(commands) == 2
    extra = click.Command("extra")
    commands["extra"] = extra
    assert list(commands) == ["models", "logs", "extra"] and commands["extra"] is extra
    assert commands["models"].name == "models"
    del commands["extra"], commands["logs"]
    assert list(commands) == ["models"] and commands.get("nope") is None
    with pytest.raises(TypeError, match="not a click command"):
        LazyCommands({"x": "batchsep.cli.main:COMMANDS"})["x"]
