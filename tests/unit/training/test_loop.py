"""The generic training loop: learning, early stopping, callbacks, exact resume, wrap, curves."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import torch
from torch import nn

from batchsep.config import Config, config_from_dict
from batchsep.errors import BatchsepError, ConfigError, ParameterError
from batchsep.models.base import BatchsepModel
from batchsep.models.lstm_mask import LstmMaskConfig, LstmMaskModel
from batchsep.training import (
    EpochRecord,
    LossModule,
    TrainConfig,
    TrainerState,
    fit,
    learning_curves,
    render_learning_curves,
)

F, T = 16, 20


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny LSTMs gain nothing from intra-op threads on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _enhancement_batches(n_batches: int, seed: int, batch_size: int = 8) -> list[dict[str, Any]]:
    """Speech-like energy in low bins (slowly varying), noise in high bins; random valid lengths."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        clean = torch.zeros(batch_size, F, T)
        env = 1 + torch.sin(
            torch.linspace(0, 6, T)[None, :] + 6 * torch.rand(batch_size, 1, generator=g)
        )
        clean[:, : F // 2] = env[:, None, :] * (1 + torch.rand(batch_size, F // 2, 1, generator=g))
        noise = (
            torch.rand(batch_size, F, T, generator=g) * torch.linspace(0.2, 2.0, F)[None, :, None]
        )
        lengths = torch.randint(T // 2, T + 1, (batch_size,), generator=g)
        out.append({"noisy_mag": clean + noise, "clean_mag": clean, "lengths": lengths})
    return out


def _lstm(seed: int = 0, dropout: float = 0.0) -> LstmMaskModel:
    torch.manual_seed(seed)
    return LstmMaskModel(LstmMaskConfig(n_layers=2, hidden=12, n_freq=F, dropout=dropout))


def test_training_lowers_validation_loss() -> None:
    train, valid = _enhancement_batches(6, seed=0), _enhancement_batches(2, seed=1)
    model = _lstm()
    result = fit(model, lambda: train, lambda: valid, config=TrainConfig(lr=1e-2, max_epochs=6))
    losses = [r.valid_loss for r in result.history if r.valid_loss is not None]
    assert len(losses) == 6 and result.stop_reason == "max_epochs"
    assert result.best_loss < 0.25 * losses[0]
    assert result.best_epoch == min(range(6), key=lambda i: losses[i])
    assert set(result.history[0].valid_logs) == {"msa"} and result.history[0].steps == 6
    # restore_best: the model now holds the best weights
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, result.best_state[k])  # type: ignore[index]


@dataclass(frozen=True)
class _QuadConfig(Config):
    w0: float = 5.0


class _Quad(BatchsepModel):
    """loss = mean((w - target)²): training pulls w to the train target."""

    def __init__(self, config: _QuadConfig = _QuadConfig()) -> None:
        super().__init__(config)
        self.w = nn.Parameter(torch.tensor(config.w0))

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss = ((self.w - batch["target"]) ** 2).mean()
        return loss, {"w": float(self.w.detach())}


def _const(target: float, n: int = 1) -> Any:
    return lambda: [{"target": torch.full((4,), target)} for _ in range(n)]


def test_early_stopping_fires_with_patience() -> None:
    # training moves w from 5 towards 0, so the validation loss (w - 10)² rises after epoch 0
    model = _Quad()
    result = fit(
        model, _const(0.0), _const(10.0), config=TrainConfig(lr=0.5, max_epochs=50, patience=3)
    )
    assert result.stop_reason == "patience"
    assert len(result.history) == 4 and result.best_epoch == 0
    assert [r.improved for r in result.history] == [True, False, False, False]
    assert float(model.w.detach()) == pytest.approx(
        result.history[0].train_logs["w"] - 0.5, abs=0.05
    )
    # without early stopping it runs to max_epochs
    result = fit(
        _Quad(), _const(0.0), _const(10.0), config=TrainConfig(lr=0.5, max_epochs=6, patience=None)
    )
    assert result.stop_reason == "max_epochs" and len(result.history) == 6


def test_callback_can_stop_and_sees_state() -> None:
    seen: list[tuple[int, float | None, int]] = []

    class StopAt:
        def on_epoch_end(self, epoch: int, record: EpochRecord, state: TrainerState) -> bool:
            seen.append((epoch, record.valid_loss, state.epoch))
            return epoch == 2

    result = fit(
        _Quad(),
        _const(0.0),
        _const(0.0),
        config=TrainConfig(lr=0.1, max_epochs=10),
        callbacks=[StopAt()],
    )
    assert result.stop_reason == "callback" and len(result.history) == 3
    assert [(e, n) for e, _, n in seen] == [(0, 1), (1, 2), (2, 3)]


def test_no_validation_monitors_training_loss_and_max_steps() -> None:
    pulled: list[int] = []

    def stream() -> Any:  # a stream: max_steps_per_epoch must not pull more than it uses
        for i in range(5):
            pulled.append(i)
            yield {"target": torch.zeros(4)}

    cfg = TrainConfig(lr=0.1, max_epochs=3, max_steps_per_epoch=2)
    result = fit(_Quad(), stream, None, config=cfg)
    assert [r.steps for r in result.history] == [2, 2, 2] and len(pulled) == 6
    assert all(r.valid_loss is None for r in result.history)
    assert result.best_epoch == 2 and result.best_loss == result.history[2].train_loss


def test_grad_clip_limits_the_step() -> None:
    # gradient 2·(5 - 1000) is huge; Adam normalises it anyway, so compare the logged pre-clip norm
    result = fit(
        _Quad(), _const(1000.0), None, config=TrainConfig(lr=0.1, max_epochs=1, grad_clip=1.0)
    )
    assert result.history[0].train_logs["grad_norm"] == pytest.approx(2 * 995, rel=1e-6)


@pytest.mark.parametrize("restore_best", [False, True])
def test_resume_gives_identical_weights(restore_best: bool) -> None:
    data = _enhancement_batches(4, seed=2, batch_size=4)
    valid = _enhancement_batches(1, seed=3, batch_size=4)

    def train_batches(epoch: int) -> list[dict[str, Any]]:  # shuffled per epoch, reproducibly
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
        return [data[i] for i in order]

    cfg = TrainConfig(lr=5e-3, max_epochs=5, grad_clip=1.0, seed=7, restore_best=restore_best)
    full = fit(_lstm(dropout=0.3), train_batches, lambda: valid, config=cfg)

    snaps: list[dict[str, Any]] = []

    class Interrupt:
        def on_epoch_end(self, epoch: int, record: EpochRecord, state: TrainerState) -> bool:
            if epoch == 1:
                snaps.append(state.state_dict())
                return True
            return False

    part = fit(
        _lstm(dropout=0.3), train_batches, lambda: valid, config=cfg, callbacks=[Interrupt()]
    )
    assert part.stop_reason == "callback" and len(snaps) == 1
    torch.manual_seed(12345)  # disturb the global RNG: resume must restore it
    torch.rand(10)
    resumed_model = _lstm(seed=99, dropout=0.3)
    resumed = fit(resumed_model, train_batches, lambda: valid, config=cfg, resume=snaps[0])
    assert len(resumed.history) == 5 and resumed.best_epoch == full.best_epoch
    for a, b in zip(full.history, resumed.history):
        assert (a.train_loss, a.valid_loss) == (b.train_loss, b.valid_loss)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    fs, rs = full.state_dict(), resumed.state_dict()
    for k, v in fs["model"].items():
        assert torch.equal(v, rs["model"][k]), k
    for pid, st in fs["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg_sq"], rs["optimizer"]["state"][pid]["exp_avg_sq"])
    # the dropout really consumed RNG: a run with another seed differs (the test can fail)
    other = fit(_lstm(dropout=0.3), train_batches, lambda: valid, config=replace(cfg, seed=8))
    assert not torch.equal(other.state_dict()["model"]["out.weight"], fs["model"]["out.weight"])


