"""A prepare run copied or moved elsewhere (folder, S3) reads, scores and featurizes its own audio."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner
from parts_helpers import read_parts

from batchsep.cli.main import EXIT_OK, main
from batchsep.corpus.mixtures import MixtureConfig
from batchsep.io import audio, parquet, schemas, storage
from batchsep.pipeline.evaluate.driver import evaluate
from batchsep.pipeline.features import driver as feat
from batchsep.pipeline.prepare import driver as prep
from batchsep.pipeline.prepare import render as prepare_render
from batchsep.pipeline.prepare import run as prepare_run

URI_COLUMNS = ("noisy_uri", "clean_uri", "noise_audio_uri")
CONFIG = MixtureConfig(n_train=4, n_valid=2, n_test=2, seed=3)


def make_corpus(root: Path) -> tuple[str, str]:
    """5 speakers x 2 utterances, 3 noise classes x 3 recordings (16 kHz, under a second)."""
    rng = np.random.default_rng(5)
    for k in range(5):
        (root / "speech" / f"s{k}").mkdir(parents=True)
        for j in range(2):
            n = int((0.6 + 0.1 * j) * 16000)
            x = 0.1 * rng.standard_normal(n) * (1 + np.sin(np.arange(n) / 900))
            sf.write(root / "speech" / f"s{k}" / f"{j}.wav", x.astype(np.float32), 16000)
    for c in range(3):
        (root / "noise" / f"n{c}").mkdir(parents=True)
        for r in range(3):
            x = (0.2 * rng.standard_normal(16000)).astype(np.float32)
            sf.write(root / "noise" / f"n{c}" / f"{r}.wav", x, 16000)
    return str(root / "speech"), str(root / "noise")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A prepare run and its mixtures rows as written (absolute URIs under the original folder)."""
    root = tmp_path_factory.mktemp("written")
    out = root / "run"
    prep.prepare(*make_corpus(root), str(out), config=CONFIG, shard_size=4)
    return out, pq.read_table(out / prepare_run.MIXTURES_NAME).to_pylist()


@pytest.fixture
def moved(written, tmp_path) -> Iterator[Path]:
    """A copy of the run in another folder; the original is gone (as after a move)."""
    src, _ = written
    dst = tmp_path / "elsewhere" / "moved-run"
    shutil.copytree(src, dst)
    hidden = src.with_name("hidden")
    src.rename(hidden)
    yield dst
    hidden.rename(src)


def test_read_mixtures_rebases_audio_uris_onto_the_moved_run(written, moved):
    _, original = written
    rows = prepare_run.read_mixtures(str(moved))
    assert [r["mixture_id"] for r in rows] == [r["mixture_id"] for r in original]
    for r, o in zip(rows, original, strict=True):
        for c in URI_COLUMNS:
            assert r[c] == str(moved / Path(o[c]).relative_to(written[0])), c
            assert Path(r[c]).is_file()
        assert (r["speech_uri"], r["noise_uri"]) == (o["speech_uri"], o["noise_uri"])  # external
    # file:// URIs and the parquet itself work too
    table = prepare_run.read_mixtures_table(moved.as_uri())
    assert table.root == str(moved) and table.written_root == str(written[0])
    assert table.rows == rows == prepare_run.read_mixtures(str(moved / prepare_run.MIXTURES_NAME))
    np.testing.assert_array_equal(
        prepare_render.load_mixture(rows[0])["noisy"], audio.decode(moved.joinpath(
            Path(original[0]["noisy_uri"]).relative_to(written[0])).read_bytes()).samples[0]
    )  # fmt: skip


def test_unmoved_run_and_lone_parquet_copy_keep_the_written_uris(written, tmp_path):
    run, original = written
    assert prepare_run.read_mixtures(str(run)) == original
    lone = tmp_path / "lone" / "mixtures.parquet"  # only the table: its audio stayed where it was
    lone.parent.mkdir()
    shutil.copy(run / prepare_run.MIXTURES_NAME, lone)
    assert prepare_run.read_mixtures(str(lone.parent)) == original


def _fake_enhance_run(run: Path, rows: list[dict]) -> str:
    """An enhance run of the test mixtures: output = clean + noise/10 (SI-SDR 20 dB above the input)."""
    results = []
    for i, r in enumerate(x for x in rows if x["split"] == "test"):
        sig = prepare_render.load_mixture(r)
        out = run / "enhanced" / f"{r['mixture_id']}.wav"
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, sig["clean"] + 0.1 * sig["noise"], 16000, subtype="FLOAT")
        results.append(
            {"input_uri": r["noisy_uri"], "rel_path": Path(r["noisy_uri"]).name, "status": "ok",
             "output_uri": str(out), "duration_s": r["duration_s"], "t_total_s": 0.1,
             "model_name": "fake", "shard": i}
        )  # fmt: skip
    uri = str(run / "enhanced")
    parquet.write_table(
        parquet.part_uri(storage.join(uri, "results"), 0),
        schemas.table_from_rows(results, schemas.ENHANCE_RESULTS),
    )
    return uri


def test_evaluate_scores_against_the_moved_run(moved, tmp_path):
    enhanced = _fake_enhance_run(tmp_path, prepare_run.read_mixtures(str(moved)))
    s = evaluate(enhanced, references=str(moved), metrics=["si_sdr"])
    assert (s.files, s.scored, s.files_failed) == (2, 2, 0)
    assert abs(s.means["si_sdr_i"] - 20.0) < 0.5
    df = read_parts(enhanced + "/metrics").to_pandas()
    assert sorted(df["mixture_id"]) == ["test-000000", "test-000001"]
    assert all(Path(u).is_relative_to(moved) for u in df["clean_uri"])
    args = ["evaluate", enhanced, "--references", str(moved), "--metrics", "si_sdr", "--local"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == EXIT_OK and "scored 2/2" in r.output, r.output


def test_evaluate_finds_references_of_an_enhance_run_made_before_a_copy(written, tmp_path):
    """Inputs enhanced at the written location match the rows of a copy of the run."""
    run, original = written
    enhanced = _fake_enhance_run(tmp_path, original)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    s = evaluate(enhanced, references=str(copy), metrics=["si_sdr"])
    assert (s.scored, s.files_failed) == (2, 0)
    df = read_parts(enhanced + "/metrics").to_pandas()
    assert all(Path(u).is_relative_to(copy) for u in df["clean_uri"])


def test_features_of_the_moved_run(written, moved):
    s = feat.features(str(moved), config=feat.StftFeatures(), shard_mb=0.5)
    assert s.rows_ok == 8 and s.rows_failed == 0
    parts = sorted((moved / "features").rglob("part-*.parquet"))
    assert sum(pq.read_table(p).num_rows for p in parts) == 8


def test_run_uploaded_to_s3_reads_its_audio_there(written, s3_env):
    run, original = written
    out = s3_env + "/uploaded"
    for p in run.rglob("*"):
        if p.is_file():
            storage.write_bytes(storage.join(out, str(p.relative_to(run))), p.read_bytes())
    rows = prepare_run.read_mixtures(out)
    for r, o in zip(rows, original, strict=True):
        assert r["noisy_uri"] == storage.join(out, str(Path(o["noisy_uri"]).relative_to(run)))
        assert storage.read_bytes(r["clean_uri"]) == Path(o["clean_uri"]).read_bytes()
    assert feat.features(out, shard_mb=0.5).rows_ok == 8
