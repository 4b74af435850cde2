"""evaluate with a pairs root as --references (clean/ beside noisy/), and the input's DNSMOS computed once
per input: shared by the rows of one input, reused by a later evaluate while the input is unchanged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from parts_helpers import read_parts

from batchsep.cli.main import EXIT_OK, EXIT_SOME_FAILED, main
from batchsep.evaluation import dnsmos as dn
from batchsep.io import parquet, schemas
from batchsep.pipeline.evaluate.driver import EvalItem, evaluate, score_shard

NAMES = ("p287_001.flac", "p287_002.flac", "p287_004.flac")


def _results(run: Path, rows: list[dict]) -> str:
    parquet.write_table(
        parquet.part_uri(str(run / "results"), 0),
        schemas.table_from_rows(rows, schemas.ENHANCE_RESULTS),
    )
    return str(run)


def half_noise_run(tmp: Path, noisy_dir: Path, clean_dir: Path, rels: dict[str, str]) -> str:
    """An enhance run whose output of each input keeps half of its noise (SI-SDR +6 dB over the input).
    ``rels``: rel_path in the run → file name in ``noisy_dir``/``clean_dir``."""
    run = tmp / "run"
    rows = []
    for i, (rel, name) in enumerate(rels.items()):
        noisy, sr = sf.read(noisy_dir / name, dtype="float32")
        clean, _ = sf.read(clean_dir / name, dtype="float32")
        out = run / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out.with_suffix(".wav"), clean + 0.5 * (noisy - clean), sr, subtype="FLOAT")
        st = (noisy_dir / name).stat()
        rows.append(
            {"input_uri": str(noisy_dir / name), "rel_path": rel, "status": "ok",
             "output_uri": str(out.with_suffix(".wav")), "duration_s": len(noisy) / sr,
             "t_total_s": 0.1, "model_name": "half", "shard": i, "input_size": st.st_size,
             "input_mtime_ns": st.st_mtime_ns}
        )  # fmt: skip
    return _results(run, rows)


def _metrics(run: str):
    return read_parts(run + "/metrics").to_pandas().set_index("rel_path")


@pytest.mark.realdata
@pytest.mark.slow
def test_a_pairs_root_is_taken_as_references(shared_data, tmp_path):
    """``--references ../shared/data/pairs/voicebank_demand`` (clean/ beside noisy/) for a run of its
    noisy/ folder: was refused with "no clean reference for any of the ... files"."""
    root = shared_data / "pairs" / "voicebank_demand"
    run = half_noise_run(tmp_path, root / "noisy", root / "clean", {n: n for n in NAMES})
    args = ["evaluate", run, "--references", str(root), "--metrics", "si_sdr", "--local"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == EXIT_OK, r.output
    assert "scored 3/3 files" in r.output
    df = _metrics(run)
    assert list(df["clean_uri"]) == [str(root / "clean" / n) for n in NAMES]
    np.testing.assert_allclose(df["si_sdr_i"], 6.02, atol=0.1)


@pytest.mark.realdata
@pytest.mark.slow
def test_a_run_of_the_pairs_root_itself_pairs_noisy_with_clean(shared_data, tmp_path):
    """Enhance given the pairs root: rel paths noisy/<f> pair with clean/<f>; an enhanced clean/<f>
    has no reference (its row says so)."""
    src = shared_data / "pairs" / "voicebank_demand"
    root = tmp_path / "pairs"
    for sub in ("noisy", "clean"):
        (root / sub).mkdir(parents=True)
        for n in NAMES[:2]:
            shutil.copy(src / sub / n, root / sub / n)
    rels = {f"noisy/{n}": n for n in NAMES[:2]}
    run = half_noise_run(tmp_path, root / "noisy", root / "clean", rels)
    rows = read_parts(run + "/results").to_pylist()
    extra = dict(rows[0], rel_path=f"clean/{NAMES[0]}", input_uri=str(root / "clean" / NAMES[0]))
    _results(Path(run), [*rows, extra])
    s = evaluate(run, references=str(root), metrics=["si_sdr"])
    df = _metrics(run)
    for n in NAMES[:2]:
        assert df.loc[f"noisy/{n}", "clean_uri"] == str(root / "clean" / n)
        assert df.loc[f"noisy/{n}", "si_sdr_i"] == pytest.approx(6.02, abs=0.1)
    assert (s.scored, s.files_failed) == (2, 1)
    assert df.loc[f"clean/{NAMES[0]}", "error"] == "no clean reference"
    r = CliRunner().invoke(main, ["evaluate", run, "--references", str(root), "--metrics",
                                  "si_sdr", "--local"])  # fmt: skip
    assert r.exit_code == EXIT_SOME_FAILED, r.output


def test_a_folder_with_clean_but_no_noisy_is_a_folder_of_clean_files(tmp_path):
    """Only clean/ beside noisy/ makes a pairs root: a clean folder that happens to hold a clean/
    subfolder of its own keeps meaning "the inputs' relative paths"."""
    from batchsep.pipeline.evaluate.refs import clean_candidates, pairs_clean_folder

    (tmp_path / "refs" / "clean").mkdir(parents=True)
    assert pairs_clean_folder(str(tmp_path / "refs")) is None
    (tmp_path / "refs" / "noisy").mkdir()
    assert pairs_clean_folder(str(tmp_path / "refs")) == str(tmp_path / "refs" / "clean")
    c = str(tmp_path / "refs" / "clean")
    assert clean_candidates(c, "a/b.wav", True) == [f"{c}/a/b.wav"]
    assert clean_candidates(c, "noisy/b.wav", True) == [f"{c}/b.wav", f"{c}/noisy/b.wav"]
    assert clean_candidates(c, "clean/b.wav", True) == []
    assert clean_candidates(c, "clean/b.wav", False) == [f"{c}/clean/b.wav"]


class CountingScorer:
    """A stand-in DNSMOS scorer: scores from the signal's RMS; counts the signals it rated."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, audio: np.ndarray, sr: int) -> dict[str, float]:
        self.calls += 1
        v = 1.0 + float(np.sqrt(np.mean(np.square(audio))))
        return {"sig": v, "bak": v, "ovrl": v, "p808": v}


