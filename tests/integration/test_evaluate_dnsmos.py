"""Reference-free evaluation: DNSMOS rows without references, both kinds with them, the report's
DNSMOS table and emotion tag distribution, and the message when the zoo extra is missing."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from parts_helpers import read_parts

from batchsep.cli.main import EXIT_OK, EXIT_USAGE, main
from batchsep.evaluation import dnsmos as dn

_spec = importlib.util.spec_from_file_location(
    "_evaluate_tests", Path(__file__).with_name("test_evaluate.py")
)
assert _spec is not None and _spec.loader is not None
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
crafted_run = _mod.crafted_run

needs_dnsmos = pytest.mark.skipif(
    not dn.dnsmos_available(), reason="DNSMOS needs the zoo extra: pip install 'batchsep[zoo]'"
)
DNSMOS_OUT = ["dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"]


def _metrics(run: str):
    return read_parts(run + "/metrics").to_pandas().set_index("rel_path")


@needs_dnsmos
@pytest.mark.slow
def test_without_references_scores_dnsmos_only_and_reports_it(tmp_path):
    run = crafted_run(tmp_path)  # 3 files, one RAVDESS-named and tagged "angry"
    r = CliRunner().invoke(main, ["evaluate", run, "--local"])
    assert r.exit_code == EXIT_OK, r.output
    assert f"no clean references found for {run}: scoring DNSMOS only" in r.output
    assert "scored 3/3 files (dnsmos_ovrl " in r.output
    df = _metrics(run)
    for col in DNSMOS_OUT:
        assert np.isfinite(df[col]).all() and np.isfinite(df[f"{col}_in"]).all()
        np.testing.assert_allclose(df[f"{col}_i"], df[col] - df[f"{col}_in"])
        assert df[col].between(1, 5).all()
    assert df["error"].isna().all() and df["dnsmos_error"].isna().all()
    assert df["sdr"].isna().all() and df["clean_uri"].isna().all()
    job = json.loads((tmp_path / "run" / "job.json").read_text())
    assert job["stages"]["evaluate"]["spec"]["metrics"] == ["dnsmos"]
    prov = job["stages"]["evaluate"]["spec"]["dnsmos"]
    assert (prov["window_s"], prov["hop_s"], prov["threads"]) == (9.01, 1.0, 1) and prov[
        "speechmos"
    ]

    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", run, "--out", str(out), "--name", "X"])
    assert r.exit_code == EXIT_OK, r.output
    md, html = (out / "report.md").read_text(), (out / "index.html").read_text()
    assert (out / "dnsmos.png").exists() and not (out / "sdri_vs_snr.png").exists()
    dnsmos = md.split("## Reference-free quality (DNSMOS)", 1)[1].split("##", 1)[0]
    ovrl, ovrl_in = df["dnsmos_ovrl"].mean(), df["dnsmos_ovrl_in"].mean()
    assert "| X | 3 | " in dnsmos
    assert f"| {ovrl_in:.2f} → {ovrl:.2f} ({ovrl - ovrl_in:+.2f}) |" in dnsmos, dnsmos
    assert "SDRi, SI-SDRi, PESQ and STOI are left out: no run was scored against clean" in md
    assert "SDRi mean" not in md and "| DNSMOS OVRL mean |" in md
    assert "SDRi by input SNR (no SDR or SI-SDR improvement" in md
    tags = md.split("## Emotion tags", 1)[1].split("##", 1)[0]
    assert "| angry | 1 (100.0 %) |" in tags and "| Tagged files | 1 |" in tags
    assert 'id="dnsmos"' in html and 'id="emotion-tags"' in html
    assert "DNSMOS OVRL" in html.split('id="summary"', 1)[1].split("</section>", 1)[0]


@needs_dnsmos
@pytest.mark.slow
def test_with_references_dnsmos_is_added_to_the_reference_metrics(tmp_path):
    run = crafted_run(tmp_path, names=("a.wav", "b.wav", "c.wav"))
    r = CliRunner().invoke(main, ["evaluate", run, "--references", str(tmp_path / "clean"),
                                  "--metrics", "si_sdr,dnsmos", "--local"])  # fmt: skip
    assert r.exit_code == EXIT_OK, r.output
    assert "DNSMOS only" not in r.output
    df = _metrics(run)
    np.testing.assert_allclose(df["si_sdr_i"], 20.0, atol=0.2)
    assert np.isfinite(df["dnsmos_ovrl"]).all() and np.isfinite(df["dnsmos_ovrl_in"]).all()
    out = tmp_path / "rep"
    assert CliRunner().invoke(main, ["report", run, "--out", str(out)]).exit_code == EXIT_OK
    md = (out / "report.md").read_text()
    assert "## Reference-free quality (DNSMOS)" in md and "SI-SDRi mean" in md
    assert "left out: no run was scored" not in md


@pytest.mark.slow
def test_dnsmos_not_installed_is_a_usage_error_only_when_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(dn, "missing_modules", lambda: ["speechmos"])
    run = crafted_run(tmp_path, names=("a.wav", "b.wav", "c.wav"))
    r = CliRunner().invoke(main, ["evaluate", run, "--local"])  # no references: DNSMOS needed
    assert r.exit_code == EXIT_USAGE, r.output
    assert "pip install 'batchsep[zoo]'" in r.output and "--references" in r.output
    assert not (tmp_path / "run" / "metrics").exists()
    args = ["evaluate", run, "--references", str(tmp_path / "clean"), "--local"]
    r = CliRunner().invoke(main, [*args, "--metrics", "si_sdr,dnsmos"])  # asked for
    assert r.exit_code == EXIT_USAGE and "pip install 'batchsep[zoo]'" in r.output, r.output
    r = CliRunner().invoke(main, [*args, "--metrics", "si_sdr"])  # not asked for: not needed
    assert r.exit_code == EXIT_OK, r.output
    r = CliRunner().invoke(main, args)  # default metrics: left out, and said so
    assert r.exit_code == EXIT_OK and "dnsmos left out: it is not installed" in r.output
    assert "pesq" in _metrics(run).columns and _metrics(run)["dnsmos_ovrl"].isna().all()


@needs_dnsmos
@pytest.mark.slow
@pytest.mark.realdata
def test_enhance_voicebank_then_evaluate_without_and_with_references(shared_data, tmp_path):
    """Real noisy speech, enhanced and tagged by the shipped models: evaluate needs no reference,
    the report shows DNSMOS and the tag distribution; with references both metric kinds."""
    pairs = shared_data / "pairs" / "voicebank_demand"
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("p287_001.flac", "p287_002.flac", "p287_004.flac"):
        shutil.copy(pairs / "noisy" / name, inp / name)
    run = str(tmp_path / "run")
    r = CliRunner().invoke(main, ["enhance", str(inp), run, "--emotion", "--local"])
    assert r.exit_code == EXIT_OK, r.output
    r = CliRunner().invoke(main, ["evaluate", run, "--local"])
    assert r.exit_code == EXIT_OK, r.output
    assert "scoring DNSMOS only" in r.output
    df = _metrics(run)
    assert len(df) == 3 and np.isfinite(df["dnsmos_ovrl"]).all()
    assert df["emotion_pred"].notna().all()
    # the shipped enhancer removes noise: DNSMOS rates the background of its output better
    assert df["dnsmos_bak_i"].mean() > 0, df[["dnsmos_bak", "dnsmos_bak_in"]]
    out = tmp_path / "rep"
    assert CliRunner().invoke(main, ["report", run, "--out", str(out)]).exit_code == EXIT_OK
    md = (out / "report.md").read_text()
    assert "## Reference-free quality (DNSMOS)" in md and "## Emotion tags" in md
    assert "| Tagged files | 3 |" in md

    r = CliRunner().invoke(main, ["evaluate", run, "--references", str(pairs / "clean"), "--local"])
    assert r.exit_code == EXIT_OK, r.output
    df = _metrics(run)
    assert np.isfinite(df["sdr_i"]).all() and np.isfinite(df["pesq"]).all()
    assert np.isfinite(df["dnsmos_ovrl"]).all()
