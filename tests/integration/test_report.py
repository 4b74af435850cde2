"""``batchsep report`` on evaluated runs: per-system sections, stale files, input and output errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchsep.cli.main import EXIT_OK, EXIT_USAGE, main
from batchsep.pipeline.evaluate.driver import evaluate
from batchsep.pipeline.report.driver import report

EXIT_FATAL = 3

_spec = importlib.util.spec_from_file_location(
    "_evaluate_tests", Path(__file__).with_name("test_evaluate.py")
)
assert _spec is not None and _spec.loader is not None
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
crafted_run = _mod.crafted_run


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = crafted_run(tmp_path / "a")
    b = crafted_run(tmp_path / "b", snrs=(-5.0, 0.0, 2.0))
    evaluate(a, references=str(tmp_path / "a" / "clean"), metrics=["sdr", "si_sdr"])
    evaluate(b, references=str(tmp_path / "b" / "clean"), metrics=["si_sdr"])
    return a, b


def test_examples_and_emotion_per_system(tmp_path: Path, two_runs: tuple[str, str]) -> None:
    a, b = two_runs
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", a, b, "--out", str(out), "--name", "A", "--name", "B"])
    assert r.exit_code == EXIT_OK, r.output
    assert f"wrote report.md, index.html and 7 plots to {out}" in r.output
    html = (out / "index.html").read_text()
    examples = html.split('id="examples"', 1)[1].split("</section>", 1)[0]
    assert examples.count("<h3>") == 3 and "SDRi" not in examples.split("<h3>")[1].split("</h3>")[0]
    assert examples.count("<span>enhanced · A (SDRi ") == 3  # A has SDRi ...
    assert examples.count("<span>enhanced · B (SI-SDRi ") == 3  # ... B was scored with si_sdr only
    assert examples.count("<span>noisy</span>") == 3 and examples.count("<span>clean</span>") == 3
    md = (out / "report.md").read_text()
    emotion = md.split("## Emotion tagging", 1)[1]
    assert "### A" in emotion and "### B" in emotion and "| System | Accuracy | UAR |" in emotion


def test_stale_plots_are_removed_but_not_other_files(
    tmp_path: Path, two_runs: tuple[str, str]
) -> None:
    a, _ = two_runs
    out = tmp_path / "rep"
    report([a], str(out))
    assert (out / "confusion.png").exists() and (out / "spectrograms_2.png").exists()
    (out / "my_notes.txt").write_text("mine")
    (out / "my_plot.png").write_bytes(b"mine")
    (out / "confusion_3.png").write_bytes(b"an earlier report's")
    no_emotion = crafted_run(tmp_path, names=("x.wav", "y.wav", "z.wav"))
    evaluate(no_emotion, references=str(tmp_path / "clean"), metrics=["si_sdr"])
    report([no_emotion], str(out), n_examples=1)
    assert not (out / "confusion.png").exists() and not (out / "confusion_3.png").exists()
    assert not (out / "spectrograms_2.png").exists() and (out / "spectrograms_0.png").exists()
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "my_plot.png").exists()


def test_input_errors_leave_no_output_folder(tmp_path: Path, two_runs: tuple[str, str]) -> None:
    a, _ = two_runs
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["report", str(tmp_path / "missing_dir"), "--out", str(out)])
    assert r.exit_code == EXIT_USAGE and "no such run folder" in r.output, r.output
    assert not out.exists()
    (tmp_path / "not_evaluated").mkdir()
    r = CliRunner().invoke(main, ["report", a, str(tmp_path / "not_evaluated"), "--out", str(out)])
    assert r.exit_code == EXIT_USAGE and "run batchsep evaluate first" in r.output, r.output
    assert not out.exists()


def test_the_same_run_twice_is_a_usage_error(tmp_path: Path, two_runs: tuple[str, str]) -> None:
    a, _ = two_runs
    r = CliRunner().invoke(main, ["report", a, a + "/", "--out", str(tmp_path / "r")])
    assert r.exit_code == EXIT_USAGE and "given twice" in r.output and a in r.output, r.output
    assert not (tmp_path / "r").exists()


def test_unwritable_output_is_fatal(tmp_path: Path, two_runs: tuple[str, str]) -> None:
    a, _ = two_runs
    r = CliRunner().invoke(main, ["report", a, "--out", "/proc/nope"])
    assert r.exit_code == EXIT_FATAL and "cannot" in r.output, r.output
    (tmp_path / "file").write_text("x")
    r = CliRunner().invoke(main, ["report", a, "--out", str(tmp_path / "file")])
    assert r.exit_code == EXIT_FATAL and "is a file" in r.output, r.output
