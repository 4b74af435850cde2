"""``batchsep --help``: commands in pipeline order, summaries whole, the exit-status footer where it applies."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from batchsep.cli.common import COMMAND_ORDER
from batchsep.cli.main import main  # registers every command


def _help(*args: str) -> str:
    r = CliRunner().invoke(main, [*args, "--help"], terminal_width=100)
    assert r.exit_code == 0, r.output
    return r.output


def test_commands_are_listed_in_pipeline_order_with_whole_summaries():
    out = _help()
    section = out.split("Commands:", 1)[1]
    names = re.findall(r"^  (\w+)  ", section, flags=re.M)
    assert names == [n for n in COMMAND_ORDER if n in main.commands]
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