def test_resume_past_max_epochs_continues_training() -> None:
    first = fit(_Quad(), _const(0.0), None, config=TrainConfig(lr=0.1, max_epochs=2))
    more = fit(
        _Quad(),
        _const(0.0),
        None,
        config=TrainConfig(lr=0.1, max_epochs=4),
        resume=first.state_dict(),
    )
    straight = fit(_Quad(), _const(0.0), None, config=TrainConfig(lr=0.1, max_epochs=4))
    assert [r.train_loss for r in more.history] == [r.train_loss for r in straight.history]
    with pytest.raises(ParameterError, match="format"):
        fit(_Quad(), _const(0.0), None, config=TrainConfig(), resume={"model": {}})


def test_wrap_is_applied_to_the_loss_module_and_device_string() -> None:
    calls: list[str] = []

    class Counting(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, batch: dict[str, Any]) -> Any:
            calls.append(str(batch["target"].device))
            return self.inner(batch)

    def wrap(module: nn.Module) -> nn.Module:
        assert isinstance(module, LossModule)
        return Counting(module)

    model = _Quad()
    result = fit(
        model,
        _const(0.0, n=3),
        _const(0.0, n=2),
        config=TrainConfig(max_epochs=2),
        device="cpu",
        wrap=wrap,
    )
    assert len(calls) == 2 * (3 + 2) and set(calls) == {"cpu"}
    assert next(model.parameters()).device.type == "cpu" and result.model is model
    fit(_Quad(), _const(0.0), None, config=TrainConfig(max_epochs=1), device=torch.device("cpu"))


