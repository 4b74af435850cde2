"""evaluate + report stages: known-answer scores from a crafted run, pairs layout, two-run reports, S3."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner
from parts_helpers import read_parts

from batchsep.cli.main import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from batchsep.dsp.mix import mix_at_snr
from batchsep.io import parquet, schemas, storage
from batchsep.pipeline.evaluate.driver import evaluate
from batchsep.pipeline.report.driver import report

SR = 16000


def crafted_run(
    tmp: Path, snrs=(0.0, 5.0, 10.0), names=("a.wav", "b.wav", "03-01-05-01-01-01-13.wav")
):
    """Clean/noisy pairs at exact SNRs and an 'enhanced' output = clean + noise/10 (20 dB better)."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (name, snr) in enumerate(zip(names, snrs, strict=True)):
        t = np.arange(2 * SR) / SR
        clean = (0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(
            np.float32
        )
        noisy, noise, _ = mix_at_snr(clean, rng.standard_normal(clean.size).astype(np.float32), snr)
        for folder, x in (("clean", clean), ("noisy", noisy), ("run", clean + 0.1 * noise)):
            (tmp / folder).mkdir(exist_ok=True)
            sf.write(tmp / folder / name, x, SR, subtype="FLOAT")
        rows.append(
            {
                "input_uri": str(tmp / "noisy" / name),
                "rel_path": name,
                "status": "ok",
                "output_uri": str(tmp / "run" / name),
                "duration_s": 2.0,
                "t_total_s": 0.1,
                "model_name": "fake",
                "shard": i,
                "emotion_label": "angry" if i == 2 else None,
            }
        )
    parquet.write_table(
        parquet.part_uri(str(tmp / "run" / "results"), 0),
        schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS),
    )
    return str(tmp / "run")


def test_known_answers(tmp_path):
    run = crafted_run(tmp_path)
    s = evaluate(run, references=str(tmp_path / "clean"), metrics=["sdr", "si_sdr", "stoi"])
    assert (s.files, s.scored) == (3, 3)
    df = read_parts(run + "/metrics").to_pandas().set_index("rel_path")
    np.testing.assert_allclose(df.loc[["a.wav", "b.wav"], "input_snr"], [0.0, 5.0], atol=1e-3)
    np.testing.assert_allclose(df["si_sdr_i"], 20.0, atol=0.2)  # enhanced noise is 20 dB lower
    np.testing.assert_allclose(df["sdr_i"], 20.0, atol=0.5)
    assert df["stoi"].between(0, 1).all() and (df["stoi_i"] > 0).all()
    row = df.loc["03-01-05-01-01-01-13.wav"]
    assert (row["emotion_true"], row["emotion_pred"], row["speaker"]) == (
        "angry",
        "angry",
        "actor13",
    )
    assert df["pesq"].isna().all()  # not requested


def test_metric_failure_has_reason(tmp_path):
    run = crafted_run(tmp_path)
    sf.write(tmp_path / "clean" / "a.wav", np.zeros(2 * SR, np.float32), SR)  # silent reference
    evaluate(run, references=str(tmp_path / "clean"), metrics=["sdr", "si_sdr"])
    df = read_parts(run + "/metrics").to_pandas().set_index("rel_path")
    assert np.isnan(df.loc["a.wav", "si_sdr"]) and "silence" in df.loc["a.wav", "si_sdr_error"]
    assert np.isfinite(df.loc["b.wav", "si_sdr"]) and pd.isna(df.loc["b.wav", "si_sdr_error"])


def test_missing_reference_and_no_run(tmp_path):
    run = crafted_run(tmp_path)
    (tmp_path / "clean" / "b.wav").unlink()
    evaluate(run, references=str(tmp_path / "clean"), metrics=["si_sdr"])
    df = read_parts(run + "/metrics").to_pandas().set_index("rel_path")
    assert df.loc["b.wav", "error"] == "no clean reference"
    r = CliRunner().invoke(main, ["evaluate", str(tmp_path / "nothing"), "--local"])
    assert r.exit_code == EXIT_USAGE and "batchsep enhance first" in r.output
    r = CliRunner().invoke(main, ["evaluate", run, "--metrics", "sdr,bogus", "--local"])
    assert r.exit_code == EXIT_USAGE and "bogus" in r.output


def test_report_from_two_runs(tmp_path):
    a = crafted_run(tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path)
    b = crafted_run(
        tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path, snrs=(-5.0, 0.0, 2.0)
    )
    for run, ref in ((a, tmp_path / "a" / "clean"), (b, tmp_path / "b" / "clean")):
        evaluate(run, references=str(ref), metrics=["sdr", "si_sdr"])
    r = CliRunner().invoke(
        main, ["report", a, b, "--out", str(tmp_path / "rep"), "--name", "A", "--name", "B"]
    )
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "index.html").read_text()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "A" in md and "B" in md and "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") >= 3 and "data:audio/wav;base64," in html
    pngs = ("sdri_vs_snr.png", "per_speaker.png", "confusion_0.png", "confusion_1.png")
    for png in (*pngs, "spectrograms_0.png"):
        assert (tmp_path / "rep" / png).stat().st_size > 1000, png
    r = CliRunner().invoke(
        main, ["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")]
    )
    assert r.exit_code == EXIT_USAGE and "no such run folder" in r.output
    assert not (tmp_path / "r2").exists()


