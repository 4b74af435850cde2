"""Training emotion models end to end: outputs, resume, held-out actors, Ray Train DDP, the shipped tagger."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from batchsep.dsp.mel import EmotionFeatureConfig
from batchsep.io import checkpoint
from batchsep.models.emotion import EMOTIONS, EmotionVae
from batchsep.pipeline.enhance.tag import MIN_CONFIDENCE, EmotionTagger
from batchsep.pipeline.train.emotion import train_emotion
from batchsep.pipeline.train.emotion_worker import EmotionTrainJob, lr_factor, run_emotion_worker

SR = 16000
SMALL_CNN = {"channels": [4, 8, 8, 16], "train.max_epochs": 2, "train.lr": 3e-3}


def _write_synthetic(root: Path, actors: tuple[int, ...] = (1, 2, 3, 4)) -> None:
    """A RAVDESS-named corpus whose emotion is the pitch of a harmonic tone (learnable across actors)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(0.8 * SR)) / SR
    for a in actors:
        d = root / f"Actor_{a:02d}"
        d.mkdir(parents=True)
        for e in range(8):
            for rep in (1, 2):
                f0 = 110.0 * 1.25**e * (1 + 0.02 * a)
                x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4))
                sil = 1e-4 * rng.standard_normal(SR // 4)
                y = np.concatenate([sil, 0.2 * x, sil]).astype(np.float32)
                sf.write(d / f"03-01-{e + 1:02d}-01-01-{rep:02d}-{a:02d}.wav", y, SR)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("emo") / "corpus"
    _write_synthetic(root)
    return str(root)


def test_lr_factor_warms_up_then_decays() -> None:
    f = [lr_factor(e, max_epochs=10, warmup=2) for e in range(10)]
    assert f[0] < f[1] < f[2] == 1.0 and all(a > b for a, b in itertools.pairwise(f[2:]))
    assert f[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 7 / 8)))


def test_train_outputs_metrics_and_resume(synthetic: str, tmp_path: Path) -> None:
    out = str(tmp_path / "model")
    kw = dict(model="emotion-cnn", valid_actors=[3], test_actors=[4], batch_size=8, verbose=False)
    s = train_emotion(synthetic, out, overrides=SMALL_CNN, **kw)  # type: ignore[arg-type]
    assert s.epochs == 2 and s.model == "emotion-cnn"
    meta = json.loads((Path(out) / "config.json").read_text())
    assert meta["features"]["n_mels"] == 80 and meta["features"]["n_frames"] == 128
    m = s.metrics
    assert m["valid"]["actors"] == [3] and m["test"]["actors"] == [4]
    assert m["data"]["test_actors"] == [4] and m["test"]["n"] == 16
    cm = np.array(m["test"]["confusion"])
    assert cm.shape == (8, 8) and cm.sum() == 16 and cm.sum(1).tolist() == [2] * 8
    assert np.trace(cm) / 16 == pytest.approx(m["test"]["accuracy"])
    for name in ("state.pt", "curves.png", "metrics.json", "weights.safetensors"):
        assert (Path(out) / name).is_file()
    # the tagger reads the model and its features from the folder
    tagger = EmotionTagger(out)
    assert tagger.features.to_dict() == meta["features"]
    probs = tagger.predict([np.random.default_rng(1).standard_normal(SR).astype(np.float32)])
    assert probs.shape == (1, 8) and abs(float(probs.sum()) - 1) < 1e-5
    # a larger epoch budget continues from state.pt
    more = train_emotion(synthetic, out, overrides={**SMALL_CNN, "train.max_epochs": 3}, **kw)  # type: ignore[arg-type]
    assert more.epochs == 3
    assert [r["epoch"] for r in more.metrics["history"]] == [0, 1, 2]


