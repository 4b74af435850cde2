"""Emotion models: seed-003 VAE architecture and ELBO, CNN learning and augmentation, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from batchsep.corpus.ravdess import RAVDESS_EMOTIONS
from batchsep.dsp.mel import emotion_features
from batchsep.errors import ConfigError, ParameterError
from batchsep.models.base import MODELS, build_model, deserialize, serialize
from batchsep.models.emotion import (
    EMOTIONS,
    EmotionClassifier,
    EmotionCnn,
    EmotionCnnConfig,
    EmotionVae,
    EmotionVaeConfig,
    spec_augment,
)

SMALL_CNN = EmotionCnnConfig(channels=(8, 16, 32))


def _grad_sum(layer: nn.Module) -> float:
    """Sum of |gradient| of a layer's ``weight`` (which must have one)."""
    grad = layer.get_parameter("weight").grad
    assert grad is not None
    return float(grad.abs().sum())


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded, and one torch thread: two threads on a loaded 2-core machine are many times slower."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batch(n=6, *, labels=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 80, 128, generator=g)
    y = torch.randint(0, 8, (n,), generator=g) if labels is None else torch.tensor(labels)
    return {"logmel": x, "label": y}


def test_emotions_match_ravdess_codes():
    assert EMOTIONS == RAVDESS_EMOTIONS
    assert len(EMOTIONS) == 8 and EMOTIONS[0] == "neutral" and EMOTIONS[7] == "surprised"


def test_registered():
    assert {"emotion-vae", "emotion-cnn"} <= set(MODELS.names())
    assert isinstance(build_model("emotion-vae"), EmotionVae)
    assert isinstance(build_model("emotion-cnn", {"channels": [8, 16]}), EmotionCnn)


def test_vae_architecture_is_the_seeds():
    vae = EmotionVae()
    convs = [m for m in vae.encoder if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (80, 64), (64, 32), (32, 16), (16, 16), (16, 128), (128, 256),
    ]  # fmt: skip
    assert all(c.kernel_size == (4,) and c.stride == (2,) and c.padding == (1,) for c in convs)
    deconvs = [m for m in vae.decoder if isinstance(m, nn.ConvTranspose1d)]
    assert [(c.in_channels, c.out_channels) for c in deconvs] == [
        (b, a) for a, b in [(c.in_channels, c.out_channels) for c in convs][::-1]
    ]
    assert vae.to_latent.out_features == 16


def test_vae_shapes():
    vae = EmotionVae().eval()
    x = batch(5)["logmel"]
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (5, 8)
    assert vae.decode(mu).shape == (5, 80, 128)
    assert vae(x).shape == (5, 8)


def test_vae_kl_matches_torch_distributions():
    vae = EmotionVae().eval()
    x = batch(4)["logmel"]
    with torch.no_grad():
        recon, kl, mu, logvar = vae.elbo_terms(x)
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
        expected = torch.distributions.kl_divergence(q, p).sum(-1)
        np.testing.assert_allclose(kl.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            recon.numpy(), 0.5 * (vae.decode(mu) - x).square().sum((1, 2)).numpy(), rtol=1e-5
        )


@pytest.mark.slow
def test_vae_elbo_decreases_with_adam():
    vae = EmotionVae(EmotionVaeConfig(class_weight=0.0))
    data = batch(8, seed=1)
    # a learnable structure: per-item spectral tilts
    env = torch.linspace(-1, 1, 80)[None, :, None] * torch.randn(8, 1, 1)
    data["logmel"] = env.expand(8, 80, 128) + 0.1 * data["logmel"]
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)

    def eval_loss():
        vae.eval()
        with torch.no_grad():
            loss = float(vae.training_loss(data)[0])
        vae.train()
        return loss

    first = eval_loss()
    for _ in range(60):
        loss, _ = vae.training_loss(data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.6 * first


def test_vae_semi_supervised_loss():
    vae = EmotionVae().eval()  # z = mu: deterministic
    data = batch(4, labels=[-1, -1, -1, -1])
    loss, logs = vae.training_loss(data)
    assert logs["ce"] == 0.0 and logs["n_labelled"] == 0.0 and np.isnan(logs["acc"])
    loss.backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0.0 for p in vae.head.parameters())
    assert _grad_sum(vae.encoder[0]) > 0
    vae.zero_grad()
    mixed = {"logmel": data["logmel"], "label": torch.tensor([3, -1, 5, -1])}
    loss2, logs2 = vae.training_loss(mixed)
    assert logs2["n_labelled"] == 2.0 and logs2["ce"] > 0
    assert float(loss2.detach()) == pytest.approx(float(loss.detach()) + logs2["ce"], rel=1e-5)
    loss2.backward()
    assert _grad_sum(vae.head[0]) > 0


