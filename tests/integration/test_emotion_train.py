"""Training emotion models end to end: outputs, resume, held-out actors, Ray Train DDP, the shipped tagger."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from batchsep.dsp.mel import EmotionFeatureConfig
from batchsep.io import checkpoint
from batchsep.models.emotion import EMOTIONS
from batchsep.pipeline.emotion_train import (
    EmotionTrainJob,
    lr_factor,
    run_emotion_worker,
    train_emotion,
)
from batchsep.pipeline.tag import EmotionTagger

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


def _ray_loop(config: dict) -> None:  # runs on every Ray Train worker
    import ray.train
    import ray.train.torch

    from batchsep.distributed.train import all_reduce_mean
    from batchsep.pipeline.emotion_train import run_emotion_worker as worker

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
@pytest.mark.heavy  # measured 0.17 accuracy (chance 0.125) in its short budget: not yet reliable
def test_short_training_beats_chance_on_unseen_actors(shared_data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = _ravdess_subset(shared_data, tmp_path / "ravdess", (1, 2, 3, 4, 13, 14))
    s = train_emotion(
        data, str(tmp_path / "m"), model="emotion-cnn", valid_actors=[4], test_actors=[13, 14],
        overrides={"channels": [8, 16, 32, 32], "train.max_epochs": 6, "train.lr": 3e-3},
        verbose=False,
    )  # fmt: skip
    test = s.metrics["test"]
    assert test["actors"] == [13, 14] and test["n"] == 120
    assert test["accuracy"] > 0.22, test  # chance 0.125 (largest class 0.133)


@pytest.mark.realdata
def test_shipped_tagger_output_schema(shared_data: Path) -> None:
    from batchsep.io.audio import decode

    uri = checkpoint.resolve("default-emotion")
    assert uri.endswith("pretrained/emotion"), "default-emotion must resolve to the shipped folder"
    meta = json.loads((Path(uri) / "config.json").read_text())
    tagger = EmotionTagger("default-emotion")
    assert tagger.features.to_dict() == meta["features"]
    assert tagger.model_name == meta["model_name"]
    f = shared_data / "emotion" / "ravdess" / "Actor_13" / "03-01-05-02-01-01-13.flac"
    x = decode(f.read_bytes()).samples[0]
    stream = tagger.stream()
    stream.feed(x)
    r = stream.result()
    assert set(r) == {"emotion_label", "emotion_probs", "emotion_segments", "emotion_warning"}
    assert r["emotion_label"] in EMOTIONS and r["emotion_warning"] is None
    assert set(r["emotion_probs"]) == set(EMOTIONS)
    assert abs(sum(r["emotion_probs"].values()) - 1) < 1e-5
    assert r["emotion_label"] == max(r["emotion_probs"], key=r["emotion_probs"].get)
    for seg in r["emotion_segments"]:
        assert 0 <= seg["start_s"] < seg["end_s"] <= len(x) / SR + 1e-6
        assert seg["label"] in EMOTIONS and set(seg["probs"]) == set(EMOTIONS)


def test_fisher_ratio_known_answer_and_plot_checks() -> None:
    from batchsep.errors import ParameterError
    from batchsep.pipeline.latent import fisher_ratio, plot_latent_space

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


def test_vae_latent_figures_of_a_trained_model(synthetic: str, tmp_path: Path) -> None:
    from batchsep.models.base import deserialize
    from batchsep.pipeline.latent import latent_sections

    out = str(tmp_path / "vae")
    over = {"train.max_epochs": 3, "train.lr": 3e-3}
    train_emotion(synthetic, out, model="emotion-vae", overrides=over, valid_actors=[3],
                  test_actors=[4], batch_size=8, verbose=False)  # fmt: skip
    payload = checkpoint.read_checkpoint(out)
    metrics = checkpoint.read_metrics(out)
    assert metrics is not None
    sections = latent_sections(
        deserialize(payload),
        features=payload["features"],
        metrics=metrics,  # type: ignore[arg-type]
    )
    assert [s[0] for s in sections] == ["latent_all.png", "latent_held_out.png"]
    assert all(png[:4] == b"\x89PNG" for _, png, _ in sections)
    assert "actors [3, 4]" in sections[1][2] and "64 utterances" in sections[0][2]
    # not reachable (e.g. the shipped model elsewhere): no figure, no error
    gone = {**metrics, "data": {**metrics["data"], "data_uri": str(tmp_path / "missing")}}
    assert latent_sections(deserialize(payload), features=None, metrics=gone) == []  # type: ignore[arg-type]