def test_train_rejects_bad_requests(synthetic: str, tmp_path: Path) -> None:
    from batchsep.errors import ConfigError, ParameterError, RegistryError

    with pytest.raises(ParameterError, match="not an emotion model"):
        train_emotion(synthetic, str(tmp_path / "a"), model="lstm")
    with pytest.raises(RegistryError):
        train_emotion(synthetic, str(tmp_path / "b"), model="nope")
    with pytest.raises(ConfigError, match="unknown key"):
        train_emotion(synthetic, str(tmp_path / "c"), overrides=["bogus=1"])
    with pytest.raises(ParameterError, match="both valid_actors and test_actors"):
        train_emotion(synthetic, str(tmp_path / "d"), valid_actors=[1], test_actors=[1])


def _tag_labels(out: Path) -> dict[str, str]:
    """``rel_path -> emotion_label`` of a tag run's committed results."""
    import pyarrow.parquet as pq

    rows = [r for f in sorted((out / "results").glob("part-*.parquet"))
            for r in pq.read_table(f).to_pylist()]  # fmt: skip
    assert rows and all(r["status"] == "ok" for r in rows), rows[:1]
    return {r["rel_path"]: r["emotion_label"] for r in rows}


CLI_SMALL = ["--config", "channels=[4, 8, 8, 16]", "--config", "train.lr=3e-3",
             "--config", "data.valid_actors=[3]", "--config", "data.test_actors=[4]",
             "--max-epochs", "2", "--batch-size", "8"]  # fmt: skip


def test_cli_train_emotion_then_tag(synthetic: str, tmp_path: Path) -> None:
    """`batchsep train --model emotion-cnn` on an audio folder, then `batchsep tag` with that model."""
    from click.testing import CliRunner

    from batchsep.cli.main import main

    cli, out = CliRunner(), str(tmp_path / "cnn")
    r = cli.invoke(main, ["train", "--model", "emotion-cnn", "--features", synthetic, "--out", out,
                          "--local", *CLI_SMALL])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "trained emotion-cnn" in r.output and "best epoch" in r.output
    m = checkpoint.read_metrics(out)
    assert m is not None and m["epochs"] == 2 and m["test"]["actors"] == [4]
    assert m["data"]["valid_actors"] == [3] and m["train_config"]["lr"] == 3e-3
    actor4 = str(Path(synthetic) / "Actor_04")
    r = cli.invoke(main, ["tag", actor4, str(tmp_path / "tags"), "--emotion-model", out, "--local"])
    assert r.exit_code == 0, r.output
    labels = _tag_labels(tmp_path / "tags")
    assert len(labels) == 16 and set(labels.values()) <= set(EMOTIONS)
    # the CLI's tags are the model's own predictions on the same files
    tagger = EmotionTagger(out)
    files = sorted(Path(actor4).glob("*.wav"))
    probs = tagger.predict([sf.read(f, dtype="float32")[0] for f in files])
    assert [labels[f.name] for f in files] == [EMOTIONS[i] for i in probs.argmax(1)]
    # usage errors: no such corpus; init_from is DR-NMF only
    r = cli.invoke(main, ["train", "--model", "emotion-vae", "--features", str(tmp_path / "none"),
                          "--local"])  # fmt: skip
    assert r.exit_code == 2 and "does not exist" in r.output
    r = cli.invoke(main, ["train", "--model", "emotion-cnn", "--features", synthetic, "--out",
                          str(tmp_path / "x"), "--local", "--init-from", out])  # fmt: skip
    assert r.exit_code == 2 and "is not supported for 'emotion-cnn'" in r.output
    # a corpus without RAVDESS names: one clear line, before any training worker (was a worker traceback)
    (tmp_path / "plain").mkdir()
    sf.write(tmp_path / "plain" / "speech.wav", np.zeros(1600, np.float32), 16000)
    r = cli.invoke(main, ["train", "--model", "emotion-cnn", "--features", str(tmp_path / "plain"),
                          "--out", str(tmp_path / "y"), "--local"])  # fmt: skip
    assert r.exit_code == 2 and "no file named like RAVDESS" in r.output
    from batchsep.errors import BatchsepError
    from batchsep.pipeline.train.emotion import train_emotion

    with pytest.raises(BatchsepError, match="no file named like RAVDESS"):
        train_emotion(str(tmp_path / "plain"), str(tmp_path / "z"), model="emotion-cnn",
                      fit_executor=lambda job: pytest.fail("a worker started"))  # fmt: skip


