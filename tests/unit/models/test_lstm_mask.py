"""(B)LSTM mask models: shapes, padding invariance, batch consistency, sizes, registry round-trip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from batchsep.config import config_from_dict
from batchsep.errors import ConfigError, ParameterError
from batchsep.models.base import build_model, deserialize, serialize
from batchsep.models.losses import msa
from batchsep.models.lstm_mask import (
    BlstmMaskConfig,
    BlstmMaskModel,
    LstmMaskConfig,
    LstmMaskModel,
    lstm_hidden_for_params,
    lstm_param_count,
)

F = 12


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny LSTMs gain nothing from intra-op threads on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(
    bidirectional: bool, *, n_layers: int = 2, hidden: int = 6, seed: int = 0
) -> LstmMaskModel:
    torch.manual_seed(seed)
    cfg = LstmMaskConfig(n_layers=n_layers, hidden=hidden, bidirectional=bidirectional, n_freq=F)
    return LstmMaskModel(cfg).eval()


def _mag(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 4


@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes_and_range(bidirectional: bool) -> None:
    with torch.no_grad():
        mask = _model(bidirectional)(_mag(3, F, 9))
    assert mask.shape == (3, F, 9)
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_valid_outputs(bidirectional: bool) -> None:
    model = _model(bidirectional)
    x = _mag(2, F, 8)
    ref = model(x)
    padded = torch.cat([x, 50.0 * torch.ones(2, F, 5)], dim=-1)
    with torch.no_grad():
        out = model(padded, torch.tensor([8, 8]))
    torch.testing.assert_close(out[..., :8], ref, rtol=1e-5, atol=1e-6)
    assert torch.all(out[..., 8:] == 0)
    if bidirectional:  # without lengths the backward direction sees the padding: the test can fail
        assert not torch.allclose(model(padded)[..., :8], ref, atol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_batched_equals_one_by_one(bidirectional: bool) -> None:
    model = _model(bidirectional)
    lengths = [5, 9, 7]
    items = [_mag(1, F, n, seed=i) for i, n in enumerate(lengths)]
    batch = torch.zeros(3, F, 9)
    for i, (x, n) in enumerate(zip(items, lengths)):
        batch[i, :, :n] = x[0]
    with torch.no_grad():
        out = model(batch, torch.tensor(lengths))
        for i, (x, n) in enumerate(zip(items, lengths)):
            torch.testing.assert_close(out[i, :, :n], model(x)[0], rtol=1e-5, atol=1e-6)


def test_training_loss_gradients_finite_and_logs() -> None:
    model = _model(True).train()
    g = torch.Generator().manual_seed(5)
    x = torch.complex(torch.randn(2, F, 6, generator=g), torch.randn(2, F, 6, generator=g))
    s = 0.5 * x + 0.1
    batch = {
        "noisy_mag": x.abs(),
        "clean_mag": s.abs(),
        "lengths": torch.tensor([6, 4]),
        "noisy_stft": x,
        "clean_stft": s,
    }
    loss, logs = model.training_loss(batch)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert any(float(gr.abs().sum()) > 0 for gr in grads if gr is not None)
    assert set(logs) == {"msa", "psa"}
    assert logs["msa"] == pytest.approx(float(loss.detach()))
    with torch.no_grad():
        expected = msa(
            model(batch["noisy_mag"], batch["lengths"]), x.abs(), s.abs(), batch["lengths"]
        )
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)


def test_psa_model_needs_stfts() -> None:
    cfg = LstmMaskConfig(n_layers=1, hidden=4, n_freq=F, loss="psa")
    model = LstmMaskModel(cfg)
    with pytest.raises(ParameterError, match="noisy_stft"):
        model.training_loss({"noisy_mag": _mag(1, F, 3), "clean_mag": _mag(1, F, 3)})


@pytest.mark.parametrize(
    ("hidden", "n_layers", "bidirectional", "n_freq"),
    [(6, 1, False, 12), (6, 3, True, 12), (54, 2, False, 257), (20, 2, True, 257)],
)
def test_parameter_count_matches_formula(
    hidden: int, n_layers: int, bidirectional: bool, n_freq: int
) -> None:
    cfg = LstmMaskConfig(
        n_layers=n_layers, hidden=hidden, bidirectional=bidirectional, n_freq=n_freq
    )
    model = LstmMaskModel(cfg)
    assert model.parameter_count() == lstm_param_count(hidden, n_layers, bidirectional, n_freq)


def test_parameter_count_hand_value() -> None:
    # 1 layer, H=2, F=3: LSTM 4·2·(3+2) + 8·2 = 56, output 2·3 + 3 = 9
    assert lstm_param_count(2, 1, False, 3) == 65
    # BLSTM: 2 directions · 56, output 4·3 + 3
    assert lstm_param_count(2, 1, True, 3) == 127


@pytest.mark.parametrize(
    ("n_layers", "rank", "design_hidden"),
    [(2, 200, 54), (2, 2000, 244), (5, 200, 70), (5, 2000, 250)],
)
def test_design_sizes_match_drnmf_counts(n_layers: int, rank: int, design_hidden: int) -> None:
    drnmf_count = n_layers * 257 * rank  # K untied F×R dictionaries (seed 001, table 1)
    assert lstm_param_count(design_hidden, n_layers) == pytest.approx(drnmf_count, rel=0.05)
    solved = lstm_hidden_for_params(drnmf_count, n_layers)
    assert abs(solved - design_hidden) <= 2
    err = abs(lstm_param_count(solved, n_layers) - drnmf_count)
    assert err <= abs(lstm_param_count(solved - 1, n_layers) - drnmf_count)
    assert err <= abs(lstm_param_count(solved + 1, n_layers) - drnmf_count)


def test_hidden_solver_bidirectional_and_errors() -> None:
    h = lstm_hidden_for_params(100_000, 2, True)
    assert lstm_param_count(h, 2, True) == pytest.approx(100_000, rel=0.02)
    assert h < lstm_hidden_for_params(100_000, 2, False)
    assert lstm_hidden_for_params(1, 1) == 1
    with pytest.raises(ParameterError, match="target"):
        lstm_hidden_for_params(0, 2)


def test_registry_names_and_round_trip() -> None:
    lstm = build_model("lstm", {"n_layers": 1, "hidden": 4, "n_freq": F})
    blstm = build_model("blstm", {"n_layers": 1, "hidden": 4, "n_freq": F})
    assert type(lstm) is LstmMaskModel and not lstm.lstm.bidirectional
    assert type(blstm) is BlstmMaskModel and blstm.lstm.bidirectional
    assert isinstance(blstm.config, BlstmMaskConfig) and blstm.config.to_dict()["type"] == "blstm"
    assert config_from_dict(blstm.config.to_dict()) == blstm.config
    assert BlstmMaskConfig.from_yaml(blstm.config.to_yaml()) == blstm.config
    x = _mag(2, F, 5)
    for model in (lstm, blstm):
        again = deserialize(serialize(model))
        assert type(again) is type(model)
        torch.testing.assert_close(again(x), model.eval()(x))


def test_config_validation() -> None:
    with pytest.raises(ParameterError, match="hidden=0"):
        LstmMaskConfig(hidden=0)
    with pytest.raises(ConfigError, match="loss"):
        LstmMaskConfig.from_dict({"loss": "l1"})
    with pytest.raises(ConfigError, match="unknown key"):
        LstmMaskConfig.from_dict({"hiden": 3})
    with pytest.raises(ParameterError, match="dropout"):
        LstmMaskConfig(dropout=1.0)


def test_forward_rejects_bad_input() -> None:
    model = _model(False)
    with pytest.raises(ParameterError, match="mag shape"):
        model(torch.rand(1, F + 1, 4))
    with pytest.raises(ParameterError, match="lengths"):
        model(torch.rand(2, F, 4), torch.tensor([0, 4]))
    with pytest.raises(ParameterError, match="lengths"):
        model(torch.rand(2, F, 4), torch.tensor([5, 4]))


@pytest.mark.parametrize("transform", ["log1p", "sqrt", "magnitude"])
def test_input_transforms(transform: str) -> None:
    torch.manual_seed(0)
    model = LstmMaskModel(LstmMaskConfig(n_layers=1, hidden=4, n_freq=F, input_transform=transform))  # type: ignore[arg-type]
    assert torch.isfinite(model(_mag(1, F, 3))).all()


def test_compressed_loss_known_values_and_gradients() -> None:
    from batchsep.models.losses import mask_loss

    ones = torch.ones(1, 2, 3)
    batch = {"noisy_mag": ones, "clean_mag": ones}
    half = torch.full((1, 2, 3), 0.5)
    assert float(mask_loss("msa", half, batch)) == pytest.approx(0.25)
    assert float(mask_loss("msa", half, batch, power=1.0)) == float(msa(half, ones, ones))
    # ((0.5)^0.3 - 1^0.3)^2, the 1e-8 offsets aside
    assert float(mask_loss("msa", half, batch, power=0.3)) == pytest.approx(
        (0.5**0.3 - 1.0) ** 2, rel=1e-5
    )
    # quiet bins weigh more: the same 50 % error at |S| = 1e-3 costs (1e-3)^0.6 of its cost at |S| = 1,
    # against (1e-3)^2 in the plain loss
    quiet = {"noisy_mag": ones * 1e-3, "clean_mag": ones * 1e-3}
    ratio_c = float(mask_loss("msa", half, quiet, power=0.3)) / float(
        mask_loss("msa", half, batch, power=0.3)
    )
    assert ratio_c == pytest.approx((1e-3) ** 0.6, rel=1e-3)
    ratio_1 = float(mask_loss("msa", half, quiet)) / float(mask_loss("msa", half, batch))
    assert ratio_1 == pytest.approx(1e-6, rel=1e-4) and ratio_c > 1e3 * ratio_1
    # finite gradients through a sigmoid even at a mask of ~0 and a target of 0
    logits = torch.full((1, 2, 3), -30.0, requires_grad=True)
    zero_target = {"noisy_mag": ones, "clean_mag": torch.zeros(1, 2, 3)}
    mask_loss("msa", torch.sigmoid(logits), zero_target, power=0.3).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ParameterError, match="power"):
        mask_loss("msa", half, batch, power=1.5)


def test_loss_power_config_and_logs() -> None:
    with pytest.raises(ParameterError, match="loss_power"):
        LstmMaskConfig(loss_power=0.0)
    model = LstmMaskModel(LstmMaskConfig(n_layers=1, hidden=4, n_freq=5, loss_power=0.3))
    mag = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(0))
    loss, logs = model.training_loss({"noisy_mag": mag, "clean_mag": 0.5 * mag})
    assert set(logs) == {"msa^0.3", "msa"}
    assert logs["msa^0.3"] == pytest.approx(float(loss.detach()))
    with torch.no_grad():
        plain = float(msa(model(mag), mag, 0.5 * mag))
    assert logs["msa"] == pytest.approx(plain, rel=1e-6)
    # a config written before loss_power existed reads back with the seeds' loss
    old = {k: v for k, v in model.config.to_dict().items() if k != "loss_power"}
    back = config_from_dict(old)
    assert isinstance(back, LstmMaskConfig) and back.loss_power == 1.0
