"""The options that say how a command runs are one mechanism (``cli.common.ray_options``)."""

from __future__ import annotations

import click
import pytest

from batchsep.cli.main import main  # registers every command

RUNNING_COMMANDS = ["scan", "prepare", "features", "enhance", "tag", "evaluate", "train"]


def _options(name: str) -> dict[str, click.Option]:
    command = main.commands[name]
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name}


@pytest.mark.parametrize("name", RUNNING_COMMANDS)
def test_every_running_command_has_the_same_ray_options(name):
    opts = _options(name)
    reference = _options("scan")
    assert opts["address"].help == reference["address"].help
    assert opts["local"].is_flag
    assert isinstance(opts["workers"].type, click.IntRange) and opts["workers"].type.min == 1
    if "show_errors" in opts:
        show_errors = opts["show_errors"]
        assert isinstance(show_errors.type, click.IntRange)
        assert show_errors.default == 10 and show_errors.type.min == 0


def test_show_errors_rejects_negative_counts(tmp_path):
    from click.testing import CliRunner

    r = CliRunner().invoke(
        main, ["scan", str(tmp_path), "--out", str(tmp_path / "o"), "--show-errors", "-1"]
    )
    assert r.exit_code == 2 and "-1 is not in the range x>=0" in r.output


@pytest.mark.parametrize("value", ["loud", "5", "-100"])
def test_enhance_input_level_usage_errors(tmp_path, value):
    from click.testing import CliRunner

    r = CliRunner().invoke(
        main, ["enhance", str(tmp_path), str(tmp_path / "o"), "--input-level", value]
    )
    assert r.exit_code == 2 and "--input-level" in r.output and "'off'" in r.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [([], "model"), (["--input-level", "MODEL"], "model"), (["--input-level", "off"], None),
     (["--input-level", "-30"], -30.0)],
)  # fmt: skip
def test_enhance_input_level_reaches_the_api(tmp_path, monkeypatch, args, expected):
    import batchsep.api
    from batchsep.errors import BatchsepError

    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise BatchsepError("stopped after reading the options")

    monkeypatch.setattr(batchsep.api, "enhance", stop)
    (tmp_path / "in").mkdir()
    from click.testing import CliRunner

    r = CliRunner().invoke(
        main,
        [
            "enhance",
            str(tmp_path / "in"),
            str(tmp_path / "o"),
            *args,
            "--no-emotion",
        ],
    )
    assert "stopped after reading the options" in r.output
    assert seen["input_level_db"] == expected


def test_ctrl_c_exits_130_with_a_resume_hint(monkeypatch):
    """Ctrl-C is not click's "Aborted!" (exit 1 = "finished, some files failed") but exit 130."""
    from click.testing import CliRunner

    from batchsep.cli.common import EXIT_INTERRUPTED

    @click.command("interrupt-test", hidden=True)
    def interrupt_test() -> None:
        raise KeyboardInterrupt

    monkeypatch.setitem(main.commands, "interrupt-test", interrupt_test)
    r = CliRunner().invoke(main, ["interrupt-test"])
    assert r.exit_code == EXIT_INTERRUPTED == 130
    assert "interrupted: re-run the same command to resume" in r.stderr
    assert "Aborted!" not in r.output


def test_help_lists_the_interrupted_exit_code():
    from click.testing import CliRunner

    r = CliRunner().invoke(main, ["enhance", "--help"])
    assert r.exit_code == 0 and "130 interrupted" in r.output
    r = CliRunner().invoke(main, ["--help"])  # each command says its own exit status
    assert r.exit_code == 0 and "gives a command's options and its exit status" in r.output


def test_every_option_of_every_command_says_what_it_does():
    """`--help` explains each option: none is listed without a help text."""
    missing = [
        f"{name} {param.opts[0]}"
        for name, command in main.commands.items()
        for param in command.params
        if isinstance(param, click.Option) and not (param.help or "").strip()
    ]
    assert not missing, f"options without help: {missing}"