@pytest.fixture
def scorer(monkeypatch) -> CountingScorer:
    fake = CountingScorer()
    monkeypatch.setattr(dn, "get_scorer", lambda threads=None, **_: fake)
    monkeypatch.setattr(dn, "missing_modules", lambda: [])
    return fake


def _tone_run(tmp: Path, n: int = 3) -> str:
    rng = np.random.default_rng(1)
    (tmp / "in").mkdir()
    (tmp / "run").mkdir()
    rows = []
    for i in range(n):
        x = (0.1 * rng.standard_normal(8000)).astype(np.float32)
        sf.write(tmp / "in" / f"f{i}.wav", x, 16000)
        sf.write(tmp / "run" / f"f{i}.wav", 0.5 * x, 16000)
        st = (tmp / "in" / f"f{i}.wav").stat()
        rows.append(
            {"input_uri": str(tmp / "in" / f"f{i}.wav"), "rel_path": f"f{i}.wav", "status": "ok",
             "output_uri": str(tmp / "run" / f"f{i}.wav"), "duration_s": 0.5, "t_total_s": 0.1,
             "model_name": "m", "shard": i, "input_size": st.st_size,
             "input_mtime_ns": st.st_mtime_ns}
        )  # fmt: skip
    return _results(tmp / "run", rows)


def test_rows_of_one_input_share_its_dnsmos(tmp_path, scorer):
    _tone_run(tmp_path, 1)
    noisy, out = str(tmp_path / "in" / "f0.wav"), str(tmp_path / "run" / "f0.wav")
    items = [EvalItem(f"m{k}/f0.wav", noisy, out, None, (("model", f"m{k}"),)) for k in range(3)]
    rows = score_shard((items, ("dnsmos",)))
    assert scorer.calls == 3 + 1  # three outputs, one input
    assert len({r["dnsmos_ovrl_in"] for r in rows}) == 1 and np.isfinite(rows[0]["dnsmos_ovrl_in"])


def test_a_later_evaluate_reuses_the_inputs_dnsmos_while_they_are_unchanged(tmp_path, scorer):
    run = _tone_run(tmp_path, 3)
    evaluate(run, metrics=["dnsmos"])
    assert scorer.calls == 6  # 3 outputs + 3 inputs
    first = _metrics(run)
    assert first["input_size"].notna().all() and first["input_mtime_ns"].notna().all()
    evaluate(run, metrics=["dnsmos"])
    assert scorer.calls == 6 + 3  # the outputs only
    again = _metrics(run)
    np.testing.assert_allclose(again["dnsmos_ovrl_in"], first["dnsmos_ovrl_in"])
    np.testing.assert_allclose(again["dnsmos_ovrl_i"], first["dnsmos_ovrl_i"])
    # an input changed since (another modification time): scored again, the others reused
    path = tmp_path / "in" / "f1.wav"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rows = read_parts(run + "/results").to_pylist()
    rows[1]["input_mtime_ns"] = st.st_mtime_ns + 10**9  # as a re-run of enhance records it
    _results(Path(run), rows)
    evaluate(run, metrics=["dnsmos"])
    assert scorer.calls == 9 + 3 + 1
