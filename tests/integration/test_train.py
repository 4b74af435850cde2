"""The train stage on Ray: DDP with 2 CPU workers on Ray Train, SNMF learning as Ray tasks, and S3 output."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from batchsep.io import checkpoint, storage
from batchsep.models.base import deserialize
from batchsep.models.snmf import SnmfEnhancer
from batchsep.pipeline.train import driver as tr
from batchsep.pipeline.train.data import DataOptions
from batchsep.pipeline.train.outputs import read_state

_spec = importlib.util.spec_from_file_location(
    "unit_test_train", Path(__file__).resolve().parents[1] / "unit" / "pipeline" / "test_train.py"
)
assert _spec is not None and _spec.loader is not None
_unit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_unit)
write_features, F = _unit.write_features, _unit.F

DATA = DataOptions(batch_size=8, crop_frames=30, snmf_frames=600)
LSTM = {"n_layers": 1, "hidden": 16, "train.lr": 1e-2, "train.max_epochs": 2}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_features(tmp_path_factory.mktemp("run"))


@pytest.mark.ray
@pytest.mark.slow
def test_ddp_two_cpu_workers(run, tmp_path, ray_local):
    from batchsep.distributed.train import RayTrainExecutor

    out = str(tmp_path / "ddp")
    s = tr.train(run, out, model="lstm", overrides=LSTM, data=DATA,
                 fit_executor=RayTrainExecutor(workers=2), verbose=False)  # fmt: skip
    serial = tr.train(run, str(tmp_path / "serial"), model="lstm", overrides=LSTM, data=DATA,
                      verbose=False)  # fmt: skip
    assert s.epochs == serial.epochs == 2 and s.param_count == serial.param_count
    assert s.best_valid_loss is not None and np.isfinite(s.best_valid_loss)
    hist = s.metrics["history"]
    assert [r["epoch"] for r in hist] == [0, 1] and all(np.isfinite(r["train_loss"]) for r in hist)
    # each worker trained on its share of the batches, and validated on the whole split
    assert hist[0]["steps"] < serial.metrics["history"][0]["steps"]
    assert hist[0]["valid_logs"].keys() == serial.metrics["history"][0]["valid_logs"].keys()
    model = deserialize(checkpoint.read_checkpoint(out))
    mag = torch.rand(3, F, 11)
    assert model(mag).shape == (3, F, 11)
    assert (Path(out) / "state.pt").is_file() and (Path(out) / "curves.png").is_file()


@pytest.mark.ray
def test_snmf_dictionaries_by_ray_tasks_match_serial(run, tmp_path, ray_local):
    from batchsep.distributed.train import snmf_runner

    over = {"rank_speech": 5, "rank_noise": 3, "n_iter_fit": 15, "n_iter_infer": 20}
    ray_s = tr.train(run, str(tmp_path / "ray"), model="snmf", overrides=over, data=DATA,
                     runner=snmf_runner(workers=2), verbose=False)  # fmt: skip
    ser_s = tr.train(run, str(tmp_path / "ser"), model="snmf", overrides=over, data=DATA,
                     verbose=False)  # fmt: skip
    a = deserialize(checkpoint.read_checkpoint(str(tmp_path / "ray")))
    b = deserialize(checkpoint.read_checkpoint(str(tmp_path / "ser")))
    assert isinstance(a, SnmfEnhancer) and isinstance(b, SnmfEnhancer)
    assert torch.equal(a.W_speech, b.W_speech) and torch.equal(a.W_noise, b.W_noise)
    assert ray_s.best_valid_loss == pytest.approx(ser_s.best_valid_loss, rel=1e-6)


def test_train_to_s3_and_resume(run, s3_env):
    out = f"{s3_env}/models/lstm"
    tr.train(run, out, model="lstm", overrides=LSTM, data=DATA, verbose=False)
    for name in ("config.json", "weights.safetensors", "metrics.json", "state.pt", "curves.png"):
        assert storage.exists(storage.join(out, name)), name
    assert json.loads(storage.read_text(storage.join(out, "config.json")))["stft"]["n_fft"] == 32
    more = tr.train(run, out, model="lstm", overrides={**LSTM, "train.max_epochs": 3}, data=DATA,
                    verbose=False)  # fmt: skip
    assert more.epochs == 3 and read_state(out)["epoch"] == 3  # type: ignore[index]
    model = deserialize(checkpoint.read_checkpoint(out))
    assert model(torch.rand(1, F, 5)).shape == (1, F, 5)