@pytest.mark.ray
@pytest.mark.slow
def test_api_train_emotion_vae_on_ray_train(
    synthetic: str, tmp_path: Path, ray_local: None
) -> None:
    """`batchsep.api.train` sends emotion models through RayTrainExecutor (run_worker dispatches)."""
    import batchsep.api

    out = str(tmp_path / "vae")
    s = batchsep.api.train(
        synthetic, model="emotion-vae", out_uri=out, max_epochs=2, batch_size=8, workers=1,
        config={"data.valid_actors": [3], "data.test_actors": [4]}, verbose=False,
    )  # fmt: skip
    assert s.model == "emotion-vae" and s.epochs == 2 and s.metrics["test"]["n"] == 16
    payload = checkpoint.read_checkpoint(out)
    assert payload["model_name"] == "emotion-vae" and payload["features"]["n_frames"] == 128
    assert EmotionTagger(out).predict([np.zeros(SR, np.float32)]).shape == (1, 8)


def _ray_loop(config: dict) -> None:  # runs on every Ray Train worker
    import ray.train
    import ray.train.torch

    from batchsep.distributed.train import all_reduce_mean
    from batchsep.pipeline.train.emotion_worker import run_emotion_worker as worker

    torch.set_num_threads(1)
    ctx = ray.train.get_context()
    worker(
        config["job"], rank=ctx.get_world_rank(), world_size=ctx.get_world_size(),
        device=ray.train.torch.get_device(), wrap=ray.train.torch.prepare_model,
        reduce_metrics=all_reduce_mean,
    )  # fmt: skip


@pytest.mark.ray
@pytest.mark.slow
def test_ray_train_ddp_two_workers(synthetic: str, tmp_path: Path, ray_local: None) -> None:
    """The emotion worker under Ray Train's TorchTrainer (gloo DDP), as RayTrainExecutor runs workers."""
    import sys

    import ray.cloudpickle
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    out = str(tmp_path / "ddp")
    job = EmotionTrainJob(
        "emotion-cnn", synthetic, out, {"channels": [4, 8, 8, 16]},
        {"lr": 3e-3, "max_epochs": 2, "patience": None}, EmotionFeatureConfig().to_dict(),
        valid_actors=(3,), test_actors=(4,), batch_size=8, verbose=False,
    )  # fmt: skip
    TorchTrainer(
        _ray_loop, train_loop_config={"job": job},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(storage_path=str(tmp_path / "ray")),
    ).fit()  # fmt: skip
    m = checkpoint.read_metrics(out)
    assert m is not None and m["epochs"] == 2 and m["test"]["n"] == 16
    serial = run_emotion_worker(EmotionTrainJob(**{**job.__dict__, "out_uri": str(tmp_path / "s")}))
    assert serial is not None
    # each DDP rank trained on half of the 32 training items: half the steps per epoch
    assert m["history"][0]["steps"] * 2 == serial["history"][0]["steps"]


def _ravdess_subset(shared: Path, dest: Path, actors: tuple[int, ...]) -> str:
    """Symlinks to the files of some actors (the real data is never copied)."""
    for a in actors:
        d = dest / f"Actor_{a:02d}"
        d.mkdir(parents=True)
        for f in sorted((shared / "emotion" / "ravdess" / f"Actor_{a:02d}").glob("*.flac")):
            os.symlink(f, d / f.name)
    return str(dest)


