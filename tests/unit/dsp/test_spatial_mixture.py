"""The mask-guided cACGMM on known-answer cases: two point sources in disjoint bins, Tyler's estimator,
degenerate inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from batchsep.dsp import spatial_mixture as sm
from batchsep.errors import ParameterError

F, C, T = 6, 4, 400


def two_sources(seed: int = 0, snr_db: float = 20.0):
    """``X [C, F, T]``: in each bin exactly one of two point sources is active (``labels`` True: source 0,
    the "speech"), with its own random steering vector per frequency, plus white sensor noise."""
    rng = np.random.default_rng(seed)
    steer = np.exp(1j * rng.uniform(-np.pi, np.pi, (2, F, C)))
    labels = rng.random((F, T)) < 0.4
    amp = (rng.normal(size=(F, T)) + 1j * rng.normal(size=(F, T))) / np.sqrt(2)
    source = np.where(labels, 0, 1)  # [F, T]
    a = steer[source, np.arange(F)[:, None]]  # [F, T, C]
    X = np.transpose(a * amp[..., None], (2, 0, 1))
    noise = (rng.normal(size=X.shape) + 1j * rng.normal(size=X.shape)) / np.sqrt(2)
    return X + 10 ** (-snr_db / 20) * noise, labels, rng


@pytest.mark.parametrize("prior", ["estimated", "mask"])
def test_refined_mask_recovers_the_bin_labels_from_a_noisy_initial_mask(prior):
    """Initial mask 0.6 where source 0 is active, 0.4 elsewhere, and a quarter of the bins the wrong way
    round: the spatial evidence sorts every bin out."""
    X, labels, rng = two_sources()
    init = np.where(labels, 0.6, 0.4)
    flip = rng.random(labels.shape) < 0.25
    init = np.where(flip, 1.0 - init, init)
    assert np.mean((init > 0.5) == labels) < 0.8
    out = sm.spatial_speech_mask(X, init, prior=prior)
    assert out.shape == (F, T) and out.dtype == np.float64
    assert np.all((out >= 0) & (out <= 1))
    assert np.mean((out > 0.5) == labels) > 0.99
    # and confidently: the posteriors are near 0 or 1
    assert np.mean(np.abs(out - labels) < 0.1) > 0.98


def test_the_mask_fixes_which_class_is_speech():
    """The same observations with the initial mask inverted: the classes swap (no permutation problem)."""
    X, labels, _ = two_sources(1)
    out = sm.spatial_speech_mask(X, np.where(labels, 0.3, 0.7))
    assert np.mean((out > 0.5) == ~labels) > 0.99


def test_an_uninformative_guided_prior_stays_uninformative():
    """With ``m = 0.5`` everywhere both classes start identical and stay so: the posterior is 0.5."""
    X, _, _ = two_sources(2)
    out = sm.spatial_speech_mask(X, np.full((F, T), 0.5), prior="mask")
    np.testing.assert_allclose(out, 0.5, atol=1e-9)


def test_tylers_fixed_point_recovers_the_acg_matrix():
    """Samples of an ACG with a known ``B``: iterating the M-step (γ = 1) converges to ``B`` (trace ``D``)."""
    rng = np.random.default_rng(3)
    n = 20000
    a = rng.normal(size=(2, C, C)) + 1j * rng.normal(size=(2, C, C))
    B = a @ np.conj(np.swapaxes(a, -1, -2)) + 0.5 * np.eye(C)  # [F=2, C, C]
    B *= C / np.real(np.trace(B, axis1=-2, axis2=-1))[:, None, None]
    L = np.linalg.cholesky(B)
    g = (rng.normal(size=(2, C, n)) + 1j * rng.normal(size=(2, C, n))) / np.sqrt(2)
    Z, valid = sm.normalize_observations(np.transpose(L @ g, (1, 0, 2)))
    assert valid.all()
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0)
    gamma = np.ones((1, 2, n))
    quad = np.ones_like(gamma)
    for _ in range(30):
        W, log_det = sm.acg_covariances(Z, gamma, quad)
        quad = sm.quadratic_form(Z, W)
    B_inv = np.conj(np.swapaxes(W[0], -1, -2)) @ W[0]
    q = np.real(np.einsum("fdt,fde,fet->ft", np.conj(Z), B_inv, Z))
    np.testing.assert_allclose(quad[0], q, rtol=1e-10)
    estimate = np.linalg.inv(B_inv)
    assert np.linalg.norm(estimate - B) < 0.05 * np.linalg.norm(B)
    np.testing.assert_allclose(log_det[0], np.log(np.linalg.det(estimate).real), atol=1e-8)
    # the likelihood is scale-invariant: B and 7 B give the same density
    _, log_det7 = sm._floored_whitener(7.0 * B, 0.0)
    np.testing.assert_allclose(log_det7, np.log(np.linalg.det(B).real), atol=1e-8)


def test_rank_deficient_and_silent_inputs_do_not_crash():
    """All channels identical (every B singular), a silent channel, a silent stretch: finite, in [0, 1],
    the initial mask kept where there is no observation."""
    rng = np.random.default_rng(4)
    s = rng.normal(size=(F, T)) + 1j * rng.normal(size=(F, T))
    init = rng.random((F, T))
    X = np.broadcast_to(s, (C, F, T)).copy()
    out = sm.spatial_speech_mask(X, init)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    X[1] = 0.0  # a dead microphone
    X[:, :, :50] = 0.0  # digital silence
    out = sm.spatial_speech_mask(X, init, prior="mask")
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    np.testing.assert_array_equal(out[:, :50], init[:, :50])
    silent = sm.spatial_speech_mask(np.zeros((C, F, T), complex), init)
    np.testing.assert_array_equal(silent, init)
    # a mask of all zeros (no speech class at all) or all ones does not crash either
    X, _, _ = two_sources(5)
    for value in (0.0, 1.0):
        out = sm.spatial_speech_mask(X, np.full((F, T), value))
        assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))


def test_parameters_are_checked():
    X, labels, _ = two_sources(6)
    m = labels.astype(float)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"iterations": 0}, "iterations"),
        ({"iterations": True}, "iterations"),
        ({"prior": "uniform"}, "prior"),
        ({"eigen_floor": 1.0}, "eigen_floor"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ParameterError, match=match):
            sm.spatial_speech_mask(X, m, **kwargs)
    with pytest.raises(ParameterError, match="disagree"):
        sm.spatial_speech_mask(X, m[:, :-1])
    with pytest.raises(ParameterError, match="at least 2 channels"):
        sm.spatial_speech_mask(X[:1], m)
