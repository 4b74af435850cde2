"""DR-NMF: closed-loop check against ISTA, gradients, batching with padding, round trip, training."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from batchsep.config import config_from_dict
from batchsep.errors import BatchsepError, ParameterError
from batchsep.models.base import MODELS, build_model, deserialize, serialize
from batchsep.models.drnmf import DrnmfConfig, DrnmfEnhancer, lipschitz_constant
from batchsep.models.nmf import ista_infer
from batchsep.models.snmf import SnmfConfig, SnmfEnhancer

torch.set_num_threads(1)
F, R_S, R_N = 24, 6, 6


def toy_sources(B: int = 4, T: int = 30, seed: int = 0):
    """Speech/noise magnitudes from two fixed random nonnegative dictionaries, sparse activations."""
    g = torch.Generator().manual_seed(1234)
    Ws, Wn = torch.rand(F, R_S, generator=g) ** 2, torch.rand(F, R_N, generator=g) ** 2
    g.manual_seed(seed)

    def acts(r: int) -> torch.Tensor:
        return torch.rand(B, r, T, generator=g) * (torch.rand(B, r, T, generator=g) < 0.3)

    S, N = 4 * Ws @ acts(R_S), 4 * Wn @ acts(R_N)
    return S + N, S, N


def fitted_snmf() -> SnmfEnhancer:
    _, S, N = toy_sources(B=8, seed=100)
    cfg = SnmfConfig(n_freq=F, rank_speech=R_S, rank_noise=R_N, sparsity=0.1, n_iter_fit=150)
    model = SnmfEnhancer(cfg)
    model.fit_dictionaries(S, N)
    return model


def small_model(n_layers: int = 3, seed: int = 0) -> DrnmfEnhancer:
    cfg = DrnmfConfig(
        n_freq=F, rank_speech=R_S, rank_noise=R_N, n_layers=n_layers, lam=0.1, alpha=8.0, seed=seed
    )
    return DrnmfEnhancer(cfg)


def test_untrained_network_is_warm_start_ista() -> None:
    # Closed loop: K = 500 unfolded layers with tied (initial) weights == 500 ISTA iterations per
    # frame, each frame warm-started from the previous one.
    g = torch.Generator().manual_seed(0)
    W = torch.rand(F, R_S + R_N, generator=g, dtype=torch.float64)
    X = 3 * torch.rand(2, F, 5, generator=g, dtype=torch.float64)
    model = DrnmfEnhancer.from_snmf(W, rank_speech=R_S, lam=0.3, n_layers=500).double()
    H, Wk = model.activations(X)
    W0 = model.dictionaries()[0].detach()
    alpha, lam = float(model.log_alpha[0].detach().exp()), float(model.log_lam[0].detach().exp())
    assert alpha == pytest.approx(model.config.alpha, rel=1e-6)
    ref = ista_infer(X, W0, lam=lam, alpha=alpha, n_iter=500, warm_start=True)
    torch.testing.assert_close(H.detach(), ref, rtol=1e-10, atol=1e-12)
    # single frame: the parallel (cold-start) ISTA path, and warm start really matters after frame 0
    cold = ista_infer(X, W0, lam=lam, alpha=alpha, n_iter=500)
    torch.testing.assert_close(H.detach()[..., :1], cold[..., :1], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(H.detach()[..., 1:], cold[..., 1:], rtol=1e-6, atol=1e-8)
    # the mask is the speech part of the reconstruction
    S = Wk[-1][:, :R_S] @ H[:, :R_S]
    Nn = Wk[-1][:, R_S:] @ H[:, R_S:]
    torch.testing.assert_close(model(X), S / (S + Nn + model.config.mask_eps))


def test_from_snmf_copies_the_dictionary_and_picks_a_safe_alpha() -> None:
    snmf = fitted_snmf()
    model = DrnmfEnhancer.from_snmf(snmf, n_layers=2)
    assert model.config.rank_speech == R_S and model.config.lam == pytest.approx(0.1)
    W = model.dictionaries().detach()
    for k in range(2):
        torch.testing.assert_close(W[k], snmf.W.clamp_min(1e-8), rtol=1e-4, atol=1e-6)
    assert model.config.alpha == pytest.approx(1.01 * lipschitz_constant(snmf.W), rel=1e-6)
    with pytest.warns(UserWarning, match="Lipschitz"):
        DrnmfEnhancer.from_snmf(snmf, alpha=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DrnmfEnhancer.from_snmf(snmf, alpha=2 * lipschitz_constant(snmf.W))
    with pytest.raises(BatchsepError, match="not fitted"):
        DrnmfEnhancer.from_snmf(SnmfEnhancer(SnmfConfig(n_freq=F)))
    with pytest.raises(ParameterError, match="rank_speech"):
        DrnmfEnhancer.from_snmf(torch.rand(F, 4))


def test_shapes_range_and_parameter_count() -> None:
    model = small_model()
    X, _, _ = toy_sources()
    with torch.no_grad():
        mask = model(X)
    assert mask.shape == X.shape
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
    assert model.parameter_count() == 3 * F * (R_S + R_N) + 2 * 3
    # the paper's K = 5, r = 100 + 100 network: ~250k trainable parameters (Table 1)
    assert DrnmfEnhancer(DrnmfConfig(n_layers=5)).parameter_count() == 5 * 257 * 200 + 10
    assert small_model(seed=1).dictionaries().shape == (3, F, R_S + R_N)
    with pytest.raises(ParameterError, match="expected"):
        model(torch.ones(1, F + 1, 4))


def test_gradients_are_finite_and_reach_every_log_parameter() -> None:
    model = small_model()
    X, S, _ = toy_sources()
    loss, logs = model.training_loss(
        {"noisy_mag": X, "clean_mag": S, "lengths": torch.tensor([30, 20, 10, 5])}
    )
    loss.backward()
    assert set(logs) >= {"msa"} and logs["msa"] == pytest.approx(float(loss.detach()))
    for name in ("log_W", "log_alpha", "log_lam"):
        grad = getattr(model, name).grad
        assert grad is not None and bool(torch.isfinite(grad).all()), name
        assert float(grad.abs().sum()) > 0, name
    assert model.log_W.grad is not None
    assert bool((model.log_W.grad.abs().sum(dim=(1, 2)) > 0).all())  # every layer is reached


def test_batched_with_padding_equals_one_by_one() -> None:
    model = small_model()
    X, _, _ = toy_sources(B=3)
    lengths = [30, 17, 9]
    padded = X.clone()
    for b, n in enumerate(lengths):
        padded[b, :, n:] = 7.0  # garbage after the end never leaks backwards (causal recurrence)
    with torch.no_grad():
        batched = model(padded)
        for b, n in enumerate(lengths):
            alone = model(X[b : b + 1, :, :n])
            torch.testing.assert_close(batched[b : b + 1, :, :n], alone, rtol=1e-5, atol=1e-6)


def test_streaming_in_chunks_with_the_carried_state_equals_one_pass() -> None:
    model = small_model()
    X, _, _ = toy_sources(B=2)
    with torch.no_grad():
        whole, _ = model.activations(X)
        first, _ = model.activations(X[..., :11])
        second, _ = model.activations(X[..., 11:], h0=first[..., -1])
        torch.testing.assert_close(torch.cat([first, second], dim=-1), whole)
        restarted, _ = model.activations(X[..., 11:])
        assert not torch.allclose(restarted, second)
    with pytest.raises(ParameterError, match="h0"):
        model.activations(X, h0=torch.zeros(2, 3))


def test_loss_ignores_padding_and_psa_needs_stfts() -> None:
    model = small_model()
    X, S, _ = toy_sources(B=2)
    lengths = torch.tensor([30, 12])
    batch = {"noisy_mag": X, "clean_mag": S, "lengths": lengths}
    base = float(model.training_loss(batch)[0].detach())
    S2 = S.clone()
    S2[1, :, 12:] += 100.0
    assert float(model.training_loss({**batch, "clean_mag": S2})[0].detach()) == pytest.approx(base)
    psa_model = DrnmfEnhancer(dataclasses.replace(model.config, loss="psa"))
    with pytest.raises(ParameterError, match="noisy_stft"):
        psa_model.training_loss(batch)
    # real-valued "STFTs" in phase: PSA equals MSA
    stfts = {"noisy_stft": X.to(torch.complex64), "clean_stft": S.to(torch.complex64)}
    psa_loss, logs = psa_model.training_loss({**batch, **stfts})
    assert "psa" in logs and float(psa_loss.detach()) == pytest.approx(base, rel=1e-5)


def test_serialize_round_trip_gives_identical_outputs() -> None:
    model = small_model()
    with torch.no_grad():
        model.log_alpha.add_(torch.tensor([0.1, -0.2, 0.3]))  # untied, non-default values
    X, _, _ = toy_sources(B=2)
    rebuilt = deserialize(serialize(model))
    assert isinstance(rebuilt, DrnmfEnhancer) and rebuilt.config == model.config
    with torch.no_grad():
        assert torch.equal(rebuilt(X), model(X))
    assert "drnmf" in MODELS and isinstance(build_model("drnmf"), DrnmfEnhancer)


def test_config_round_trip_and_validation() -> None:
    cfg = DrnmfConfig(n_layers=2, alpha=400.0, loss="psa")
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ParameterError, match="n_layers"):
        DrnmfConfig(n_layers=0)
    with pytest.raises(ParameterError, match="alpha"):
        DrnmfConfig(alpha=0.0)
    with pytest.raises(ParameterError, match="loss"):
        DrnmfConfig.from_dict({"loss": "l1"})


def test_tiny_training_lowers_the_msa_loss() -> None:
    torch.manual_seed(0)
    model = DrnmfEnhancer.from_snmf(fitted_snmf(), n_layers=3)
    X, S, _ = toy_sources(B=16, seed=1)
    Xv, Sv, _ = toy_sources(B=16, seed=2)
    lengths = torch.full((16,), 30)
    train = {"noisy_mag": X, "clean_mag": S, "lengths": lengths}
    valid = {"noisy_mag": Xv, "clean_mag": Sv, "lengths": lengths}
    with torch.no_grad():
        before = float(model.training_loss(valid)[0])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss, _ = model.training_loss(train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(model.training_loss(valid)[0])
    assert after < 0.5 * before, (before, after)
    W = model.dictionaries().detach()
    assert bool((W >= 0).all())
    torch.testing.assert_close(W.norm(dim=1), torch.ones(3, R_S + R_N))