@pytest.mark.realdata
@pytest.mark.slow
def test_short_training_beats_chance_on_unseen_actors(shared_data: Path, tmp_path: Path) -> None:
    """10 epochs of a small CNN on actors 1-7 (valid 8) from the audio; scored on actors 13-14 (~35 s).

    Measured on actors 13-14 (120 files): accuracy 0.325 (seed 0); 0.267, 0.258 with train.seed 1, 2.
    """
    torch.set_num_threads(1)
    data = _ravdess_subset(shared_data, tmp_path / "ravdess", (1, 2, 3, 4, 5, 6, 7, 8, 13, 14))
    over = {
        "channels": [8, 16, 32, 32],
        "mixup_alpha": 0.0,
        "train.max_epochs": 10,
        "train.lr": 3e-3,
    }
    s = train_emotion(data, str(tmp_path / "m"), model="emotion-cnn", valid_actors=[8],
                      test_actors=[13, 14], overrides=over, verbose=False)  # fmt: skip
    test = s.metrics["test"]
    assert test["actors"] == [13, 14] and test["n"] == 120
    assert test["accuracy"] > 0.22 and test["uar"] > 0.2, test  # chance 0.125 (largest class 0.133)


@pytest.mark.realdata
def test_shipped_tagger_output_schema(shared_data: Path) -> None:
    from batchsep.io.audio import decode

    uri = checkpoint.resolve("default-emotion")
    assert uri.endswith("pretrained/emotion"), "default-emotion must resolve to the shipped folder"
    meta = json.loads((Path(uri) / "config.json").read_text())
    tagger = EmotionTagger("default-emotion")
    assert meta["features"] == {"type": "emotion_stats", "sample_rate": SR}
    assert tagger.input_kind == "stats" and tagger.model_name == meta["model_name"]
    assert meta["config"]["temperature"] > 1  # calibrated: the raw MLPs are over-confident
    f = shared_data / "emotion" / "ravdess" / "Actor_13" / "03-01-05-02-01-01-13.flac"
    x = decode(f.read_bytes()).samples[0]
    stream = tagger.stream()
    stream.feed(x)
    r = stream.result()
    assert set(r) == {"emotion_label", "emotion_probs", "emotion_segments", "emotion_warning"}
    assert r["emotion_label"] in EMOTIONS and set(r["emotion_probs"]) == set(EMOTIONS)
    assert (r["emotion_warning"] is None) == (max(r["emotion_probs"].values()) >= MIN_CONFIDENCE)
    assert abs(sum(r["emotion_probs"].values()) - 1) < 1e-5
    assert r["emotion_label"] == max(r["emotion_probs"], key=r["emotion_probs"].get)
    for seg in r["emotion_segments"]:
        assert 0 <= seg["start_s"] < seg["end_s"] <= len(x) / SR + 1e-6
        assert seg["label"] in EMOTIONS and set(seg["probs"]) == set(EMOTIONS)


def _tag_files(tagger: EmotionTagger, files: list[Path]) -> list[dict[str, Any]]:
    from batchsep.dsp.resample import to_rate_mono
    from batchsep.io.audio import decode

    out = []
    for f in files:
        d = decode(f.read_bytes())
        stream = tagger.stream()
        stream.feed(to_rate_mono(d.samples, d.sample_rate, SR))
        out.append(stream.result())
    return out


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_recipe_beats_chance_on_held_out_actors(shared_data: Path, tmp_path: Path) -> None:
    """The shipped recipe (emotion-stats) trained on actors 1-12 only, tagged through the product path
    (voiced segments, duration-weighted) on the 240 files of actors 13-16 it never heard.

    The shipped model itself has heard every actor of ../shared/data (its card states CV figures only),
    so the held-out check retrains its recipe here: speed copies but no noise copies, 3 members, 2 CV
    folds, to stay near a minute. The previous test scored the previous (emotion-cnn) tagger on 64 of these
    files and asserted accuracy and UAR > 0.30; this one asserts > 0.40 on all 240 (chance 0.125).
    """
    from batchsep.corpus.ravdess import parse_ravdess_name
    from batchsep.evaluation.emotion import emotion_summary
    from batchsep.pipeline.train.emotion_stats import train_emotion_stats

    torch.set_num_threads(1)
    root = shared_data / "emotion" / "ravdess"
    out = str(tmp_path / "m")
    train_emotion_stats(str(root), out, overrides={"n_members": 3}, n_folds=2,
                        actors=range(1, 13), verbose=False)  # fmt: skip
    trained = checkpoint.read_metrics(out)
    assert trained is not None and trained["trained_on_actors"] == list(range(1, 13))
    files = [f for a in (13, 14, 15, 16) for f in sorted((root / f"Actor_{a:02d}").glob("*.flac"))]
    infos = [parse_ravdess_name(f.name) for f in files]
    assert len(files) == 240
    res = _tag_files(EmotionTagger(out), files)
    pred = [r["emotion_label"] for r in res]
    m = emotion_summary([i.emotion for i in infos], pred, speakers=[i.actor for i in infos])
    assert m["accuracy"] > 0.40 and m["uar"] > 0.40, m  # chance 0.125
    assert m["speaker_acc_min"] >= 0.25, m  # no held-out actor near chance


