"""DC+MI (Chimera) model: low-rank deep clustering loss, k-means inference, padding, training."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.nn import functional as tnf

from batchsep.config import config_from_dict
from batchsep.errors import ParameterError
from batchsep.models.base import build_model, deserialize, serialize
from batchsep.models.dc import DcConfig, DcModel, dc_loss
from batchsep.models.losses import msa
from batchsep.models.sce import SceConfig
from batchsep.training.loop import TrainConfig, fit

F = 12


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(seed: int = 0, **kw: object) -> DcModel:
    torch.manual_seed(seed)
    opts: dict[str, object] = {"n_freq": F, "n_layers": 2, "hidden": 8, "embed_dim": 4, **kw}
    return DcModel(DcConfig(**opts)).eval()  # type: ignore[arg-type]


def _batch(n: int, n_frames: int, *, seed: int) -> dict[str, torch.Tensor]:
    """Separable toy mixtures: speech in the low bins (on/off in time), noise in the high bins."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_frames)
    speech = torch.zeros(n, F, n_frames)
    on = ((t[None, :] + torch.randint(0, 4, (n, 1), generator=g)) % 4 < 2).float()
    speech[:, : F // 2] = (1.0 + torch.rand(n, F // 2, n_frames, generator=g)) * on[:, None, :]
    noise = 0.05 * torch.rand(n, F, n_frames, generator=g)
    noise[:, F // 2 :] += 0.5 + torch.rand(n, F - F // 2, n_frames, generator=g)
    return {"noisy_mag": speech + noise, "clean_mag": speech, "noise_mag": noise}


def _direct_dc(emb: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> float:
    """‖VVᵀ − YYᵀ‖²_F / N² with the N×N affinity matrices, averaged over items (binary weights)."""
    per_item = []
    for b in range(emb.shape[0]):
        keep = weights[b].reshape(-1) > 0
        v = emb[b].reshape(-1, emb.shape[-1])[keep].double()
        y = labels[b].reshape(-1)[keep].double()
        y = torch.stack([y, 1 - y], dim=1)
        if len(v):
            per_item.append(float(((v @ v.T - y @ y.T) ** 2).sum()) / len(v) ** 2)
    return sum(per_item) / len(per_item)


def test_dc_loss_hand_values() -> None:
    # V equal to the one-hot labels: the affinities match exactly
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    v = torch.stack([labels, 1 - labels], dim=-1)
    assert float(dc_loss(v, labels, torch.ones(1, 3))) == pytest.approx(0.0, abs=1e-7)
    # all embeddings equal, two bins of different sources: VVᵀ = 1, YYᵀ = I → ‖·‖² = 2, / N² = 0.5
    v = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert float(dc_loss(v, torch.tensor([[1.0, 0.0]]), torch.ones(1, 2))) == pytest.approx(0.5)
    # a third, zero-weight bin changes nothing
    v3 = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    w3 = torch.tensor([[1.0, 1.0, 0.0]])
    assert float(dc_loss(v3, torch.tensor([[1.0, 0.0, 1.0]]), w3)) == pytest.approx(0.5)


def test_dc_loss_matches_affinity_matrix_computation() -> None:
    g = torch.Generator().manual_seed(0)
    emb = tnf.normalize(torch.randn(3, 5, 4, 6, generator=g), dim=-1)
    labels = (torch.rand(3, 5, 4, generator=g) > 0.4).float()
    weights = (torch.rand(3, 5, 4, generator=g) > 0.25).float()
    weights[2] = 0.0  # an item without any bin is left out of the mean
    got = dc_loss(emb, labels, weights)
    assert float(got) == pytest.approx(_direct_dc(emb, labels, weights), rel=1e-5)
    assert float(dc_loss(emb, labels, torch.zeros_like(weights))) == 0.0
    with pytest.raises(ParameterError, match="labels shape"):
        dc_loss(emb, labels[:, :2], weights)


def test_dc_loss_scales_to_sizes_the_affinity_matrix_cannot() -> None:
    g = torch.Generator().manual_seed(1)
    n = 60_000  # N² = 3.6e9 affinity entries (14 GB as float32): only the low-rank form fits
    emb = tnf.normalize(torch.randn(1, n, 8, generator=g), dim=-1)
    labels = (torch.rand(1, n, generator=g) > 0.5).float()
    value = float(dc_loss(emb, labels, torch.ones(1, n)))
    # random unit V: E⟨v_i,v_j⟩² = 1/D off the diagonal, YYᵀ has half ones → ≈ 1/D − 2·½·0 + ½ ≈ 0.625
    assert value == pytest.approx(1 / 8 + 0.5, rel=0.02)


def test_training_loss_combines_dc_and_msa() -> None:
    model = _model().train()
    batch = _batch(2, 7, seed=1)
    batch["lengths"] = torch.tensor([7, 4])
    loss, logs = model.training_loss(batch)
    assert set(logs) == {"dc", "msa"}
    assert float(loss.detach()) == pytest.approx(0.9 * logs["dc"] + 0.1 * logs["msa"], rel=1e-6)
    with torch.no_grad():
        emb, mask, valid = model.embed(batch["noisy_mag"], batch["lengths"])
    labels = (batch["clean_mag"] > batch["noise_mag"]).float().transpose(1, 2)
    noisy = batch["noisy_mag"].transpose(1, 2)
    peak = torch.stack([noisy[0, :7].max(), noisy[1, :4].max()])
    w = (valid[:, :, None] & (noisy >= 0.01 * peak[:, None, None])).float()
    assert logs["dc"] == pytest.approx(_direct_dc(emb, labels, w), rel=1e-4)
    expected_msa = msa(mask, batch["noisy_mag"], batch["clean_mag"], batch["lengths"])
    assert logs["msa"] == pytest.approx(float(expected_msa.detach()), rel=1e-5)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert all(float(gr.abs().sum()) > 0 for gr in grads if gr is not None)


def test_speech_cluster_by_mask_energy() -> None:
    model = _model()
    assign = torch.tensor([[[0, 0, 1, 1]]])  # [B=1, T=1, F=4]
    mag = torch.tensor([[[1.0, 1.0, 4.0, 4.0]]])
    mask = torch.tensor([[[0.9, 0.8, 0.3, 0.2]]])  # cluster 0 is mostly "speech" for the MI head
    got = model.speech_cluster(
        centroids=torch.zeros(1, 2, 4),
        assign=assign,
        mask=mask,
        mag=mag,
        valid=torch.ones(1, 1, dtype=torch.bool),
    )
    assert got.tolist() == [0]
    got = model.speech_cluster(
        centroids=torch.zeros(1, 2, 4),
        assign=1 - assign,
        mask=mask,
        mag=mag,
        valid=torch.ones(1, 1, dtype=torch.bool),
    )
    assert got.tolist() == [1]


@pytest.mark.parametrize("inference", ["mi", "kmeans"])
def test_batched_equals_one_by_one(inference: str) -> None:
    model = _model(inference=inference)
    lengths = [6, 9, 4]
    items = [_batch(1, n, seed=20 + i)["noisy_mag"] for i, n in enumerate(lengths)]
    batch = torch.zeros(3, F, 9)
    for i, (x, n) in enumerate(zip(items, lengths)):
        batch[i, :, :n] = x[0]
    with torch.no_grad():
        out = model(batch, torch.tensor(lengths))
        assert torch.all(out[0, :, 6:] == 0) and torch.all(out[2, :, 4:] == 0)
        for i, (x, n) in enumerate(zip(items, lengths)):
            torch.testing.assert_close(out[i, :, :n], model(x)[0], rtol=1e-5, atol=1e-6)
    if inference == "kmeans":
        assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_fit_lowers_loss_and_clusters_separate() -> None:
    model = _model(seed=2, alpha=0.5).train()
    train = [_batch(4, 12, seed=s) for s in range(4)]
    result = fit(
        model,
        lambda: train,
        None,
        config=TrainConfig(lr=1e-2, max_epochs=10, patience=None, seed=0),
    )
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < 0.6 * losses[0]
    test = _batch(4, 12, seed=98)
    ibm = (test["clean_mag"] > test["noise_mag"]).float()
    model.eval()
    with torch.no_grad():
        km = model.kmeans_mask(test["noisy_mag"])
    assert float((km == ibm).float().mean()) > 0.85


def test_registry_and_round_trip() -> None:
    model = build_model("dc", {"n_freq": F, "n_layers": 1, "hidden": 4, "embed_dim": 3})
    assert type(model) is DcModel and model.config.alpha == 0.1
    cfg = DcConfig(n_freq=F, n_layers=1, hidden=4, embed_dim=3, inference="kmeans")
    assert config_from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["type"] == "dc"
    assert DcConfig.from_yaml(cfg.to_yaml()) == cfg
    torch.manual_seed(0)
    model = DcModel(cfg)
    again = deserialize(serialize(model))
    assert type(again) is DcModel and again.config == cfg
    x = _batch(2, 5, seed=0)["noisy_mag"]
    torch.testing.assert_close(again(x), model.eval()(x))
    assert DcModel(DcConfig()).parameter_count() == 31_350_362
    with pytest.raises(ParameterError, match="DcConfig"):
        DcModel(SceConfig(n_freq=F))  # type: ignore[arg-type]
