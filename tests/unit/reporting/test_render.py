"""render_report: the files, self-containment, content of tables, audio, validation."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from batchsep.errors import ParameterError
from batchsep.reporting import encode_wav, render_report

Runs = list[tuple[str, pd.DataFrame, dict[str, Any]]]


def is_png(data: bytes) -> bool:
    return data[:8] == b"\x89PNG\r\n\x1a\n"


def attributes(html: str, name: str) -> list[str]:
    return re.findall(rf'\s{name}="([^"]*)"', html)


def small_table(runs: Runs) -> pd.DataFrame:
    """4 rows, no breakdown columns: placeholder figures, so the render is quick."""
    return runs[0][1][["model", "sdr_i"]].head(4)


def test_files_and_self_contained_html(full_report: dict[str, bytes]) -> None:
    files = full_report
    assert set(files) == {
        "report.md",
        "index.html",
        "sdri_vs_snr.png",
        "sdri_by_noise.png",
        "per_speaker.png",
        "confusion.png",
        "spectrograms_0.png",
        "spectrograms_1.png",
    }
    assert all(is_png(v) for k, v in files.items() if k.endswith(".png"))
    html = files["index.html"].decode("utf-8")
    srcs = attributes(html, "src")
    assert len(srcs) == 6 + 6  # 6 images, 2 x 3 audio players
    assert all(s.startswith(("data:image/png;base64,", "data:audio/wav;base64,")) for s in srcs)
    assert all(h.startswith("#") for h in attributes(html, "href"))
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "url(" not in html  # no CSS fetches either
    # every PNG file is embedded verbatim
    for name in ("sdri_vs_snr.png", "confusion.png", "spectrograms_1.png"):
        assert base64.b64encode(files[name]).decode() in html


def test_summary_numbers_match_the_data(full_report: dict[str, bytes], runs: Runs) -> None:
    html, md = full_report["index.html"].decode(), full_report["report.md"].decode()
    for name, df, _ in runs:  # the same fake runs the report was made from
        mean = f"{df['sdr_i'].mean():.2f}"
        median = f"{df['si_sdr_i'].median():.2f}"
        xrt = f"{df['duration_s'].sum() / df['seconds'].sum():.1f}×"
        for text in (html, md):
            row = next(line for line in text.splitlines() if name in line and xrt in line)
            assert mean in row and median in row
    assert "| System | Files | SDRi mean (dB)" in md
    assert "**" in md  # best values marked
    assert "![SDRi per input-SNR bin (mean ± std; no bar where n < 2).](sdri_vs_snr.png)" in md
    # emotion: 64 items, every 5th (13) shifted to the wrong class -> 51/64 right
    assert "**Accuracy** 79.7 %" in md and "![emotion confusion matrix](confusion.png)" in md


def test_provenance_and_escaping(runs: Runs) -> None:
    job = runs[0][2]
    evil = [("<script>alert(1)</script>", small_table(runs), {**job, "note": "a|b <i>"})]
    files = render_report(evil, title="R&D <report>")
    html, md = files["index.html"].decode(), files["report.md"].decode()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<title>R&amp;D &lt;report&gt;</title>" in html
    assert "a|b &lt;i&gt;" in html and "a\\|b <i>" in md
    assert "versions.torch" in html and "2.13.0" in md  # nested job keys flattened
    assert "git_revision" in md


def test_multi_model_run_and_missing_columns() -> None:
    df = pd.DataFrame(
        {
            "model": ["a", "a", "b"],
            "sdr_i": [1.0, 3.0, 5.0],
            "duration_s": [1.0, 1.0, 2.0],
            "seconds": [0.5, 0.5, 1.0],
        }
    )
    files = render_report([("run1", df, None)])
    html, md = files["index.html"].decode(), files["report.md"].decode()
    assert "run1 / a" in html and "run1 / b" in html
    assert "| run1 / a | 2 | 2.00 | 2.00 | – |" in md  # no SI-SDRi column: "–"
    assert "No job record was given" in md
    assert "Breakdowns" not in html  # no SNR / noise / speaker columns
    assert "confusion.png" not in files and "Emotion" not in html  # no emotion given
    assert not {"sdri_vs_snr.png", "sdri_by_noise.png", "per_speaker.png"} & set(files)
    assert "Figures left out" in md and "no input SNR known for these files" in html


def test_figures_without_data_are_left_out(runs: Runs) -> None:
    """Input SNR known, noise class and speaker not: only the SNR figure, and one line why."""
    df = runs[0][1][["model", "sdr_i", "input_snr", "duration_s", "seconds"]].head(12).copy()
    df["noise_class"] = None  # present but never known (a plain clean folder as references)
    files = render_report([("r", df, None)])
    html, md = files["index.html"].decode(), files["report.md"].decode()
    assert "sdri_vs_snr.png" in files
    assert not {"sdri_by_noise.png", "per_speaker.png"} & set(files)
    assert "](sdri_vs_snr.png)" in md and "sdri_by_noise" not in md and "per_speaker" not in md
    line = (
        "Figures left out: SDRi by noise class (no noise class known for these files); "
        "per-speaker spread (no speaker known for these files); "
        "DNSMOS input → output (no DNSMOS scores: evaluate with dnsmos); "
        "emotion confusion matrix (no file has both a true and a predicted emotion)."
    )
    assert line in md and line in html
    assert html.count("data:image/png;base64,") == 1


def test_examples_audio_round_trip_and_cropping(
    runs: Runs, example: Callable[..., dict[str, Any]]
) -> None:
    ex = example(seed=3, seconds=1.0)
    ex["enhanced"] = ex["enhanced"] * 8.0  # clips: the example is scaled down, with a note
    files = render_report([("r", small_table(runs), None)], [ex], max_example_seconds=0.5)
    html = files["index.html"].decode()
    wavs = [
        base64.b64decode(s.split(",", 1)[1]) for s in attributes(html, "src") if "audio/wav" in s
    ]
    assert len(wavs) == 3
    noisy, sr = sf.read(io.BytesIO(wavs[0]))
    assert sr == 16000 and noisy.shape == (8000,)
    gain = 0.99 / np.max(np.abs(ex["enhanced"][:8000]))
    np.testing.assert_allclose(noisy, ex["noisy"][:8000] * gain, atol=2 / 32768)
    assert "First 0.5 s of 1.0 s shown." in html and "Scaled by" in html


def test_encode_wav() -> None:
    x = np.linspace(-1.5, 1.5, 1000)
    y, sr = sf.read(io.BytesIO(encode_wav(x, 8000)))
    assert sr == 8000 and y.shape == (1000,)
    np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=1 / 32768 + 1e-9)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda r, e: render_report([]), "non-empty list"),
        (lambda r, e: render_report([r[0], r[0]]), "appears twice"),
        (lambda r, e: render_report([("x", {"a": 1}, None)]), "must be a pandas DataFrame"),
        (lambda r, e: render_report([("", r[0][1], None)]), "non-empty string"),
        (
            lambda r, e: render_report(r, [{"noisy": np.ones(10)}]),
            "lacks keys \\['enhanced', 'sr'\\]",
        ),
        (lambda r, e: render_report(r, [{**e(), "sr": 0}]), "examples\\[0\\].sr=0"),
        (lambda r, e: render_report(r, emotion=(["happy"],)), "y_true, y_pred, labels"),
        (lambda r, e: render_report(r, emotion=(["happy"], ["glad"], None)), "'glad'"),
        (lambda r, e: render_report(r, max_example_seconds=0), "max_example_seconds=0"),
    ],
)
def test_invalid_input(
    runs: Runs, example: Callable[..., dict[str, Any]], call: Callable, match: str
) -> None:
    with pytest.raises(ParameterError, match=match):
        call(runs, example)
