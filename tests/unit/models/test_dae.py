"""Convolutional denoising autoencoder: any size in, skip wiring, padding, sizes, training, round trip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from batchsep.config import config_from_dict
from batchsep.errors import ConfigError, ParameterError
from batchsep.models.base import build_model, deserialize, serialize
from batchsep.models.dae import PAPER_DAE, DaeConfig, DaeModel
from batchsep.training.loop import TrainConfig, fit

F = 11


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(seed: int = 0, **kw: object) -> DaeModel:
    torch.manual_seed(seed)
    opts: dict[str, object] = {"n_freq": F, "n_layers": 3, "channels": 4, "kernel": 3, **kw}
    return DaeModel(DaeConfig(**opts)).eval()  # type: ignore[arg-type]


def _batch(n: int, n_frames: int, *, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    speech = torch.zeros(n, F, n_frames)
    speech[:, : F // 2] = 1.0 + torch.rand(n, F // 2, n_frames, generator=g)
    noise = 0.2 + 0.8 * torch.rand(n, F, n_frames, generator=g)
    return {"noisy_mag": speech + noise, "clean_mag": speech}


def _param_count(cfg: DaeConfig) -> int:
    c, k = cfg.channels, cfg.kernel
    first, last = c * k * k + c, c * k * k + 1
    middle = c * c * k * k + c
    return first + (cfg.n_layers - 1) * 2 * middle + last


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("output", ["mask", "magnitude"])
def test_any_size_in_mask_out(stride: int, output: str) -> None:
    model = _model(stride=stride, output=output)
    for n_frames in (1, 7, 10):
        with torch.no_grad():
            mask = model(_batch(2, n_frames, seed=n_frames)["noisy_mag"])
        assert mask.shape == (2, F, n_frames)
        assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0


@pytest.mark.parametrize("stride", [1, 2])
def test_batched_equals_one_by_one(stride: int) -> None:
    model = _model(stride=stride, skip_every=1)
    lengths = [5, 9, 6]
    items = [_batch(1, n, seed=i)["noisy_mag"] for i, n in enumerate(lengths)]
    batch = torch.full((3, F, 9), 30.0)  # loud garbage in the padding
    for i, (x, n) in enumerate(zip(items, lengths)):
        batch[i, :, :n] = x[0]
    with torch.no_grad():
        out = model(batch, torch.tensor(lengths))
        assert torch.all(out[0, :, 5:] == 0)
        for i, (x, n) in enumerate(zip(items, lengths)):
            torch.testing.assert_close(out[i, :, :n], model(x)[0], rtol=1e-5, atol=1e-6)
        # without lengths the padding leaks into the valid frames: the test can fail
        assert not torch.allclose(model(batch)[0, :, :5], out[0, :, :5], atol=1e-4)


def test_skip_connections_carry_the_signal() -> None:
    x = _batch(1, 8, seed=3)["noisy_mag"]
    outs = {}
    for skip_every in (1, 10):
        model = _model(n_layers=3, skip_every=skip_every)
        with torch.no_grad():
            for deconv in model.decoder:  # the decoder alone passes nothing of its input
                assert isinstance(deconv, torch.nn.ConvTranspose2d)
                deconv.weight.zero_()
            outs[skip_every] = (model(x), model(2.0 * x.flip(-1)))
    with_skips, without = outs[1], outs[10]
    assert not torch.allclose(with_skips[0], with_skips[1], atol=1e-4)
    torch.testing.assert_close(without[0], without[1])  # biases only: no trace of the input


def test_magnitude_output_turns_estimate_into_mask() -> None:
    model = _model(output="magnitude")
    batch = _batch(2, 6, seed=4)
    with torch.no_grad():
        est, _ = model.estimate(batch["noisy_mag"])
        mask = model(batch["noisy_mag"])
        loss, logs = model.training_loss(batch)
    expected = (est / batch["noisy_mag"]).clamp(0, 1)
    torch.testing.assert_close(mask, expected, rtol=1e-5, atol=1e-6)
    assert model.out.bias is not None
    with torch.no_grad():
        model.out.bias.fill_(5.0)  # estimate far above the mixture: the clamp to 1 acts
        assert torch.all(model(batch["noisy_mag"]) == 1.0)
        model.out.bias.fill_(0.0)
        model.out.weight.zero_()  # untrained residual: the mixture passes through
        torch.testing.assert_close(model.estimate(batch["noisy_mag"])[0], batch["noisy_mag"])
    assert float(loss) == pytest.approx(float(((est - batch["clean_mag"]) ** 2).mean()), rel=1e-5)
    assert set(logs) == {"msa"}


def test_mask_output_loss_is_msa_and_gradients_finite() -> None:
    model = _model(stride=2).train()
    batch = _batch(2, 7, seed=5) | {"lengths": torch.tensor([7, 3])}
    loss, logs = model.training_loss(batch)
    assert set(logs) == {"msa"} and logs["msa"] == pytest.approx(float(loss.detach()))
    mask = model(batch["noisy_mag"], batch["lengths"])
    err = (mask * batch["noisy_mag"] - batch["clean_mag"]) ** 2
    expected = (err[0].sum() + err[1, :, :3].sum()) / (10 * F)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)


def test_fit_lowers_loss() -> None:
    model = _model(seed=1, stride=2, channels=6).train()
    train = [_batch(4, 10, seed=s) for s in range(3)]
    result = fit(
        model, lambda: train, None, config=TrainConfig(lr=1e-2, max_epochs=10, patience=None)
    )
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < 0.5 * losses[0]


def test_parameter_counts() -> None:
    for cfg in (DaeConfig(), PAPER_DAE, DaeConfig(n_freq=F, n_layers=1, channels=3, kernel=3)):
        assert DaeModel(cfg).parameter_count() == _param_count(cfg)
    assert DaeModel(DaeConfig()).parameter_count() == 206_689
    assert _param_count(PAPER_DAE) == 11_478_913


def test_registry_round_trip_and_validation() -> None:
    model = build_model("dae", {"n_freq": F, "n_layers": 2, "channels": 3, "kernel": 3})
    assert type(model) is DaeModel
    cfg = DaeConfig(n_freq=F, n_layers=2, channels=3, kernel=3, output="magnitude")
    assert config_from_dict(cfg.to_dict()) == cfg and DaeConfig.from_yaml(cfg.to_yaml()) == cfg
    torch.manual_seed(0)
    model = DaeModel(cfg)
    again = deserialize(serialize(model))
    x = _batch(2, 5, seed=0)["noisy_mag"]
    torch.testing.assert_close(again(x), model.eval()(x))
    with pytest.raises(ParameterError, match="kernel=4"):
        DaeConfig(kernel=4)
    with pytest.raises(ParameterError, match="utterance"):
        DaeConfig(output="magnitude", input_norm="utterance")
    with pytest.raises(ConfigError, match="output"):
        DaeConfig.from_dict({"output": "waveform"})
    with pytest.raises(ParameterError, match="mag shape"):
        model(torch.rand(1, F + 1, 4))
