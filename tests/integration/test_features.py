"""features end to end: values against a numpy STFT, schema metadata, bounded shards, skip/resume, Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner

from batchsep.cli.main import EXIT_OK, EXIT_USAGE, main
from batchsep.config import config_from_dict
from batchsep.corpus.mixtures import MixtureConfig
from batchsep.pipeline.features import driver as feat
from batchsep.pipeline.features.options import transform_hash
from batchsep.pipeline.features.worker import feature_schema, read_transform
from batchsep.pipeline.prepare import driver as prep
from batchsep.pipeline.prepare import render as prepare_render
from batchsep.pipeline.runner import SerialRunner
from batchsep.pipeline.scan.driver import scan
from batchsep.training.data.features import FeatureDataset, frames_column

REPO = Path(__file__).resolve().parents[2]


def make_corpus(root: Path, seconds: float = 1.0) -> tuple[str, str]:
    """5 speakers x 2 utterances; 3 noise classes x 3 files (one at 44.1 kHz stereo)."""
    rng = np.random.default_rng(1)
    for k in range(5):
        (root / "speech" / f"s{k}").mkdir(parents=True)
        for j in range(2):
            n = int(seconds * (0.7 + 0.4 * j + 0.1 * k) * 16000)
            x = 0.1 * rng.standard_normal(n) * (1 + np.sin(np.arange(n) / 900))
            sf.write(root / "speech" / f"s{k}" / f"{j}.wav", x.astype(np.float32), 16000)
    for c in range(3):
        (root / "noise" / f"n{c}").mkdir(parents=True)
        for r in range(3):
            sr = 44100 if (c, r) == (1, 1) else 16000
            x = (0.2 * rng.standard_normal(int(1.3 * seconds * sr))).astype(np.float32)
            sf.write(
                root / "noise" / f"n{c}" / f"{r}.wav", np.stack([x, x], 1) if sr == 44100 else x, sr
            )
    return str(root / "speech"), str(root / "noise")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("feat")
    out = root / "run"
    cfg = MixtureConfig(n_train=10, n_valid=3, n_test=3, seed=2)
    prep.prepare(*make_corpus(root), str(out), config=cfg, shard_size=4)
    return out


def reference_stft(x: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Independent numpy STFT [T, F]: reflect-padded centred frames, periodic sqrt-Hann, rfft."""
    win = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))
    xp = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + x.size // hop
    frames = np.stack([xp[t * hop : t * hop + n_fft] for t in range(n_frames)])
    return np.fft.rfft(frames * win, axis=-1)


def test_values_schema_and_metadata(run, tmp_path):
    cfg = feat.StftFeatures(psa_target=True)
    out = tmp_path / "f"
    s = feat.features(str(run), config=cfg, out_uri=str(out), shard_mb=0.4)
    assert s.rows_ok == 16 and s.rows_failed == 0 and s.shards > 3 and s.bytes > 0
    assert abs(s.hours * 3600 - sum(r["duration_s"] for r in _mixtures(run))) < 0.1
    part = out / "valid" / "part-00000.parquet"
    schema = pq.read_schema(part)
    assert schema.equals(feature_schema(cfg), check_metadata=False)
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert config_from_dict(json.loads(meta["batchsep.transform"])) == cfg
    assert meta["batchsep.transform_hash"] == transform_hash(cfg) == s.transform_hash
    assert meta["batchsep.split"] == "valid" and meta["batchsep.schema"] == "stft_features"
    assert read_transform(str(part)) == cfg.to_dict()
    mixtures = {r["mixture_id"]: r for r in _mixtures(run)}
    table = pq.read_table(part)
    cols = {c: _frames(table.column(c)) for c in cfg.columns()}
    for j, row in enumerate(table.to_pylist()):
        sig = prepare_render.load_mixture(mixtures[row["mixture_id"]])
        X, S = reference_stft(sig["noisy"]), reference_stft(sig["clean"])
        assert row["n_frames"] == 1 + row["n_samples"] // 128 == X.shape[0]
        assert cols["noisy_mag"][j].shape == (row["n_frames"], 257)
        np.testing.assert_allclose(cols["noisy_mag"][j], np.abs(X), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cols["clean_mag"][j], np.abs(S), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            cols["noise_mag"][j], np.abs(reference_stft(sig["noise"])), rtol=1e-4, atol=1e-5
        )
        psa = np.clip((S * X.conj()).real / (np.abs(X) ** 2 + 1e-8), 0, 1) * np.abs(X)
        np.testing.assert_allclose(cols["psa_target"][j], psa, rtol=1e-3, atol=1e-4)
        assert (cols["psa_target"][j] <= cols["noisy_mag"][j] + 1e-6).all()