def test_reduce_metrics_drives_early_stopping() -> None:
    seen: list[dict[str, float]] = []

    def reduce(metrics: dict[str, float]) -> dict[str, float]:
        seen.append(dict(metrics))
        return {**metrics, "valid_loss": 1.0}  # pretend the other ranks never improve

    result = fit(
        _Quad(),
        _const(0.0),
        _const(0.0),
        config=TrainConfig(max_epochs=10, patience=2),
        reduce_metrics=reduce,
    )
    assert result.stop_reason == "patience" and len(result.history) == 3
    assert {"train_loss", "valid_loss", "train/w", "valid/w", "steps"} <= set(seen[0])
    assert all(r.valid_loss == 1.0 for r in result.history)


def test_errors() -> None:
    with pytest.raises(ParameterError, match="no batch"):
        fit(_Quad(), lambda: [], None, config=TrainConfig(max_epochs=1))
    with pytest.raises(ParameterError, match="valid_batches"):
        fit(_Quad(), _const(0.0), lambda: iter(()), config=TrainConfig(max_epochs=1))
    with pytest.raises(BatchsepError, match="not finite"):
        fit(_Quad(), _const(math.nan), None, config=TrainConfig(max_epochs=1))
    with pytest.raises(ParameterError, match="TrainConfig"):
        fit(_Quad(), _const(0.0), None, config=LstmMaskConfig())  # type: ignore[arg-type]


def test_train_config_validation_and_round_trip() -> None:
    cfg = TrainConfig(lr=1e-4, grad_clip=1.0, patience=50)
    assert config_from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_yaml(cfg.to_yaml()) == cfg
    assert TrainConfig.from_dict({"grad_clip": 1, "max_steps_per_epoch": None}).grad_clip == 1.0
    for bad in (
        {"lr": 0.0},
        {"patience": 0},
        {"grad_clip": -1.0},
        {"max_epochs": -1},
        {"weight_decay": -1.0},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TrainConfig(**bad)  # type: ignore[arg-type]


def test_learning_curves_json_and_png() -> None:
    result = fit(
        _Quad(), _const(0.0), _const(10.0), config=TrainConfig(lr=0.5, max_epochs=20, patience=2)
    )
    curves = learning_curves(result.history)
    assert curves["epoch"] == [0, 1, 2] and curves["best_epoch"] == 0
    assert curves["valid_loss"] == [r.valid_loss for r in result.history]
    assert list(curves["train_logs"]) == ["w"] and len(curves["train_logs"]["w"]) == 3
    json.dumps(curves)
    assert learning_curves([r.to_dict() for r in result.history]) == curves
    nan_rec = EpochRecord(epoch=0, train_loss=math.nan, valid_loss=None)
    assert learning_curves([nan_rec])["train_loss"] == [None]
    png = render_learning_curves(curves, title="quad", log_y=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    both = render_learning_curves({"a": curves, "b": learning_curves(result.history[:2])})
    assert both.startswith(b"\x89PNG") and both != png
    with pytest.raises(ParameterError):
        render_learning_curves({})


@pytest.mark.gpu
def test_fit_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    train, valid = _enhancement_batches(2, seed=0), _enhancement_batches(1, seed=1)
    model = _lstm()
    result = fit(
        model,
        lambda: train,
        lambda: valid,
        config=TrainConfig(lr=1e-2, max_epochs=3),
        device="cuda",
    )
    assert next(model.parameters()).device.type == "cuda"
    assert result.best_loss < result.history[0].train_loss
    assert all(v.device.type == "cpu" for v in result.state_dict()["model"].values())
