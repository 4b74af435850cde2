"""SCE+MI model and the shared embedding trunk: loss values, k-means inference, padding, training."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch.nn import functional as tnf

from batchsep.config import config_from_dict
from batchsep.errors import ConfigError, ParameterError
from batchsep.models.base import build_model, deserialize, serialize
from batchsep.models.embedding import (
    dominance_labels,
    silence_weights,
    sqrt_features,
    valid_frames,
)
from batchsep.models.kmeans import kmeans
from batchsep.models.losses import msa
from batchsep.models.sce import SceConfig, SceModel, sce_loss
from batchsep.training.loop import TrainConfig, fit

F = 12


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(seed: int = 0, **kw: object) -> SceModel:
    torch.manual_seed(seed)
    opts: dict[str, object] = {"n_freq": F, "n_layers": 2, "hidden": 8, "embed_dim": 4, **kw}
    return SceModel(SceConfig(**opts)).eval()  # type: ignore[arg-type]


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


# ---------------------------------------------------------------- the SCE loss


def test_sce_loss_hand_value() -> None:
    emb = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])  # [B=1, N=3, D=2]
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    weights = torch.tensor([[1.0, 1.0, 0.0]])  # the third bin is silent
    v_s, v_n = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]])

    def nls(u: float) -> float:  # −log σ(u)
        return math.log1p(math.exp(-u))

    bin0 = 0.5 * (nls(+1 * 2.0) + nls(-1 * 0.0))  # speech bin: pull v_s, push v_n
    bin1 = 0.5 * (nls(-1 * 0.0) + nls(+1 * 3.0))  # noise bin
    got = sce_loss(emb, labels, v_s, v_n, weights)
    assert float(got) == pytest.approx((bin0 + bin1) / 2, rel=1e-6)
    # the silent bin counts once its weight is 1
    bin2 = 0.5 * (nls(1.2) + nls(-2.4))
    got3 = sce_loss(emb, labels, v_s, v_n, torch.ones(1, 3))
    assert float(got3) == pytest.approx((bin0 + bin1 + bin2) / 3, rel=1e-6)


def test_sce_loss_matches_direct_loop() -> None:
    g = torch.Generator().manual_seed(3)
    emb = tnf.normalize(torch.randn(2, 3, 4, 5, generator=g), dim=-1)
    labels = (torch.rand(2, 3, 4, generator=g) > 0.5).float()
    weights = (torch.rand(2, 3, 4, generator=g) > 0.3).float()
    vs, vn = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    total, count = 0.0, 0.0
    for b in range(2):
        for i in range(3):
            for j in range(4):
                if weights[b, i, j] == 0:
                    continue
                y = 1.0 if labels[b, i, j] else -1.0
                e = emb[b, i, j]
                ls = -math.log(1 / (1 + math.exp(-y * float(e @ vs[b]))))
                ln = -math.log(1 / (1 + math.exp(y * float(e @ vn[b]))))
                total += 0.5 * (ls + ln)
                count += 1
    got = sce_loss(emb, labels, vs, vn, weights)
    assert float(got) == pytest.approx(total / count, rel=1e-5)
    assert float(sce_loss(emb, labels, vs, vn, torch.zeros_like(weights))) == 0.0
    with pytest.raises(ParameterError, match="speech_vec"):
        sce_loss(emb, labels, vs[:1], vn, weights)


# ---------------------------------------------------------------- shared helpers


def test_kmeans_recovers_blobs_deterministically() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 3, generator=g) * 0.1 + torch.tensor([2.0, 0.0, 0.0])
    b = torch.randn(20, 3, generator=g) * 0.1 - torch.tensor([2.0, 0.0, 0.0])
    x = torch.cat([a, b])[None]
    perm = torch.randperm(50, generator=g)
    x = x[:, perm]
    truth = (perm < 30).long()[None]
    assign, centroids = kmeans(x, torch.ones(1, 50), n_iter=5)
    same = (assign == truth).all() or (assign == 1 - truth).all()
    assert bool(same)
    assert torch.equal(assign, kmeans(x, torch.ones(1, 50), n_iter=5)[0])
    expected = torch.stack([x[0][truth[0] == k].mean(0) for k in range(2)])
    if not torch.equal(assign, truth):
        expected = expected.flip(0)
    torch.testing.assert_close(centroids[0], expected)


def test_kmeans_ignores_zero_weight_points() -> None:
    x = torch.tensor([[[0.0], [0.2], [4.0], [4.2], [100.0]]])
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    assign, centroids = kmeans(x, w)
    assert sorted(centroids[0, :, 0].tolist()) == pytest.approx([0.1, 4.1])
    assert assign[0, 4] == assign[0, 2]  # the outlier still gets a cluster
    with pytest.raises(ParameterError, match="weight > 0"):
        kmeans(x, torch.zeros(1, 5))


def test_silence_weights_and_labels() -> None:
    mag = torch.tensor([[[1.0, 0.05, 0.001], [0.5, 0.011, 9.0]]])  # [1, F=2, T=3]
    valid = valid_frames(torch.tensor([2]), mag)
    w = silence_weights(mag, valid, silence_db=40.0)  # threshold 1 · 10^-2 = 0.01
    assert w.tolist() == [[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]]
    assert silence_weights(mag, valid, silence_db=20.0)[0, 0, 1] == 0  # 0.05 < 0.1
    clean = torch.tensor([[[1.0, 0.0], [0.2, 2.0]]])
    noise = torch.tensor([[[0.5, 1.0], [0.3, 1.0]]])
    batch = {"noisy_mag": clean + noise, "clean_mag": clean, "noise_mag": noise}
    assert dominance_labels(batch).tolist() == [[[1.0, 0.0], [0.0, 1.0]]]
    # without noise_mag: |N|² ≈ |X|² − |S|²
    batch = {"noisy_mag": torch.tensor([[[1.0, 1.0]]]), "clean_mag": torch.tensor([[[0.8, 0.6]]])}
    assert dominance_labels(batch).tolist() == [[[1.0, 0.0]]]


def test_sqrt_features_normalisation_ignores_padding() -> None:
    g = torch.Generator().manual_seed(1)
    mag = torch.rand(1, F, 6, generator=g)
    padded = torch.cat([mag, 7.0 * torch.ones(1, F, 3)], dim=-1)
    feats = sqrt_features(padded, valid_frames(torch.tensor([6]), padded), norm="utterance")
    assert float(feats[..., :6].mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(feats[..., :6].std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert torch.all(feats[..., 6:] == 0)
    alone = sqrt_features(mag, valid_frames(None, mag), norm="utterance")
    torch.testing.assert_close(feats[..., :6], alone)


# ---------------------------------------------------------------- the model


def test_training_loss_combines_sce_and_msa() -> None:
    model = _model(alpha=0.3).train()
    batch = _batch(2, 7, seed=1)
    batch["noisy_mag"][0, 0, 0] = 1e-6  # a silent bin
    batch["lengths"] = torch.tensor([7, 5])
    loss, logs = model.training_loss(batch)
    assert set(logs) == {"sce", "msa"}
    assert float(loss.detach()) == pytest.approx(0.7 * logs["sce"] + 0.3 * logs["msa"], rel=1e-6)
    emb, mask, valid = model.embed(batch["noisy_mag"], batch["lengths"])
    labels = (batch["clean_mag"] > batch["noise_mag"]).float().transpose(1, 2)
    noisy = batch["noisy_mag"].transpose(1, 2)  # [B, T, F]
    peak = torch.stack([noisy[0, :7].max(), noisy[1, :5].max()])
    w = (valid[:, :, None] & (noisy >= 0.01 * peak[:, None, None])).float()  # 40 dB below peak
    assert w[0, 0, 0] == 0 and w[1, 5:].sum() == 0
    v = model.source_vectors.weight
    direct = sce_loss(emb, labels, v[[0, 0]], v[[1, 1]], w)
    assert logs["sce"] == pytest.approx(float(direct.detach()), rel=1e-5)
    expected_msa = msa(mask, batch["noisy_mag"], batch["clean_mag"], batch["lengths"])
    assert logs["msa"] == pytest.approx(float(expected_msa.detach()), rel=1e-5)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    gv = model.source_vectors.weight.grad
    assert gv is not None and float(gv[:2].abs().sum()) > 0


def test_per_source_vectors_are_used() -> None:
    model = _model(n_speakers=3, n_noises=2).train()
    batch = _batch(2, 5, seed=2)
    batch |= {"speaker_idx": torch.tensor([2, 0]), "noise_idx": torch.tensor([1, 1])}
    loss, _ = model.training_loss(batch)
    loss.backward()
    grad = model.source_vectors.weight.grad
    assert grad is not None
    touched = (grad.abs().sum(1) > 0).tolist()
    # rows: speech, noise, spk0, spk1, spk2, noise0, noise1
    assert touched == [False, False, True, False, True, False, True]
    with pytest.raises(ParameterError, match="speaker_idx"):
        model.training_loss({**batch, "speaker_idx": torch.tensor([3, 0])})
    with pytest.raises(ParameterError, match="noise_idx"):
        model.training_loss({**batch, "noise_idx": torch.tensor([0.0, 1.0])})


def test_kmeans_mask_is_binary_and_masks_padding() -> None:
    model = _model(inference="kmeans")
    batch = _batch(2, 9, seed=4)
    lengths = torch.tensor([9, 6])
    out = model(batch["noisy_mag"], lengths)
    assert out.shape == (2, F, 9)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(out[1, :, 6:] == 0)
    torch.testing.assert_close(out, model.kmeans_mask(batch["noisy_mag"], lengths))
    model.set_inference("mi")
    assert model.config.inference == "mi"
    with torch.no_grad():
        mi = model(batch["noisy_mag"], lengths)
    torch.testing.assert_close(mi, model.embed(batch["noisy_mag"], lengths)[1])
    with pytest.raises(ParameterError, match="inference"):
        model.set_inference("argmax")  # type: ignore[arg-type]
    assert float(mi.min()) >= 0 and float(mi.max()) <= 1 and not torch.equal(mi, out)
    assert torch.all(mi[1, :, 6:] == 0)


def test_speech_cluster_follows_speech_vector() -> None:
    model = _model()
    with torch.no_grad():
        model.source_vectors.weight[:2] = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    centroids = torch.tensor(
        [[[-0.9, 0.1, 0, 0], [0.8, 0.2, 0, 0]], [[0.5, 0, 0, 0], [0.1, 0, 0, 0]]]
    )
    got = model.speech_cluster(
        centroids=centroids,
        assign=torch.zeros(2, 1, 1, dtype=torch.long),
        mask=torch.zeros(2, 1, 1),
        mag=torch.zeros(2, 1, 1),
        valid=torch.ones(2, 1, dtype=torch.bool),
    )
    assert got.tolist() == [1, 0]


@pytest.mark.parametrize("inference", ["mi", "kmeans"])
def test_batched_equals_one_by_one(inference: str) -> None:
    model = _model(inference=inference)
    lengths = [5, 9, 7]
    items = [_batch(1, n, seed=10 + i)["noisy_mag"] for i, n in enumerate(lengths)]
    batch = torch.zeros(3, F, 9)
    for i, (x, n) in enumerate(zip(items, lengths)):
        batch[i, :, :n] = x[0]
    with torch.no_grad():
        out = model(batch, torch.tensor(lengths))
        for i, (x, n) in enumerate(zip(items, lengths)):
            torch.testing.assert_close(out[i, :, :n], model(x)[0], rtol=1e-5, atol=1e-6)


def test_fit_lowers_loss_and_learns_to_separate() -> None:
    model = _model(seed=1, alpha=0.5).train()
    train = [_batch(4, 12, seed=s) for s in range(4)]
    result = fit(
        model,
        lambda: train,
        None,
        config=TrainConfig(lr=1e-2, max_epochs=10, patience=None, seed=0),
    )
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < 0.6 * losses[0]
    test = _batch(4, 12, seed=99)
    ibm = (test["clean_mag"] > test["noise_mag"]).float()
    model.eval()
    with torch.no_grad():
        km = model.kmeans_mask(test["noisy_mag"])
        mi = model(test["noisy_mag"])
    assert float((km == ibm).float().mean()) > 0.85
    assert float(((mi > 0.5).float() == ibm).float().mean()) > 0.85


def test_registry_and_round_trip() -> None:
    model = build_model("sce", {"n_freq": F, "n_layers": 1, "hidden": 4, "embed_dim": 3})
    assert type(model) is SceModel and model.config.to_dict()["type"] == "sce"
    cfg = SceConfig(n_freq=F, n_layers=1, hidden=4, embed_dim=3, n_speakers=2, silence_db=None)
    assert config_from_dict(cfg.to_dict()) == cfg
    assert SceConfig.from_yaml(cfg.to_yaml()) == cfg
    torch.manual_seed(0)
    model = SceModel(cfg)
    again = deserialize(serialize(model))
    assert type(again) is SceModel and again.config == cfg
    x = _batch(2, 5, seed=0)["noisy_mag"]
    torch.testing.assert_close(again(x), model.eval()(x))
    assert SceModel(SceConfig()).parameter_count() == 31_350_442


def test_config_and_input_validation() -> None:
    with pytest.raises(ParameterError, match="alpha"):
        SceConfig(alpha=1.5)
    with pytest.raises(ParameterError, match="n_speakers"):
        SceConfig(n_speakers=-1)
    with pytest.raises(ConfigError, match="inference"):
        SceConfig.from_dict({"inference": "spectral"})
    with pytest.raises(ParameterError, match="silence_db"):
        SceConfig(silence_db=0.0)
    model = _model()
    with pytest.raises(ParameterError, match="mag shape"):
        model(torch.rand(1, F + 1, 4))
    with pytest.raises(ParameterError, match="lengths"):
        model(torch.rand(2, F, 4), torch.tensor([0, 4]))
    with pytest.raises(ParameterError, match="clean_mag"):
        model.training_loss({"noisy_mag": torch.rand(1, F, 3)})


def test_unseen_source_takes_the_mean_vector() -> None:
    model = _model(n_speakers=3, n_noises=2)
    batch = {"speaker_idx": torch.tensor([-1, 1]), "noise_idx": torch.tensor([0, -1])}
    speech, noise = model.batch_vectors(batch, 2)
    v = model.source_vectors.weight.detach()
    torch.testing.assert_close(speech.detach(), torch.stack([v[2:5].mean(0), v[3]]))
    torch.testing.assert_close(noise.detach(), torch.stack([v[5], v[5:7].mean(0)]))
    with pytest.raises(ParameterError, match="speaker_idx"):
        model.batch_vectors({"speaker_idx": torch.tensor([-2, 0])}, 2)