def _frames(column: pa.ChunkedArray) -> list[np.ndarray]:
    """:func:`frames_column` of a column without nulls."""
    rows = frames_column(column)
    assert all(r is not None for r in rows), "a null row"
    return [r for r in rows if r is not None]


def _mixtures(run: Path) -> list[dict]:
    return pq.read_table(run / "mixtures.parquet").to_pylist()


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.rglob("part-*.parquet"))


def test_shards_are_bounded_complete_and_skipped_on_rerun(run, tmp_path):
    out = tmp_path / "f"
    cfg = feat.StftFeatures()
    s = feat.features(str(run), out_uri=str(out), shard_mb=0.3)
    per_frame = 3 * 257 * 4
    ids = []
    for p in _parts(out):
        t = pq.read_table(p, columns=["mixture_id", "split", "n_frames"]).to_pylist()
        assert len(t) == 1 or sum(r["n_frames"] for r in t) * per_frame <= 0.3e6
        assert {r["split"] for r in t} == {p.parent.name}
        ids += [r["mixture_id"] for r in t]
    assert sorted(ids) == sorted(r["mixture_id"] for r in _mixtures(run))
    mtimes = {p: p.stat().st_mtime_ns for p in _parts(out)}
    again = feat.features(str(run), out_uri=str(out), shard_mb=0.3)
    assert again.shards_skipped == again.shards == s.shards and again.rows_ok == 16
    assert {p: p.stat().st_mtime_ns for p in _parts(out)} == mtimes
    # another transform rewrites every shard; another shard size removes stale parts
    other = feat.features(
        str(run), config=feat.StftFeatures(noise_mag=False), out_uri=str(out), shard_mb=0.3
    )
    assert other.shards_skipped == 0 and other.transform_hash != s.transform_hash
    assert "noise_mag" not in pq.read_schema(_parts(out)[0]).names
    # ... and says so: every earlier shard replaced, from the earlier transform
    assert (other.shards_replaced, other.previous_transform) == (s.shards, s.transform_hash)
    assert again.shards_replaced == 0
    big = feat.features(str(run), config=cfg, out_uri=str(out), shard_mb=100)
    assert big.shards == 3 and len(_parts(out)) == 3 and big.rows_ok == 16


@pytest.mark.ray
@pytest.mark.slow
def test_killed_worker_is_retried_and_ray_data_reads_the_shards(run, tmp_path, ray_local):
    import ray

    from batchsep.distributed.runtime import RayRunner

    marker = str(tmp_path / "crashed-once")

    class CrashOnceRunner:  # local class: Ray pickles it (and `crashing`) by value
        def map_unordered(self, fn, items):
            def crashing(item, fn=fn, marker=marker):
                import os

                if not os.path.exists(marker):
                    open(marker, "w").close()
                    os._exit(1)
                return fn(item)

            return RayRunner(max_in_flight=2, max_retries=2).map_unordered(crashing, items)

    feat.features(str(run), out_uri=str(tmp_path / "serial"), shard_mb=0.3, runner=SerialRunner())
    s = feat.features(
        str(run), out_uri=str(tmp_path / "ray"), shard_mb=0.3, runner=CrashOnceRunner()
    )
    assert os.path.exists(marker) and s.rows_ok == 16
    a, b = _parts(tmp_path / "serial"), _parts(tmp_path / "ray")
    assert [p.relative_to(tmp_path / "serial") for p in a] == [
        p.relative_to(tmp_path / "ray") for p in b
    ]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    folder = tmp_path / "ray" / "train"
    ours = pq.read_table(folder).sort_by("mixture_id")
    batch = ray.data.read_parquet(str(folder)).take_batch(100, batch_format="pyarrow")
    assert isinstance(batch, pa.Table)
    theirs = batch.sort_by("mixture_id")
    assert theirs.num_rows == ours.num_rows == 10
    assert theirs.column("mixture_id").equals(ours.column("mixture_id"))
    for c in ("noisy_mag", "clean_mag", "noise_mag"):
        x, y = _frames(ours.column(c)), _frames(theirs.column(c))
        assert all(np.array_equal(u, v) for u, v in zip(x, y))


