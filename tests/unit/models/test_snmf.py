"""Sparse NMF: monotone objective, normalisation, fixed columns, batched inference, solver agreement."""

from __future__ import annotations

import pytest
import torch

from batchsep.config import config_from_dict
from batchsep.errors import BatchsepError, ParameterError
from batchsep.models.base import deserialize, serialize
from batchsep.models.nmf import beta_divergence, ista_infer, snmf_fit, snmf_infer
from batchsep.models.snmf import SnmfConfig, SnmfEnhancer

torch.set_num_threads(1)


def planted(F: int = 30, r: int = 4, N: int = 120, seed: int = 0) -> torch.Tensor:
    """Nonnegative data V = W H + a little noise (float64)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.rand(F, r, generator=g, dtype=torch.float64)
    H = torch.rand(r, N, generator=g, dtype=torch.float64) ** 3
    return W @ H + 0.01 * torch.rand(F, N, generator=g, dtype=torch.float64)


def toy_sources(F: int = 24, r: int = 6, B: int = 4, T: int = 30, seed: int = 0):
    """Speech/noise magnitudes from two random nonnegative dictionaries with sparse activations."""
    g = torch.Generator().manual_seed(1234)  # the dictionaries are always the same
    Ws, Wn = torch.rand(F, r, generator=g) ** 2, torch.rand(F, r, generator=g) ** 2
    g.manual_seed(seed)  # the activations depend on the seed

    def acts() -> torch.Tensor:
        return torch.rand(B, r, T, generator=g) * (torch.rand(B, r, T, generator=g) < 0.3)

    S, N = 4 * Ws @ acts(), 4 * Wn @ acts()
    return S + N, S, N


@pytest.mark.parametrize("beta", [1.0, 2.0])
@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_objective_decreases_at_every_iteration(beta: float, sparsity: float) -> None:
    res = snmf_fit(planted(), rank=6, beta=beta, sparsity=sparsity, n_iter=150)
    obj = res.objective
    assert obj.shape == (151,)
    assert bool((obj[1:] <= obj[:-1] * (1 + 1e-12)).all()), torch.diff(obj).max()
    assert obj[-1] < 0.1 * obj[0]


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_objective_decreases_with_fixed_columns(beta: float) -> None:
    V = planted()
    first = snmf_fit(V[:, :60], rank=3, beta=beta, n_iter=50)
    res = snmf_fit(V, rank=3, beta=beta, n_iter=100, W_fixed=first.W, seed=1)
    assert bool((torch.diff(res.objective) <= 1e-12 * res.objective[1:]).all())


def test_objective_matches_its_definition() -> None:
    V = planted()
    res = snmf_fit(V, rank=5, beta=1.0, sparsity=0.3, n_iter=10)
    expected = beta_divergence(V, (res.W @ res.H).clamp_min(1e-9), 1.0) + 0.3 * res.H.sum()
    torch.testing.assert_close(res.objective[-1], expected.double(), rtol=1e-12, atol=0)


def test_on_iter_reports_every_iteration_without_changing_the_fit() -> None:
    seen: list[tuple[int, float]] = []
    res = snmf_fit(planted(), rank=5, n_iter=7, on_iter=lambda i, obj: seen.append((i, obj)))
    assert [i for i, _ in seen] == list(range(1, 8))
    assert [obj for _, obj in seen] == res.objective[1:].tolist()
    torch.testing.assert_close(snmf_fit(planted(), rank=5, n_iter=7).W, res.W, rtol=0, atol=0)


def test_beta_divergence_known_values() -> None:
    V, L = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([2.0, 2.0, 1.0])
    assert float(beta_divergence(V, L, 2.0)) == pytest.approx(0.5 * (1 + 0 + 1))
    kl = 1 * torch.log(torch.tensor(0.5)) - 1 + 2 + 0 + 1  # x log(x/y) − x + y, summed
    assert float(beta_divergence(V, L, 1.0)) == pytest.approx(float(kl))
    # generic β at 1.5 lies between and is 0 for V == L
    assert float(beta_divergence(L, L, 1.5)) == pytest.approx(0.0, abs=1e-6)


def test_columns_unit_norm_and_fixed_columns_unchanged() -> None:
    V = planted()
    g = torch.Generator().manual_seed(3)
    W_fixed = torch.rand(V.shape[0], 3, generator=g, dtype=torch.float64)
    W_fixed = W_fixed / W_fixed.norm(dim=0)
    short = snmf_fit(V, rank=2, n_iter=1, W_fixed=W_fixed)
    long = snmf_fit(V, rank=2, n_iter=40, W_fixed=W_fixed)
    torch.testing.assert_close(long.W.norm(dim=0), torch.ones(5, dtype=torch.float64))
    assert torch.equal(short.W[:, :3], long.W[:, :3])
    torch.testing.assert_close(long.W[:, :3], W_fixed, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(short.W[:, 3:], long.W[:, 3:])  # learned columns did move
    assert long.H.shape == (5, V.shape[1]) and bool((long.H >= 0).all())


def test_recovers_a_planted_factorisation() -> None:
    g = torch.Generator().manual_seed(5)
    V = torch.rand(30, 4, generator=g, dtype=torch.float64) @ torch.rand(
        4, 100, generator=g, dtype=torch.float64
    )
    res = snmf_fit(V, rank=4, sparsity=0.0, n_iter=1000)
    assert float((res.W @ res.H - V).norm() / V.norm()) < 0.01


def test_fit_is_seeded() -> None:
    V = planted()
    a, b = snmf_fit(V, rank=3, n_iter=5, seed=7), snmf_fit(V, rank=3, n_iter=5, seed=7)
    c = snmf_fit(V, rank=3, n_iter=5, seed=8)
    assert torch.equal(a.W, b.W) and not torch.equal(a.W, c.W)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_snmf_infer_batched_equals_one_by_one(beta: float) -> None:
    X, _, _ = toy_sources(B=3)
    W = torch.rand(24, 8, generator=torch.Generator().manual_seed(1))
    batched = snmf_infer(X, W, beta=beta, sparsity=0.1, n_iter=50)
    single = torch.stack([snmf_infer(x, W, beta=beta, sparsity=0.1, n_iter=50) for x in X])
    assert batched.shape == (3, 8, 30)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_snmf_infer_orthonormal_dictionary_soft_thresholds() -> None:
    # W = I: min ½(v − h)² + μh, h ≥ 0 has the closed form h = max(v − μ, 0).
    v = torch.tensor([[3.0, 0.2, 1.7, 0.5, 2.4]], dtype=torch.float64).T  # [F=5, T=1]
    H = snmf_infer(v, torch.eye(5, dtype=torch.float64), beta=2.0, sparsity=1.0, n_iter=3000)
    torch.testing.assert_close(H, (v - 1.0).clamp_min(0.0), rtol=0, atol=1e-4)


def test_ista_and_multiplicative_updates_agree() -> None:
    # Two different solvers of the same convex problem ½‖x − Wh‖² + λ‖h‖₁, h ≥ 0.
    g = torch.Generator().manual_seed(2)
    W = torch.rand(30, 5, generator=g, dtype=torch.float64)
    W = W / W.norm(dim=0)
    V = W @ torch.rand(5, 4, generator=g, dtype=torch.float64) * 3
    lam = 1.0
    alpha = 1.01 * float(torch.linalg.matrix_norm(W, ord=2) ** 2)
    H_ista = ista_infer(V, W, lam=lam, alpha=alpha, n_iter=20000)
    H_mu = snmf_infer(V, W, beta=2.0, sparsity=lam, n_iter=20000)
    torch.testing.assert_close(H_ista, H_mu, rtol=0, atol=1e-5)
    # KKT conditions of the lasso at the ISTA solution
    grad = W.T @ (W @ H_ista - V) + lam
    assert bool((H_ista == 0).any()) and bool((H_ista > 0).any())
    assert float(grad[H_ista > 0].abs().max()) < 1e-8
    assert float(grad[H_ista == 0].min()) > -1e-8


def test_ista_warm_start_uses_previous_frame() -> None:
    g = torch.Generator().manual_seed(4)
    W = torch.rand(10, 3, generator=g, dtype=torch.float64)
    V = torch.rand(2, 10, 5, generator=g, dtype=torch.float64)
    warm = ista_infer(V, W, lam=0.1, alpha=20.0, n_iter=3, warm_start=True)
    h = torch.zeros(2, 3, 1, dtype=torch.float64)
    for t in range(5):
        h = ista_infer(V[..., t : t + 1], W, lam=0.1, alpha=20.0, n_iter=3, h0=h)
        torch.testing.assert_close(warm[..., t : t + 1], h, rtol=1e-12, atol=1e-14)
    cold = ista_infer(V, W, lam=0.1, alpha=20.0, n_iter=3)
    assert not torch.allclose(warm[..., 1:], cold[..., 1:])


def test_input_validation() -> None:
    V = planted()
    with pytest.raises(ParameterError, match="nonnegative"):
        snmf_fit(-V, rank=2)
    with pytest.raises(ParameterError, match="beta"):
        snmf_fit(V, rank=2, beta=3.0)
    with pytest.raises(ParameterError, match="rank"):
        snmf_fit(V, rank=0)
    with pytest.raises(ParameterError, match="W_fixed"):
        snmf_fit(V, rank=2, W_fixed=torch.ones(V.shape[0] + 1, 2, dtype=V.dtype))
    with pytest.raises(ParameterError, match="W has shape"):
        snmf_infer(V, torch.ones(3, 2, dtype=V.dtype))
    with pytest.raises(ParameterError, match="alpha"):
        ista_infer(V, torch.ones(V.shape[0], 2, dtype=V.dtype), alpha=0.0)


def _fitted_enhancer() -> SnmfEnhancer:
    _, S, N = toy_sources()
    cfg = SnmfConfig(
        n_freq=24, rank_speech=6, rank_noise=6, sparsity=0.1, n_iter_fit=100, n_iter_infer=60
    )
    model = SnmfEnhancer(cfg)
    model.fit_dictionaries(S, N)
    return model


def test_enhancer_separates_toy_sources_and_round_trips() -> None:
    model = _fitted_enhancer()
    X, S, _ = toy_sources(seed=1)  # unseen activations, same dictionaries
    mask = model(X)
    assert mask.shape == X.shape and float(mask.min()) >= 0 and float(mask.max()) <= 1
    lengths = torch.full((X.shape[0],), X.shape[-1])
    loss, logs = model.training_loss({"noisy_mag": X, "clean_mag": S, "lengths": lengths})
    trivial = float(((0.5 * X - S) ** 2).mean())
    assert not loss.requires_grad and logs["msa"] < 0.2 * trivial
    rebuilt = deserialize(serialize(model))
    assert isinstance(rebuilt, SnmfEnhancer)
    assert torch.equal(rebuilt(X), mask)
    one = torch.cat([model(X[i : i + 1]) for i in range(X.shape[0])])
    torch.testing.assert_close(one, mask, rtol=1e-5, atol=1e-6)


def test_enhancer_requires_fitting_and_valid_input() -> None:
    model = SnmfEnhancer(SnmfConfig(n_freq=24, rank_speech=2, rank_noise=2))
    with pytest.raises(BatchsepError, match="not fitted"):
        model(torch.ones(1, 24, 5))
    fitted = _fitted_enhancer()
    with pytest.raises(ParameterError, match="expected"):
        fitted(torch.ones(1, 25, 5))


def test_config_round_trip_and_validation() -> None:
    cfg = SnmfConfig(rank_speech=50, beta=1.0)
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ParameterError, match="beta"):
        SnmfConfig(beta=0.5)
    with pytest.raises(ParameterError, match="rank_noise"):
        SnmfConfig(rank_noise=0)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_decaying_activations_stop_at_a_normal_float(beta):
    """Activations the sparsity drives to 0 stop at H_FLOOR, not in subnormal floats (~20x slower)."""
    from batchsep.models.nmf import H_FLOOR, normalize_columns, snmf_fit, snmf_infer

    g = torch.Generator().manual_seed(0)
    W = torch.rand(16, 6, generator=g)
    V = torch.full((16, 5), 0.6 / float(normalize_columns(W).sum(0).max()))  # WᵀV < sparsity
    tiny = torch.finfo(torch.float32).tiny
    H = snmf_infer(V, W, n_iter=300, sparsity=1.0, beta=beta)
    assert float(H.min()) >= H_FLOOR > tiny  # without the floor: 1.4e-45 (subnormal) for beta 2
    fit = snmf_fit(V, rank=6, n_iter=300, sparsity=1.0, beta=beta)
    subnormal = (fit.H > 0) & (fit.H.lt(tiny))
    assert not bool(subnormal.any())
