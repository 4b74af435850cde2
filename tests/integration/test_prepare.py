"""prepare end to end: exact SNR, disjoint splits, recipe-only regeneration, determinism, resumption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner

from batchsep.cli.main import EXIT_FATAL, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from batchsep.corpus.mixtures import SPLITS, MixtureConfig
from batchsep.dsp.mix import snr_db
from batchsep.errors import ConfigError
from batchsep.io import audio, parquet, storage
from batchsep.pipeline.prepare import driver as prep
from batchsep.pipeline.prepare import render as prepare_render
from batchsep.pipeline.runner import SerialRunner

REPO = Path(__file__).resolve().parents[2]
CONFIG = MixtureConfig(n_train=12, n_valid=4, n_test=4, seed=7)
URI_COLUMNS = ("noisy_uri", "clean_uri", "noise_audio_uri")


def speechlike(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.1 * rng.standard_normal(t.size) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


def make_corpus(root: Path, *, bad: bool = True, seconds: float = 1.0) -> tuple[str, str]:
    """6 speakers x 3 files (16 kHz, one speaker 22.05 kHz stereo, one 8 kHz) and 3 noise classes x
    3 recordings x 2 slices (UrbanSound8K names; one 0.2 s clip, one 44.1 kHz stereo). With ``bad``:
    a silent and a corrupt speech file."""
    rng = np.random.default_rng(0)
    speech, noise = root / "speech", root / "noise"
    for k in range(6):
        sr, ch = {0: (22050, 2), 1: (8000, 1)}.get(k, (16000, 1))
        (speech / f"spk{k}").mkdir(parents=True)
        for j in range(3):
            x = speechlike(rng, seconds * (0.8 + 0.3 * j), sr)
            sf.write(
                speech / f"spk{k}" / f"{k}-{j}.wav", np.stack([x, 0.5 * x], 1) if ch == 2 else x, sr
            )
    if bad:
        sf.write(speech / "spk2" / "silent.wav", np.zeros(16000, np.float32), 16000)
        (speech / "spk3" / "corrupt.wav").write_bytes(b"RIFF....not really audio" * 10)
    for c, name in enumerate(("hum", "babble", "street")):
        (noise / name).mkdir(parents=True)
        for r in range(3):
            for s in range(2):
                sr = 44100 if (c, r, s) == (2, 0, 0) else 16000
                dur = 0.2 if (c, r, s) == (0, 1, 1) else 1.5 * seconds
                x = 0.3 * rng.standard_normal(int(dur * sr)).astype(np.float32)
                x = np.stack([x, x], 1) if sr == 44100 else x
                sf.write(noise / name / f"{100 * c + r}-{c}-0-{s}.wav", x, sr)
    return str(speech), str(noise)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[str, str]:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def reference(corpus: tuple[str, str], tmp_path_factory) -> tuple[Path, prep.PrepareSummary]:
    out = tmp_path_factory.mktemp("ref") / "run"
    s = prep.prepare(*corpus, str(out), config=CONFIG, runner=SerialRunner(), shard_size=4)
    return out, s


def rows(run: Path) -> list[dict]:
    return pq.read_table(run / "mixtures.parquet").to_pylist()


def decode(uri: str) -> np.ndarray:
    a = audio.decode(storage.read_bytes(uri))
    assert a.sample_rate == 16000 and a.samples.shape[0] == 1
    return a.samples[0]


def snapshot(run: Path, skip=("job.json",)) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name not in skip and not p.name.startswith(storage.TMP_PREFIX)
    }


def test_outputs_exact_snr_and_disjoint_splits(reference):
    run, s = reference
    assert s.mixtures_ok == {"train": 12, "valid": 4, "test": 4} and s.mixtures_failed == 0
    assert [rel for rel, _ in s.input_errors] == ["spk3/corrupt.wav"]
    assert s.skipped_inputs == [("spk2/silent.wav", s.skipped_inputs[0][1])]
    assert "silent" in s.skipped_inputs[0][1]
    assert s.inputs == {"speech": 18, "noise": 18} and s.shards == 5
    table = rows(run)
    assert [r["mixture_id"] for r in table][:2] == ["train-000000", "train-000001"]
    for r in table:
        clean, noise, noisy = (decode(r[c]) for c in ("clean_uri", "noise_audio_uri", "noisy_uri"))
        assert clean.shape == noise.shape == noisy.shape == (r["n_samples"],)
        assert abs(snr_db(clean, noise) - r["snr_db"]) < 1e-3
        np.testing.assert_array_equal(noisy, clean + noise)
        assert -5 <= r["snr_db"] <= 5 and r["duration_s"] == r["n_samples"] / 16000
        assert sf.info(r["noisy_uri"]).subtype == "PCM_24"
    for key in ("speaker", "noise_clip"):
        groups = {sp: {r[key] for r in table if r["split"] == sp} for sp in SPLITS}
        assert all(groups.values())
        assert not (groups["train"] & groups["valid"] or groups["train"] & groups["test"])
        assert not groups["valid"] & groups["test"]
    src = pq.read_table(run / "sources.parquet").to_pylist()
    by_rel = {(r["role"], r["rel_path"]): r for r in src}
    assert by_rel[("speech", "spk2/silent.wav")]["status"] == "skipped"
    assert by_rel[("speech", "spk3/corrupt.wav")]["status"] == "error"
    for r in table:  # the split of every source used matches sources.parquet
        assert by_rel[("speech", r["speech_rel_path"])]["split"] == r["split"]
        assert by_rel[("noise", r["noise_rel_path"])]["split"] == r["split"]
        assert by_rel[("noise", r["noise_rel_path"])]["clip"] == r["noise_clip"]


def test_recipe_only_regenerates_bit_exact(corpus: tuple[str, str], reference, tmp_path):
    run, _ = reference
    out = tmp_path / "recipes"
    s = prep.prepare(*corpus, str(out), config=CONFIG, recipe_only=True, shard_size=4)
    assert s.audio_bytes == 0 and not (out / "mixtures" / "train").exists()
    full, recipe = rows(run), rows(out)
    for a, b in zip(full, recipe, strict=True):
        assert all(b[c] is None for c in URI_COLUMNS)
        assert {k: v for k, v in a.items() if k not in URI_COLUMNS} == {
            k: v for k, v in b.items() if k not in URI_COLUMNS
        }
        regenerated = prepare_render.regenerate(b)
        for stream, col in zip(("noisy", "clean", "noise"), URI_COLUMNS):
            np.testing.assert_array_equal(regenerated[stream], decode(a[col]))
        loaded = prepare_render.load_mixture(a)
        np.testing.assert_array_equal(loaded["noisy"], regenerated["noisy"])


def test_rerun_is_a_noop_and_other_settings_are_refused(
    corpus: tuple[str, str], reference, tmp_path
):
    run, first = reference
    before = {
        p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != "job.json"
    }
    starts: list[tuple[str, int]] = []
    again = prep.prepare(
        *corpus, str(run), config=CONFIG, shard_size=4, on_start=lambda p, n: starts.append((p, n))
    )
    assert again.shards_skipped == again.shards == 5
    assert not [p for p, _ in starts if p.startswith("render")]  # nothing to render: no "N to do"
    assert again.mixtures_ok == first.mixtures_ok
    after = {
        p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != "job.json"
    }
    assert after == before
    with pytest.raises(ConfigError, match=r"mixtures made from other settings \(seed: 7 -> 8\)"):
        prep.prepare(
            *corpus, str(run), config=MixtureConfig(n_train=12, n_valid=4, n_test=4, seed=8)
        )


@pytest.mark.ray
@pytest.mark.slow
def test_ray_output_is_byte_identical_to_serial(corpus: tuple[str, str], tmp_path, ray_local):
    """Same bytes (audio, every Parquet file, features) from 1 process and from 2 Ray workers.

    Both runs write to the same path (the rows hold absolute URIs); the first is moved away."""
    from batchsep.distributed.runtime import RayRunner
    from batchsep.pipeline.features.driver import features

    out = tmp_path / "run"
    runs = {}
    for name, runner in (("serial", SerialRunner()), ("ray", RayRunner(max_in_flight=2))):
        prep.prepare(*corpus, str(out), config=CONFIG, runner=runner, shard_size=4)
        features(str(out), shard_mb=0.2, runner=runner)
        runs[name] = snapshot(out)
        out.rename(tmp_path / name)
    a, b = runs["serial"], runs["ray"]
    assert a.keys() == b.keys()
    assert (
        sum(k.startswith("features/") for k in a) > 3 and sum(k.endswith(".flac") for k in a) == 60
    )
    assert [k for k in a if a[k] != b[k]] == []


@pytest.mark.ray
@pytest.mark.slow
def test_killed_worker_is_retried(corpus: tuple[str, str], reference, tmp_path, ray_local):
    from batchsep.distributed.runtime import RayRunner

    marker = str(tmp_path / "crashed-once")

    class CrashOnceRunner:  # defined here so that Ray pickles it (and `crashing`) by value
        def __init__(self) -> None:
            self.inner = RayRunner(max_in_flight=2, max_retries=2)

        def map_unordered(self, fn, items):
            def crashing(item, fn=fn, marker=marker):
                import os

                if not os.path.exists(marker):
                    open(marker, "w").close()
                    os._exit(1)  # the worker process dies mid-task
                return fn(item)

            return self.inner.map_unordered(crashing, items)

    out = tmp_path / "crash"
    s = prep.prepare(*corpus, str(out), config=CONFIG, runner=CrashOnceRunner(), shard_size=4)
    assert os.path.exists(marker)
    assert s.mixtures_ok == {"train": 12, "valid": 4, "test": 4}
    strip = lambda rs: [{k: v for k, v in r.items() if k not in URI_COLUMNS} for r in rs]  # noqa: E731
    assert strip(rows(out)) == strip(rows(reference[0]))


def _parts(run: Path) -> int:
    d = run / "mixtures" / "_parts"
    return len(list(d.glob("part-*.parquet"))) if d.exists() else 0


@pytest.mark.slow
def test_interrupted_driver_resumes_without_duplicates(tmp_path):
    """SIGKILL the CLI after a few shards are committed, run it again: same output as one clean run."""
    speech, noise = make_corpus(tmp_path / "c", bad=False, seconds=3.0)
    args = ["prepare", "--speech", speech, "--noise", noise, "--train", "48", "--valid", "4",
            "--test", "4", "--shard-size", "1", "--local"]  # fmt: skip
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchsep.cli.main", *args, "--out", str(run)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while _parts(run) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = _parts(run)
    assert 3 <= done_at_kill < 56, f"{done_at_kill} shards committed when killed"
    assert not (run / "mixtures.parquet").exists()
    r = CliRunner().invoke(main, [*args, "--out", str(run)])
    assert r.exit_code == EXIT_OK, r.output
    assert f"56 shards ({done_at_kill} already done)" in r.output
    run.rename(tmp_path / "resumed")
    assert CliRunner().invoke(main, [*args, "--out", str(run)]).exit_code == EXIT_OK  # clean run
    table = rows(tmp_path / "resumed")
    assert len(table) == 56 and len({r["mixture_id"] for r in table}) == 56
    a, b = snapshot(tmp_path / "resumed"), snapshot(run)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_cli_exit_codes(corpus: tuple[str, str], tmp_path):
    cli = CliRunner()
    speech, noise = corpus
    base = ["prepare", "--speech", speech, "--noise", noise, "--train", "6", "--valid", "2",
            "--test", "2", "--local"]  # fmt: skip
    r = cli.invoke(main, [*base, "--out", str(tmp_path / "a")])
    assert r.exit_code == EXIT_SOME_FAILED, r.output  # the corrupt speech file
    assert "prepared 10 mixtures (train 6, valid 2, test 2)" in r.output
    assert "failed: spk3/corrupt.wav" in r.output and "1 skipped" in r.output
    good_speech, good_noise = make_corpus(tmp_path / "good", bad=False)
    r = cli.invoke(main, ["prepare", "--speech", good_speech, "--noise", good_noise, "--train",
                          "4", "--valid", "1", "--test", "1", "--local", "--out", str(tmp_path / "b")])  # fmt: skip
    assert r.exit_code == EXIT_OK, r.output
    r = cli.invoke(main, [*base, "--out", str(tmp_path / "c"), "--snr-min", "6"])
    assert r.exit_code == EXIT_USAGE and "snr_min=6.0 must be <= snr_max=5.0" in r.output
    r = cli.invoke(
        main, [*base[:4], str(tmp_path / "nope"), *base[5:], "--out", str(tmp_path / "d")]
    )
    assert r.exit_code == EXIT_USAGE and "no such file" in r.output
    r = cli.invoke(main, [*base, "--out", str(tmp_path / "e"), "--holdout-noise-class", "rain"])
    assert r.exit_code == EXIT_USAGE and "'rain', which is not a noise class" in r.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli.invoke(main, [*base, "--out", str(blocker / "sub")])
    assert r.exit_code == EXIT_FATAL and "cannot write" in r.output


def test_prepare_to_s3_matches_local(corpus: tuple[str, str], reference, s3_env):
    from batchsep.pipeline.features.driver import features
    from batchsep.training.data.features import FeatureDataset

    run, _ = reference
    out = s3_env + "/run"
    s = prep.prepare(*corpus, out, config=CONFIG, shard_size=4)
    assert s.mixtures_ok == {"train": 12, "valid": 4, "test": 4} and s.audio_bytes > 0
    remote = parquet.read_table(out + "/mixtures.parquet").to_pylist()
    local = rows(run)
    for a, b in zip(local, remote, strict=True):
        assert b["noisy_uri"].startswith("s3://")
        assert storage.read_bytes(b["noisy_uri"]) == Path(a["noisy_uri"]).read_bytes()
    f = features(out, shard_mb=0.5)
    assert f.rows_ok == 20 and f.shards_skipped == 0
    ds = FeatureDataset(out + "/features", split="valid", batch_size=2, with_ids=True)
    assert sorted(i for b in ds for i in b["ids"]) == [f"valid-{i:06d}" for i in range(4)]
    assert features(out, shard_mb=0.5).shards_skipped == f.shards


@pytest.mark.realdata
@pytest.mark.ray
@pytest.mark.slow
def test_prepare_and_features_on_shared_data(shared_data, tmp_path, ray_local):
    """A small real run (20/5/5): speakers 6/2/2, exact SNR, features and the dataset read back."""
    from batchsep.distributed.runtime import RayRunner
    from batchsep.pipeline.features.driver import features
    from batchsep.training.data.features import FeatureDataset

    cfg = MixtureConfig(n_train=20, n_valid=5, n_test=5, max_seconds=4.0)
    out = tmp_path / "run"
    runner = RayRunner(max_in_flight=4)
    s = prep.prepare(str(shared_data / "speech"), str(shared_data / "noise"), str(out),
                     config=cfg, runner=runner)  # fmt: skip
    assert s.mixtures_ok == {"train": 20, "valid": 5, "test": 5} and s.failed == 0
    src = pq.read_table(out / "sources.parquet").to_pandas()
    spk = src[(src.role == "speech") & (src.status == "ok")].groupby("split").group.nunique()
    assert spk.to_dict() == {"train": 6, "valid": 2, "test": 2}
    for r in rows(out)[:6]:
        assert (
            abs(snr_db(decode(r["clean_uri"]), decode(r["noise_audio_uri"])) - r["snr_db"]) < 1e-3
        )
    f = features(str(out), runner=runner)
    assert f.rows_ok == 30 and f.rows_failed == 0 and f.bytes > 0
    ds = FeatureDataset(str(out / "features"), batch_size=4, crop_frames=100)
    b = next(iter(ds))
    assert b["noisy_mag"].shape == (4, 257, 100)


def test_cli_draw_seed_gives_fresh_mixtures_of_the_same_split(tmp_path):
    speech, noise = make_corpus(tmp_path / "in", bad=False)
    base = ["prepare", "--speech", speech, "--noise", noise, "--train", "8", "--valid", "2",
            "--test", "2", "--seed", "3", "--recipe-only", "--local"]  # fmt: skip
    tables = {}
    for name, extra in (
        ("plain", []),
        ("same", ["--draw-seed", "3"]),
        ("fresh", ["--draw-seed", "4"]),
    ):
        r = CliRunner().invoke(main, [*base, *extra, "--out", str(tmp_path / name)])
        assert r.exit_code == EXIT_OK, r.output
        tables[name] = pq.read_table(tmp_path / name / "mixtures.parquet").to_pandas()
    cols = ["mixture_id", "speech_rel_path", "noise_rel_path", "snr_db"]
    assert tables["same"][cols].equals(tables["plain"][cols])
    assert not tables["fresh"][cols].equals(tables["plain"][cols])
    for split in SPLITS:  # the speakers of each split are those of --seed's split
        speakers = {t: set(tables[t][tables[t].split == split].speaker) for t in ("plain", "fresh")}
        assert speakers["plain"] and speakers["fresh"] <= speakers["plain"], split