@pytest.mark.slow
def test_interrupted_driver_resumes(tmp_path):
    """SIGKILL `batchsep features` after some shards are committed, re-run: same shards as a clean run."""
    root = tmp_path / "c"
    run = root / "run"
    cfg = MixtureConfig(n_train=40, n_valid=3, n_test=3)
    prep.prepare(*make_corpus(root, seconds=2.0), str(run), config=cfg, shard_size=8)
    args = ["features", str(run), "--local", "--shard-mb", "0.2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchsep.cli.main", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(_parts(run / "features")) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(_parts(run / "features"))
    assert 3 <= done < 46, f"{done} shards committed when killed"
    r = CliRunner().invoke(main, args)
    assert r.exit_code == EXIT_OK, r.output
    assert f"46 shards ({done} already done)" in r.output
    assert "46 rows ok, 0 failed" in r.output
    clean = tmp_path / "clean"
    feat.features(str(run), out_uri=str(clean), shard_mb=0.2)
    a, b = _parts(run / "features"), _parts(clean)
    assert len(a) == len(b) == 46
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))


def test_logmel_of_a_scan_run(tmp_path):
    from batchsep.dsp.mel import log_mel
    from batchsep.dsp.resample import to_rate_mono
    from batchsep.io import audio

    corpus = tmp_path / "emo"
    corpus.mkdir()
    rng = np.random.default_rng(3)
    sf.write(corpus / "a.wav", 0.1 * rng.standard_normal(24000).astype(np.float32), 16000)
    sf.write(corpus / "b.flac", 0.1 * rng.standard_normal((44100, 2)).astype(np.float32), 44100)
    (corpus / "broken.wav").write_bytes(b"nope")
    scan(str(corpus), str(tmp_path / "run"))
    s = feat.features(str(tmp_path / "run"), config=feat.LogMelFeatures())
    assert s.rows_ok == 2 and s.shards == 1  # the broken file is an error row of the scan
    t = pq.read_table(tmp_path / "run" / "features" / "all" / "part-00000.parquet")
    assert t.schema.field("logmel").type.value_type.list_size == 80
    for row, m in zip(t.to_pylist(), _frames(t.column("logmel"))):
        a = audio.decode(Path(row["uri"]).read_bytes())
        ref = log_mel(to_rate_mono(a.samples, a.sample_rate, 16000))
        np.testing.assert_allclose(m, ref.T, rtol=1e-5, atol=1e-4)
        assert row["n_frames"] == m.shape[0]
    ds = FeatureDataset(str(tmp_path / "run" / "features"), split="all", columns=("logmel",))
    assert next(iter(ds))["logmel"].shape[1] == 80


def test_cli(run, tmp_path):
    cli = CliRunner()
    r = cli.invoke(
        main, ["features", str(run), "--local", "--out", str(tmp_path / "f"), "--no-noise-mag"]
    )
    assert r.exit_code == EXIT_OK, r.output
    assert "16 rows ok, 0 failed" in r.output and "per hour of audio" in r.output
    assert "noise_mag" not in pq.read_schema(_parts(tmp_path / "f")[0]).names
    assert "replaced" not in r.output
    r = cli.invoke(main, ["features", str(run), "--local", "--out", str(tmp_path / "f")])
    assert r.exit_code == EXIT_OK, r.output
    assert "shards of an earlier features run (other settings: transform " in r.output
    r = cli.invoke(main, ["features", str(tmp_path), "--local"])
    assert r.exit_code == EXIT_USAGE and "has no mixtures.parquet" in r.output
