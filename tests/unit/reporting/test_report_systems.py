"""render_report with several systems: emotion per system, examples per system, counts, labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from batchsep.reporting import plots, render_report


def _tiny(**columns: Any) -> pd.DataFrame:
    return pd.DataFrame({"model": "m", **columns})


LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def test_emotion_is_reported_per_system() -> None:
    """Two tagged systems get one labelled block each (accuracy, UAR, items, confusion matrix)."""
    y_true = [LABELS[i % 8] for i in range(64)]
    y_pred = [LABELS[(i + (i % 5 == 0)) % 8] for i in range(64)]  # 51/64 right
    perfect = (y_true, list(y_true), None)
    runs = [("A", _tiny(sdr_i=[1.0]), None), ("B", _tiny(sdr_i=[2.0]), None)]
    files = render_report(runs, emotion={"A": (y_true, y_pred, None), "B": perfect})
    md, html = files["report.md"].decode(), files["index.html"].decode()
    assert {"confusion_0.png", "confusion_1.png"} <= set(files) and "confusion.png" not in files
    emotion_md = md.split("## Emotion tagging", 1)[1]
    assert "### A" in emotion_md and "### B" in emotion_md
    assert "| A | 79.7 % |" in emotion_md and "| B | 100.0 % |" in emotion_md  # side by side
    assert "![A: emotion confusion matrix](confusion_0.png)" in emotion_md
    assert "![B: emotion confusion matrix](confusion_1.png)" in emotion_md
    assert "<h3>A</h3>" in html and "<h3>B</h3>" in html


def test_examples_show_every_system_labelled(example: Callable[..., dict[str, Any]]) -> None:
    ex = example(seconds=0.5)
    ex["enhanced"] = {"A (SDRi +9.0 dB)": ex["enhanced"], "B (SDRi +3.0 dB)": 0.5 * ex["noisy"]}
    ex["title"] = "utt0000.wav"
    runs = [("A", _tiny(sdr_i=[9.0]), None), ("B", _tiny(sdr_i=[3.0]), None)]
    html = render_report(runs, [ex])["index.html"].decode()
    section = html.split('id="examples"', 1)[1].split("</section>", 1)[0]
    assert "<h3>utt0000.wav</h3>" in section  # no single run's SDRi in the heading
    for label in ("noisy", "enhanced · A (SDRi +9.0 dB)", "enhanced · B (SDRi +3.0 dB)", "clean"):
        assert f"<span>{label}</span>" in section, label
    assert section.count("<audio") == 4


def test_scored_count_and_speed_label() -> None:
    """Rows without any metric value (not scored) are not counted as scored; the speed column
    says it is per-worker processing speed, and marks runs that also tagged emotions."""
    scored = _tiny(sdr_i=[1.0, 2.0], si_sdr_i=[1.0, 2.0], duration_s=[2.0, 2.0], seconds=[1.0, 1.0])
    tag = pd.DataFrame(
        {
            "model": "emo",
            "sdr_i": [np.nan] * 3,
            "error": ["no clean reference"] * 3,
            "emotion_true": ["sad"] * 3,
            "emotion_pred": ["sad", "sad", "calm"],
            "duration_s": [1.0] * 3,
            "seconds": [0.5] * 3,
        }
    )
    files = render_report([("runA", scored, None), ("tagT", tag, None)])
    md = files["report.md"].decode()
    assert "2 scored files · 3 of 5 files not scored (no metric value)" in md
    assert "Processing speed per worker (× real time)" in md
    assert "2.0× †" in md and "†: this run also tagged emotions" in md
    assert "start-up and scheduling excluded" in md and "End to end, last run" in md


def test_breakdowns_fall_back_to_si_sdri() -> None:
    """A run scored with --metrics si_sdr has no SDRi: the breakdowns show SI-SDRi, labelled."""
    df = _tiny(
        si_sdr_i=[4.0, 6.0, 8.0],
        input_snr=[0.0, 0.0, 7.0],
        noise_class=["babble", "babble", "car"],
        speaker=["s1", "s2", "s2"],
    )
    other = _tiny(sdr_i=[1.0], si_sdr_i=[np.nan], noise_class=["car"])
    files = render_report([("si", df, None), ("sdr", other, None)])
    md = files["report.md"].decode()
    assert "## By noise class — mean SDRi (SI-SDRi for si: no SDRi) (dB)" in md
    assert "| babble | 5.00 (n=2) | – |" in md
    assert "| car | 8.00 (n=1) | 1.00 (n=1) |" in md
    assert {"sdri_vs_snr.png", "sdri_by_noise.png", "per_speaker.png"} <= set(files)
    only_si = render_report([("si", df, None)])["report.md"].decode()
    assert (
        "## By input SNR — mean SI-SDRi (dB)" in only_si and "| 0 to 5 dB | 5.00 (n=2) |" in only_si
    )
    # SI-SDRi mean: only "si" has a value, so nothing is bolded as "best" in that column
    row = next(line for line in md.splitlines() if line.startswith("| si |"))
    assert row.split("|")[5].strip() == "6.00"  # SI-SDRi mean, not bold


def test_no_error_bar_for_a_single_value() -> None:
    stats = pd.DataFrame({"n": [1, 2, 3], "std": [np.nan, 0.5, 1.0]})
    bars = plots.error_bars(stats)
    assert np.isnan(bars[0]) and list(bars[1:]) == [0.5, 1.0]
    df = _tiny(sdr_i=[1.0, 2.0, 4.0], noise_class=["a", "b", "b"])
    df["system"] = "x"
    assert plots.plot_metric_by_noise(df)[:4] == b"\x89PNG"


def test_example_labels_fall_back_to_si_sdri():
    from batchsep.pipeline.report.driver import _improvement_label

    assert _improvement_label({"sdr_i": 1.04, "si_sdr_i": 2.0}) == " (SDRi +1.0 dB)"
    assert _improvement_label({"sdr_i": float("nan"), "si_sdr_i": -2.0}) == " (SI-SDRi -2.0 dB)"
    assert _improvement_label({"si_sdr_i": None}) == ""


def test_end_to_end_speed_comes_from_the_runs_last_enhance() -> None:
    """A run whose job.json records its last enhance (audio and wall seconds) shows its end-to-end speed;
    one without the record shows "–"."""
    job = {"stages": {"enhance": {"spec": {}, "last_run": {"wall_s": 20.0, "audio_s": 900.0}}}}
    runs = [("A", _tiny(sdr_i=[1.0]), job), ("B", _tiny(sdr_i=[2.0]), None)]
    md = render_report(runs)["report.md"].decode()
    header = next(line for line in md.splitlines() if line.startswith("| System |"))
    assert header.rstrip(" |").endswith("End to end, last run (× real time)")
    row_a = next(line for line in md.splitlines() if line.startswith("| A |"))
    row_b = next(line for line in md.splitlines() if line.startswith("| B |"))
    assert row_a.rstrip(" |").endswith("45.0×") and row_b.rstrip(" |").endswith("–")


def test_values_equal_as_shown_are_all_best() -> None:
    """Two systems whose means differ only below the shown decimals are both bold, not just the larger."""
    runs = [("A", _tiny(sdr_i=[2.0700001]), None), ("B", _tiny(sdr_i=[2.07]), None)]
    md = render_report(runs)["report.md"].decode()
    assert "| A | 1 | **2.07** |" in md and "| B | 1 | **2.07** |" in md