@pytest.mark.s3
def test_metrics_and_report_on_s3(tmp_path, s3_env):
    crafted_run(tmp_path)
    for p in (tmp_path / "run").rglob("*"):
        if p.is_file():
            storage.write_bytes(f"{s3_env}/run/{p.relative_to(tmp_path / 'run')}", p.read_bytes())
    table = read_parts(f"{s3_env}/run/results").to_pylist()
    for r in table:
        r["output_uri"] = f"{s3_env}/run/{r['rel_path']}"
    storage.delete(f"{s3_env}/run/results/part-00000.parquet")
    parquet.write_table(
        f"{s3_env}/run/results/part-00000.parquet",
        schemas.table_from_rows(table, schemas.ENHANCE_RESULTS),
    )
    evaluate(f"{s3_env}/run", references=str(tmp_path / "clean"), metrics=["si_sdr"])
    report([f"{s3_env}/run"], f"{s3_env}/report")
    assert storage.exists(f"{s3_env}/report/index.html")
    assert json.loads(storage.read_text(f"{s3_env}/run/job.json"))["stages"]["evaluate"]


@pytest.mark.realdata
@pytest.mark.filterwarnings(
    "ignore:mir_eval.separation.bss_eval_sources:FutureWarning"
)  # the reference
def test_voicebank_pairs_against_mir_eval(shared_data, tmp_path):
    """Pairs layout at its native rate; SDR of the unprocessed input agrees with mir_eval to 0.01 dB."""
    import mir_eval

    pairs = shared_data / "pairs" / "voicebank_demand"
    rows = []
    for i, p in enumerate(sorted((pairs / "noisy").glob("*.flac"))[:2]):
        rows.append(
            {
                "input_uri": str(p),
                "rel_path": p.name,
                "status": "ok",
                "output_uri": str(p),
                "shard": i,
                "duration_s": sf.info(p).duration,
            }
        )
    run = str(tmp_path / "run")
    parquet.write_table(
        parquet.part_uri(run + "/results", 0),
        schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS),
    )
    evaluate(run, references=str(pairs / "clean"), metrics=["sdr"])
    df = read_parts(run + "/metrics").to_pandas().set_index("rel_path")
    for name in df.index:
        clean, _ = sf.read(pairs / "clean" / name, dtype="float64")
        noisy, _ = sf.read(pairs / "noisy" / name, dtype="float64")
        ref = np.stack([clean, noisy - clean])
        est = np.stack([noisy, noisy - noisy + 1e-9 * clean])  # estimate 0 = the input itself
        sdr, _, _, _ = mir_eval.separation.bss_eval_sources(ref, est, compute_permutation=False)
        assert abs(df.loc[name, "sdr_in"] - sdr[0]) < 0.01


def test_cli_exits_1_and_lists_files_it_could_not_score(tmp_path):
    run = crafted_run(tmp_path)
    (tmp_path / "clean" / "b.wav").unlink()
    args = ["evaluate", run, "--references", str(tmp_path / "clean"), "--metrics", "si_sdr"]
    r = CliRunner().invoke(main, [*args, "--local"])
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    assert "scored 2/3 files" in r.output and "not scored: b.wav: no clean reference" in r.output
    r = CliRunner().invoke(main, [*args, "--local", "--show-errors", "0"])
    assert r.exit_code == EXIT_SOME_FAILED and "b.wav" not in r.output and "1 more" in r.output
    s = evaluate(run, references=str(tmp_path / "clean"), metrics=["si_sdr"])
    assert (s.files, s.scored, s.files_failed) == (3, 2, 1)
    assert s.errors == [("b.wav", "no clean reference")]


def test_cli_no_references_is_a_usage_error(tmp_path):
    """Reference metrics asked for explicitly without any reference: exit 2 before any work."""
    run = crafted_run(tmp_path, names=("a.wav", "b.wav", "c.wav"))
    r = CliRunner().invoke(main, ["evaluate", run, "--metrics", "sdr,si_sdr", "--local"])
    assert r.exit_code == EXIT_USAGE, r.output
    assert f"no clean references found for {run}" in r.output and "--references" in r.output
    assert not (tmp_path / "run" / "metrics").exists()  # nothing written, nothing replaced
    (tmp_path / "empty_clean").mkdir()
    r = CliRunner().invoke(
        main, ["evaluate", run, "--references", str(tmp_path / "empty_clean"), "--local"]
    )
    assert r.exit_code == EXIT_USAGE and "same relative paths" in r.output, r.output
    assert "--references" in CliRunner().invoke(main, ["evaluate", "--help"]).output
    assert "needed" in CliRunner().invoke(main, ["evaluate", "--help"]).output


