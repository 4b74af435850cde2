"""Seed 004's models end to end: ``batchsep train --model sce|dc|dae`` on a tiny features run, reload, enhance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner

from batchsep.cli.main import EXIT_OK, main
from batchsep.errors import ConfigError
from batchsep.io import checkpoint, storage
from batchsep.models.base import deserialize
from batchsep.models.embedding import EmbeddingMaskModel
from batchsep.pipeline.enhance.enhancer import load_enhancer
from batchsep.pipeline.features import driver as feat
from batchsep.pipeline.features.worker import feature_schema, shard_bytes
from batchsep.pipeline.train import driver as tr
from batchsep.pipeline.train.batches import make_sources
from batchsep.pipeline.train.data import DataOptions, distinct_values
from batchsep.training.data.features import FeatureDataset

N_FFT = 32
F = N_FFT // 2 + 1
SPEAKERS = {"train": ["s0", "s1", "s2"], "valid": ["v0"]}
DATA = DataOptions(batch_size=8, crop_frames=30)
SMALL = {"n_layers": 1, "hidden": 12, "embed_dim": 4, "train.lr": 1e-2, "train.patience": None}


def _frames(items: list[np.ndarray]) -> pa.Array:
    offsets = np.cumsum([0] + [len(a) for a in items]).astype(np.int32)
    flat = np.concatenate([a.ravel() for a in items]).astype(np.float32)
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.FixedSizeListArray.from_arrays(pa.array(flat), F)
    )


def write_run(root: Path, *, n_train: int = 40, n_valid: int = 8, seed: int = 0) -> str:
    """Feature shards (F = 17, with ``noise_mag``) of synthetic mixtures: low-frequency harmonic
    "speech" of a few speakers plus broadband high-frequency "noise" of two classes."""
    rng = np.random.default_rng(seed)
    f = np.arange(F)[:, None]
    Ws = np.exp(-0.5 * ((f - rng.uniform(1, 7, 6)) / 0.8) ** 2)
    Wn = np.exp(-0.5 * ((f - rng.uniform(8, 16, 4)) / 3.0) ** 2) + 0.05
    config = feat.StftFeatures(n_fft=N_FFT, hop_length=8, noise_mag=True)
    for split, n in (("train", n_train), ("valid", n_valid)):
        rows: list[dict[str, Any]] = []
        for i in range(n):
            T = int(rng.integers(20, 41))
            Hs = rng.gamma(0.5, 1.0, (6, T)) * (rng.random((6, T)) < 0.4)
            Hn = rng.gamma(2.0, 0.3, (4, T))
            clean, noise = (Ws @ Hs).T, (Wn @ Hn).T
            rows.append({"mixture_id": f"{split}-{i:04d}", "split": split, "index": i,
                         "speaker": SPEAKERS[split][i % len(SPEAKERS[split])],
                         "noise_class": f"n{i % 2}", "n_frames": T, "status": "ok",
                         "noisy_mag": clean + noise, "clean_mag": clean, "noise_mag": noise})  # fmt: skip
        schema = feature_schema(config, {"batchsep.num_ok": str(n), "batchsep.num_rows": str(n)})
        cols = {
            fld.name: _frames([r[fld.name] for r in rows])
            if fld.name.endswith("_mag")
            else pa.array([r.get(fld.name) for r in rows], fld.type)
            for fld in schema
        }
        data = shard_bytes(pa.Table.from_pydict(cols, schema=schema))
        storage.write_bytes(str(root / "features" / split / "part-00000.parquet"), data)
    return str(root)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_run(tmp_path_factory.mktemp("emb"))


def test_batches_carry_noise_and_source_indices(run: str) -> None:
    features = f"{run}/features"
    assert distinct_values(f"{features}/train", "speaker") == ("s0", "s1", "s2")
    data = DataOptions(
        batch_size=8, crop_frames=None, extra_columns=("noise_mag",),
        index_columns=(("speaker_idx", "speaker", ("s0", "s1", "s2")),),
    )  # fmt: skip
    train_src, valid_src = make_sources(features, data)
    batch = next(iter(train_src(0)))
    assert batch["noise_mag"].shape == batch["noisy_mag"].shape
    torch.testing.assert_close(batch["noisy_mag"], batch["clean_mag"] + batch["noise_mag"])
    assert batch["speaker_idx"].dtype == torch.int64 and set(batch["speaker_idx"].tolist()) <= {
        0,
        1,
        2,
    }
    assert set(next(iter(valid_src()))["speaker_idx"].tolist()) == {-1}  # unseen speaker
    ds = FeatureDataset(features, split="train", shuffle=False, batch_size=40,
                        index_columns={"noise_idx": ("noise_class", {"n1": 0})})  # fmt: skip
    assert sorted(set(next(iter(ds))["noise_idx"].tolist())) == [-1, 0]


@pytest.mark.parametrize(
    ("model", "over"),
    [
        ("sce", {**SMALL, "n_speakers": "auto", "n_noises": "auto"}),
        ("dc", SMALL),
        (
            "dae",
            {"n_layers": 2, "channels": 4, "kernel": 3, "train.lr": 1e-2, "train.patience": None},
        ),
    ],
)
def test_train_reload_enhance(run: str, tmp_path: Path, model: str, over: dict) -> None:
    out = str(tmp_path / model)
    s = tr.train(run, out, model=model, overrides={**over, "train.max_epochs": 6}, data=DATA,
                 verbose=False)  # fmt: skip
    hist = s.metrics["history"]
    assert len(hist) == 6 and hist[-1]["train_loss"] < 0.9 * hist[0]["train_loss"]
    assert s.best_valid_loss is not None and np.isfinite(s.best_valid_loss)
    if model == "sce":  # one source vector per train speaker and noise class
        cfg = json.loads((Path(out) / "config.json").read_text())["config"]
        assert (cfg["n_speakers"], cfg["n_noises"]) == (3, 2)
        assert s.metrics["data"]["speakers"] == ["s0", "s1", "s2"]
    if model in ("sce", "dc"):
        assert s.metrics["data"]["dominance_labels"] == "noise_mag"
    a = deserialize(checkpoint.read_checkpoint(out)).eval()
    b = deserialize(checkpoint.read_checkpoint(out)).eval()
    mag = torch.rand(2, F, 13)
    with torch.no_grad():
        torch.testing.assert_close(a(mag), b(mag), rtol=0, atol=0)
    enhancer, name, _ = load_enhancer(out)
    x = np.random.default_rng(1).standard_normal((1, 4000)).astype(np.float32) * 0.1
    y = enhancer(x)
    assert name == model and y.shape == x.shape and np.isfinite(y).all()
    if model != "dae":  # the clustering ("C") inference of the same model: a binary mask
        assert isinstance(a, EmbeddingMaskModel)
        a.set_inference("kmeans")
        with torch.no_grad():
            m = a(mag)
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}


def test_auto_sources_only_for_sce(run: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'n_speakers' for dc"):
        tr.train(run, str(tmp_path / "x"), model="dc", overrides={**SMALL, "n_speakers": "auto"},
                 data=DATA, verbose=False)  # fmt: skip


def test_cli_trains_dc(run: str, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    res = CliRunner().invoke(main, [
        "train", "--model", "dc", "--features", run, "--out", str(out), "--local",
        "--max-epochs", "1", "--batch-size", "8", "--crop-frames", "30",
        "--config", "n_layers=1", "--config", "hidden=8", "--config", "embed_dim=3",
    ])  # fmt: skip
    assert res.exit_code == EXIT_OK, res.output
    assert "trained dc" in res.output and (out / "weights.safetensors").is_file()