def tone_dataset(n_per_class, *, seed):
    """8 classes = 8 tone frequencies (with noise, random level/offset/length) as normalised log-mel."""
    rng = np.random.default_rng(seed)
    freqs = 200.0 * 1.45 ** np.arange(8)
    xs, ys = [], []
    for label, f in enumerate(freqs):
        for _ in range(n_per_class):
            dur = rng.uniform(0.6, 1.5)
            t = np.arange(int(dur * 16000)) / 16000
            sig = rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            sig = sig + 0.02 * rng.standard_normal(t.size)
            xs.append(emotion_features(sig.astype(np.float32)))
            ys.append(label)
    return {"logmel": torch.from_numpy(np.stack(xs)), "label": torch.tensor(ys)}


@pytest.mark.slow
def test_cnn_learns_separable_tones():
    data = tone_dataset(4, seed=0)
    model = EmotionCnn(SMALL_CNN)  # default augmentation (masks, mixup) on
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    n = data["label"].numel()
    for _ in range(30):
        idx = torch.randperm(n)[:16]
        loss, _ = model.training_loss({k: v[idx] for k, v in data.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = float((model.predict_proba(data["logmel"]).argmax(1) == data["label"]).float().mean())
    assert acc > 0.9


def test_augmentation_only_in_training():
    model = EmotionCnn(SMALL_CNN)
    data = batch(8)
    model.eval()
    with torch.no_grad():
        a, _ = model.training_loss(data)
        b, _ = model.training_loss(data)
        assert float(a) == float(b)
        model.train()
        c, _ = model.training_loss(data)
        d, _ = model.training_loss(data)
    assert float(c) != float(d)


def test_spec_augment_masks_whole_bands_and_spans():
    x = torch.ones(16, 80, 128)
    out = spec_augment(x, freq_masks=2, freq_width=10, time_masks=2, time_width=16)
    zero = out == 0
    rows = zero.all(dim=2, keepdim=True)
    cols = zero.all(dim=1, keepdim=True)
    assert bool((zero == (rows | cols)).all())  # every zero lies in a fully masked row or column
    assert int(rows.sum(dim=1).max()) <= 20 and int(cols.sum(dim=2).max()) <= 32
    assert int(rows.sum()) > 0 and int(cols.sum()) > 0
    assert torch.equal(x, torch.ones(16, 80, 128))  # input untouched


def test_cnn_all_unlabelled_batch_gives_zero_loss_with_graph():
    model = EmotionCnn(SMALL_CNN)
    loss, logs = model.training_loss(batch(4, labels=[-1] * 4))
    assert float(loss.detach()) == 0.0 and loss.requires_grad and logs["n_labelled"] == 0.0
    loss.backward()


@pytest.mark.parametrize("name", ["emotion-vae", "emotion-cnn"])
def test_serialize_round_trip_and_predict_proba(name):
    cfg = {"channels": [8, 16]} if name == "emotion-cnn" else None
    model = build_model(name, cfg)
    assert isinstance(model, EmotionClassifier)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):  # move weights and batch-norm statistics away from their init
        loss, _ = model.training_loss(batch(6))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = batch(5, seed=2)["logmel"]
    p = model.predict_proba(x)
    assert model.training  # mode restored
    assert p.shape == (5, 8) and not p.requires_grad
    np.testing.assert_allclose(p.sum(1).numpy(), 1.0, atol=1e-6)
    clone = deserialize(serialize(model))
    assert isinstance(clone, EmotionClassifier)
    assert type(clone) is type(model) and clone.config == model.config
    torch.testing.assert_close(clone.predict_proba(x), p, rtol=0, atol=0)
    one_by_one = torch.cat([model.predict_proba(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(one_by_one, p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", [EmotionVae(), EmotionCnn(SMALL_CNN)], ids=["vae", "cnn"])
def test_input_validation(model):
    with pytest.raises(ParameterError, match="shape"):
        model.predict_proba(torch.zeros(2, 80, 100))
    with pytest.raises(ParameterError, match="NaN"):
        model.predict_proba(torch.full((1, 80, 128), float("nan")))
    with pytest.raises(ParameterError, match="label"):
        model.training_loss({"logmel": torch.zeros(2, 80, 128)})
    with pytest.raises(ParameterError, match="label"):
        model.training_loss({"logmel": torch.zeros(2, 80, 128), "label": torch.tensor([0, 8])})
    with pytest.raises(ParameterError, match="int64"):
        model.training_loss({"logmel": torch.zeros(2, 80, 128), "label": torch.tensor([0.0, 1.0])})


def test_config_rules():
    with pytest.raises(ParameterError, match="multiple of 64"):
        EmotionVaeConfig(n_frames=100)
    with pytest.raises(ParameterError, match="channels"):
        EmotionCnnConfig(channels=())
    with pytest.raises(ConfigError):
        EmotionCnnConfig.from_dict({"dropout": 1.5})
    assert EmotionCnnConfig.from_dict(SMALL_CNN.to_dict()) == SMALL_CNN