def test_tag_run_needs_no_references(tmp_path):
    """A tag run (no enhanced audio) is evaluated for emotion only: nothing to score, exit 0."""
    run = crafted_run(tmp_path)
    rows = read_parts(run + "/results").to_pylist()
    for r in rows:
        r["output_uri"] = None
    storage.delete(parquet.part_uri(run + "/results", 0))
    parquet.write_table(
        parquet.part_uri(run + "/results", 0),
        schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS),
    )
    r = CliRunner().invoke(main, ["evaluate", run, "--local"])
    assert r.exit_code == EXIT_OK, r.output
    # the emotions are what a tag run is evaluated for: the console says so instead of "scored 0/3"
    assert "emotion: accuracy" in r.output and "over 1 tagged file with a true label" in r.output
    assert "scored 0/3" not in r.output
    df = read_parts(run + "/metrics").to_pandas()
    assert set(df["error"]) == {"no enhanced audio (tag run: emotions only)"}
    s = evaluate(run, metrics=[])
    assert s.files_failed == 0 and s.emotion is not None and s.emotion["n"] == 1


def test_report_leaves_out_figures_without_data(tmp_path):
    """Plain clean folder: no noise class or speaker known, so those figures are left out."""
    run = crafted_run(tmp_path, names=("a.wav", "b.wav", "c.wav"))
    evaluate(run, references=str(tmp_path / "clean"), metrics=["sdr", "si_sdr"])
    written = report([run], str(tmp_path / "rep"))
    names = {posixpath.basename(u) for u in written}
    assert "sdri_vs_snr.png" in names
    assert not (tmp_path / "rep" / "sdri_by_noise.png").exists()
    assert not (tmp_path / "rep" / "per_speaker.png").exists()
    for page in ("report.md", "index.html"):
        text = (tmp_path / "rep" / page).read_text()
        assert "sdri_by_noise.png" not in text and "per_speaker.png" not in text
        assert "no noise class known for these files" in text
        assert "no speaker known for these files" in text


def test_tagged_ravdess_run_without_references_scores_emotion_only(tmp_path):
    run = crafted_run(tmp_path)  # one RAVDESS-named, emotion-tagged file
    s = evaluate(run, metrics=["si_sdr"])
    assert (s.scored, s.files_failed) == (0, 3) and s.references is None
    df = read_parts(run + "/metrics").to_pandas().set_index("rel_path")
    assert df.loc["03-01-05-01-01-01-13.wav", "emotion_true"] == "angry"
    r = CliRunner().invoke(main, ["evaluate", run, "--metrics", "si_sdr", "--local"])
    assert r.exit_code == EXIT_SOME_FAILED and "pass --references CLEAN_URI" in r.output


def test_references_default_to_the_prepare_run_of_the_enhanced_inputs(tmp_path):
    """An enhance run of a prepare run's mixtures is scored against that run's clean signals without
    --references: evaluate finds mixtures.parquet above the enhance input recorded in job.json."""
    from batchsep.pipeline.common import jobinfo
    from batchsep.pipeline.evaluate.driver import find_mixtures_run

    run = crafted_run(tmp_path, snrs=(0.0, 5.0), names=("m0.wav", "m1.wav"))
    assert find_mixtures_run(run) is None  # no job.json yet
    rows = [
        {"mixture_id": f"m{i}", "split": "test", "speaker": f"spk{i}", "noise_class": "hum",
         "snr_db": snr, "noisy_uri": str(tmp_path / "noisy" / f"m{i}.wav"),
         "clean_uri": str(tmp_path / "clean" / f"m{i}.wav"), "index": i, "speech_uri": "s",
         "speech_rel_path": "s", "noise_uri": "n", "noise_rel_path": "n", "noise_clip": "n",
         "sample_rate": SR, "speech_offset": 0, "noise_offset": 0, "noise_looped": False,
         "n_samples": 2 * SR, "duration_s": 2.0, "status": "ok"}
        for i, snr in enumerate((0.0, 5.0))
    ]  # fmt: skip
    parquet.write_table(
        str(tmp_path / "mixtures.parquet"), schemas.table_from_rows(rows, schemas.MIXTURES)
    )
    jobinfo.write_job_json(run, "enhance", {"in_uri": str(tmp_path / "noisy"), "out_uri": run})
    assert find_mixtures_run(run) == str(tmp_path)
    r = CliRunner().invoke(main, ["evaluate", run, "--metrics", "si_sdr", "--local"])
    assert r.exit_code == EXIT_OK, r.output
    assert f"references: {tmp_path} (the prepare run" in r.output and "scored 2/2" in r.output
    df = read_parts(run + "/metrics").to_pandas().set_index("rel_path")
    assert list(df["noise_class"]) == ["hum", "hum"] and list(df["speaker"]) == ["spk0", "spk1"]
    np.testing.assert_allclose(df["si_sdr_i"], 20.0, atol=0.2)