@pytest.mark.realdata
def test_shipped_tagger_flags_ordinary_speech_instead_of_one_confident_class(
    shared_data: Path,
) -> None:
    """Read speech (LibriSpeech, not acted): the tagger must not put most files in one class silently.

    Its card: trained on acted RAVDESS emotions; on read speech most files are flagged "emotion uncertain".
    """
    torch.set_num_threads(1)
    speakers = sorted((shared_data / "speech" / "librispeech").iterdir())
    files = [sorted(s.glob("*.flac"))[0] for s in speakers]  # one file per speaker (10)
    res = _tag_files(EmotionTagger("default-emotion"), files)
    confident = [r["emotion_label"] for r in res if r["emotion_warning"] is None]
    top = max((confident.count(c) for c in set(confident)), default=0)
    assert top <= len(files) // 2, (confident, [r["emotion_warning"] for r in res])
    for r in res:
        w = r["emotion_warning"]
        assert w is None or w.startswith("emotion uncertain"), w
        assert (w is not None) == (max(r["emotion_probs"].values()) < MIN_CONFIDENCE)


def test_fisher_ratio_known_answer_and_plot_checks() -> None:
    from batchsep.errors import ParameterError
    from batchsep.pipeline.inspect.latent import fisher_ratio, plot_latent_space

    labels = np.repeat([0, 1], 4)
    mu = np.stack(
        [np.where(labels == 0, -1.0, 1.0) + np.tile([0.1, -0.1], 4), np.tile([1.0, -1.0], 4)], 1
    )
    # dim 0: class means -1/+1 (variance 1), within-class variance 0.01 -> 100; dim 1: means equal -> 0
    np.testing.assert_allclose(fisher_ratio(mu, labels), [100.0, 0.0], atol=1e-9)
    png = plot_latent_space(mu, np.abs(mu), labels, dims=[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ParameterError, match="labels must lie"):
        plot_latent_space(mu, mu, labels + 8)
    with pytest.raises(ParameterError, match="dims"):
        plot_latent_space(mu, mu, labels, dims=[2])


@pytest.fixture(scope="module")
def tiny_vae(synthetic: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("vae") / "vae")
    over = {"train.max_epochs": 3, "train.lr": 3e-3}
    train_emotion(synthetic, out, model="emotion-vae", overrides=over, valid_actors=[3],
                  test_actors=[4], batch_size=8, verbose=False)  # fmt: skip
    return out


def test_vae_latent_figures_of_a_trained_model(tiny_vae: str, tmp_path: Path) -> None:
    from batchsep.models.base import deserialize
    from batchsep.pipeline.inspect.latent import latent_sections

    out = tiny_vae
    payload = checkpoint.read_checkpoint(out)
    metrics = checkpoint.read_metrics(out)
    assert metrics is not None
    vae = deserialize(payload)
    assert isinstance(vae, EmotionVae)
    sections = latent_sections(
        vae,
        features=payload["features"],
        metrics=metrics,  # type: ignore[arg-type]
    )
    assert [s[0] for s in sections] == ["latent_all.png", "latent_held_out.png"]
    assert all(png[:4] == b"\x89PNG" for _, png, _ in sections)
    assert "actors [3, 4]" in sections[1][2] and "64 utterances" in sections[0][2]
    # not reachable (e.g. the shipped model elsewhere): no figure, no error
    gone = {**metrics, "data": {**metrics["data"], "data_uri": str(tmp_path / "missing")}}
    assert latent_sections(deserialize(payload), features=None, metrics=gone) == []  # type: ignore[arg-type]


def test_cli_inspect_emotion_vae_writes_latent_plots(tiny_vae: str, tmp_path: Path) -> None:
    """`batchsep inspect VAE --out DIR`: seed 003's σ-against-μ plots (+ learning curves) and index.md."""
    from click.testing import CliRunner

    from batchsep.cli.main import main

    out = tmp_path / "insp"
    r = CliRunner().invoke(main, ["inspect", tiny_vae, "--out", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("latent_all.png", "latent_held_out.png", "curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    index = (out / "index.md").read_text()
    assert "# Model `emotion-vae`" in index and "![latent_all.png](latent_all.png)" in index
    assert "Fisher ratio per dimension" in index and "z8" in index and "z9" not in index


@pytest.mark.slow
def test_cli_train_emotion_stats_then_tag_flags_low_confidence(
    synthetic: str, tmp_path: Path
) -> None:
    """`batchsep train --model emotion-stats`: CV figures + temperature, a tagger, uncertain files flagged."""
    from click.testing import CliRunner

    from batchsep.cli.main import main

    cli, out = CliRunner(), str(tmp_path / "stats")
    r = cli.invoke(main, ["train", "--model", "emotion-stats", "--features", synthetic, "--out", out,
                          "--local", "--max-epochs", "30", "--config", "data.n_folds=2",
                          "--config", "n_members=2", "--config", "hidden=32"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "trained emotion-stats" in r.output and "held-out actors [1, 2, 3, 4]" in r.output
    m = checkpoint.read_metrics(out)
    assert m is not None and [f["actors"] for f in m["cv"]["folds"]] == [[1, 2], [3, 4]]
    assert m["trained_on_actors"] == [1, 2, 3, 4] and m["n_train"] == 3 * 64  # 2 speed copies each
    cfg = json.loads((Path(out) / "config.json").read_text())
    assert cfg["config"]["temperature"] == m["cv"]["temperature"] > 0
    assert m["cv"]["summary"]["accuracy"]["mean"] > 0.3  # pitch classes; chance 0.125
    tagger = EmotionTagger(out)
    assert tagger.input_kind == "stats"
    files = sorted((Path(synthetic) / "Actor_04").glob("*.wav"))
    probs = tagger.predict([sf.read(f, dtype="float32")[0] for f in files])
    assert probs.shape == (16, 8) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # the file result: a confident file has no warning, an unconfident one says so
    for threshold, flagged in ((0.0, False), (1.01, True)):
        tagger.min_confidence = threshold
        stream = tagger.stream()
        stream.feed(sf.read(files[0], dtype="float32")[0])
        res = stream.result()
        assert res["emotion_label"] == max(res["emotion_probs"], key=res["emotion_probs"].get)
        assert (res["emotion_warning"] is not None) == flagged
        assert not flagged or res["emotion_warning"].startswith("emotion uncertain")
    r = cli.invoke(main, ["tag", str(Path(synthetic) / "Actor_04"), str(tmp_path / "tags"),
                          "--emotion-model", out, "--local"])  # fmt: skip
    assert r.exit_code == 0, r.output
    labels = _tag_labels(tmp_path / "tags")
    assert [labels[f.name] for f in files] == [EMOTIONS[i] for i in probs.argmax(1)]
