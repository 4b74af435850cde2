"""The report's per-file table (worst first, linked to examples), input → output tables, why each
example was chosen, player labels that do not repeat "enhanced", and relative provenance paths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from batchsep.pipeline.report.driver import pick_examples, relative_paths
from batchsep.reporting import render_report
from batchsep.reporting.files import files_table, in_out, rank_metric
from batchsep.reporting.render import enhanced_label


def _dnsmos_run(n: int = 5) -> pd.DataFrame:
    ovrl = np.array([2.5, 1.2, 3.1, np.nan, 2.0])[:n]
    return pd.DataFrame(
        {
            "rel_path": [f"f{i}.wav" for i in range(n)],
            "model": "m",
            "dnsmos_ovrl": ovrl,
            "dnsmos_ovrl_in": ovrl - 0.5,
            "dnsmos_sig": ovrl,
            "dnsmos_sig_in": ovrl - 0.25,
            "emotion_pred": ["sad", "angry", None, "sad", "calm"][:n],
            "error": [None, None, None, "cannot read audio: broken", None][:n],
        }
    )


def _rank(table: pd.DataFrame) -> tuple[str, str, str]:
    ranked = rank_metric(table)
    assert ranked is not None
    return ranked


def test_rank_metric_prefers_sdri_then_si_sdri_then_dnsmos() -> None:
    assert _rank(pd.DataFrame({"sdr_i": [1.0], "dnsmos_ovrl": [2.0]}))[0] == "sdr_i"
    assert _rank(pd.DataFrame({"sdr_i": [np.nan], "si_sdr_i": [1.0]}))[0] == "si_sdr_i"
    assert _rank(_dnsmos_run())[:2] == ("dnsmos_ovrl", "DNSMOS OVRL")
    assert rank_metric(pd.DataFrame({"pesq": [1.0]})) is None


def test_files_table_is_worst_first_with_input_next_to_output_and_links() -> None:
    df = _dnsmos_run().assign(system="run")
    table, note = files_table(df, ["run"], {"f1.wav": ("example-1", "example 1")})
    assert table is not None
    assert table.headers == [
        "File", "DNSMOS OVRL: input → output", "DNSMOS SIG: input → output", "Emotion tag",
        "Listen", "Not scored because",
    ]  # fmt: skip
    assert [r[0] for r in table.rows] == ["f1.wav", "f4.wav", "f0.wav", "f2.wav", "f3.wav"]
    assert table.rows[0][1:5] == [
        "0.70 → 1.20 (+0.50)",
        "0.95 → 1.20 (+0.25)",
        "angry",
        "example 1",
    ]
    assert table.links == {(0, 4): "example-1"}
    assert table.rows[-1][1] == "–" and table.rows[-1][-1] == "cannot read audio: broken"
    assert table.rows[3][3] == "–"  # no tag
    assert note.startswith("Files worst first by DNSMOS OVRL of the enhanced output;")
    many, note = files_table(df, ["run"], max_rows=2)
    assert many is not None and len(many.rows) == 2 and "The 2 worst of 5 rows are shown" in note
    assert "Listen" not in many.headers


def test_in_out_cells() -> None:
    assert in_out(0.5, 0.75, 3) == "0.500 → 0.750 (+0.250)"
    assert in_out(None, 2.0, 2) == "2.00"
    assert in_out(1.0, float("nan"), 2) == "–"
    assert in_out(0.834, 0.8338, 3) == "0.834 → 0.834 (+0.000)"  # never "-0.000"


def test_enhanced_label_does_not_repeat_enhanced() -> None:
    assert enhanced_label("run (DNSMOS OVRL 2.42)") == "enhanced · run (DNSMOS OVRL 2.42)"
    assert enhanced_label("enhanced (DNSMOS OVRL 2.42)") == "enhanced (DNSMOS OVRL 2.42)"
    assert enhanced_label("enhanced") == "enhanced"
    assert enhanced_label("enhanced_v2") == "enhanced · enhanced_v2"


def test_report_of_a_reference_free_run(example: Callable[..., dict[str, Any]]) -> None:
    """A run folder called "enhanced", DNSMOS only: the per-file table links the example, which says
    why it was chosen; labels say "enhanced" once; no SDR/PESQ wording; provenance note."""
    ex = example(seconds=0.5)
    ex.update(
        enhanced={"enhanced (DNSMOS OVRL 1.20)": ex["enhanced"]}, clean=None, title="f1.wav",
        rel_path="f1.wav", why="Worst DNSMOS OVRL of the enhanced output of the 4 files of enhanced",
        noisy_label="noisy (DNSMOS OVRL 0.70)",
    )  # fmt: skip
    files = render_report(
        [("enhanced", _dnsmos_run(), {"spec": {"out_uri": "../enhanced"}})],
        [ex],
        provenance_note="Local paths are relative to the folder of this report.",
    )
    md, html = files["report.md"].decode(), files["index.html"].decode()
    assert "enhanced · enhanced" not in html and "enhanced · enhanced" not in md
    assert "<span>enhanced (DNSMOS OVRL 1.20)</span>" in html
    assert "<span>noisy (DNSMOS OVRL 0.70)</span>" in html
    section = html.split('id="files"', 1)[1].split("</section>", 1)[0]
    assert '<td><a href="#example-1">example 1</a></td>' in section
    assert section.index("f1.wav") < section.index("f4.wav") < section.index("f0.wav")
    examples = html.split('id="examples"', 1)[1].split("</section>", 1)[0]
    assert (
        '<div class="example" id="example-1"><h3>f1.wav</h3><p class="why">Worst DNSMOS' in examples
    )
    assert "| f1.wav | 0.70 → 1.20 (+0.50) |" in md and "[example 1](#example-1)" in md
    assert '<a id="example-1"></a>' in md and "*Worst DNSMOS OVRL" in md
    assert "PESQ: wide-band" not in md and "512-tap" not in html
    assert "Local paths are relative to the folder of this report." in md
    assert "## Emotion tags" in md and "| sad | 2 (50.0 %) |" in md


def test_reference_metrics_get_an_input_to_output_table() -> None:
    df = pd.DataFrame(
        {"rel_path": ["a", "b"], "model": "m", "sdr_i": [3.0, 5.0], "si_sdr": [10.0, 12.0],
         "si_sdr_in": [6.0, 7.0], "pesq": [2.0, 3.0], "pesq_in": [1.5, 2.0],
         "stoi": [0.9, 0.8], "stoi_in": [0.85, 0.7]}
    )  # fmt: skip
    md = render_report([("A", df, None)])["report.md"].decode()
    io_md = md.split("## Input → output (PESQ, STOI, SI-SDR)", 1)[1].split("##", 1)[0]
    assert (
        "| A | 2 | 1.75 → 2.50 (+0.75) | 0.775 → 0.850 (+0.075) | 6.50 → 11.00 (+4.50) |" in io_md
    )
    files = md.split("## Per-file results", 1)[1].split("##", 1)[0]
    assert files.index("| a |") < files.index("| b |")  # SDRi 3 (worst) first
    assert "| a | 3.00 | 1.50 → 2.00 (+0.50) | 0.850 → 0.900 (+0.050) |" in files
    assert "512-tap" in md  # the reference metrics are explained where they are shown


def test_pick_examples_say_why_they_were_chosen(tmp_path: Path) -> None:
    rows = []
    for i, ovrl in enumerate([2.5, 1.2, 3.1, 2.0, np.nan]):
        x = np.full(1600, 0.01 * (i + 1), np.float32)
        for kind in ("in", "out"):
            sf.write(tmp_path / f"{kind}{i}.wav", x, 16000)
        rows.append(
            {"rel_path": f"f{i}.wav", "noisy_uri": str(tmp_path / f"in{i}.wav"),
             "enhanced_uri": str(tmp_path / f"out{i}.wav"), "clean_uri": None, "model": "m",
             "dnsmos_ovrl": ovrl, "dnsmos_ovrl_in": ovrl - 1}
        )  # fmt: skip
    examples = pick_examples([("enhanced", pd.DataFrame(rows))], 3)
    assert [e["rel_path"] for e in examples] == ["f1.wav", "f0.wav", "f2.wav"]  # NaN not picked
    assert [e["why"] for e in examples] == [
        "Worst DNSMOS OVRL of the enhanced output of the 4 files of enhanced (1.20)",
        "Median DNSMOS OVRL of the enhanced output of the 4 files of enhanced (2.50)",
        "Best DNSMOS OVRL of the enhanced output of the 4 files of enhanced (3.10)",
    ]
    assert list(examples[0]["enhanced"]) == ["enhanced (DNSMOS OVRL 1.20)"]
    assert examples[0]["noisy_label"] == "noisy (DNSMOS OVRL 0.20)"


def test_relative_paths_in_provenance() -> None:
    job = {
        "stages": {"enhance": {"spec": {"in_uri": "/data/corpus/noisy", "out_uri": "/data/runs/a",
                                        "model": "default", "skipped": ["/data/runs/a/x.txt"]}}},
        "s3": "s3://bucket/runs/a", "elsewhere": "/srv/other", "file": "file:///data/runs/b",
    }  # fmt: skip
    out = relative_paths(job, "/data/reports/r1")
    spec = out["stages"]["enhance"]["spec"]
    assert (spec["in_uri"], spec["out_uri"]) == ("../../corpus/noisy", "../../runs/a")
    assert spec["skipped"] == ["../../runs/a/x.txt"] and spec["model"] == "default"
    assert out["s3"] == "s3://bucket/runs/a" and out["file"] == "../../runs/b"
    assert out["elsewhere"] == "/srv/other"  # only the root in common: kept absolute
