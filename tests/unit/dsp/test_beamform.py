"""Beamformers on closed-form cases: rank-1 speech + white noise against their analytic solutions."""

from __future__ import annotations

import numpy as np
import pytest

from batchsep.dsp import beamform as bf
from batchsep.errors import ParameterError

F, C = 5, 4


def rank1_case(seed: int = 0, sigma_s: float = 2.0, sigma_n: float = 0.5):
    """Steering ``a [F, C]`` (unit modulus), ``Φs = σs² a aᴴ``, ``Φn = σn² I``."""
    rng = np.random.default_rng(seed)
    a = np.exp(1j * rng.uniform(-np.pi, np.pi, (F, C)))
    phi_s = sigma_s**2 * np.einsum("fc,fd->fcd", a, np.conj(a))
    phi_n = np.broadcast_to(sigma_n**2 * np.eye(C), (F, C, C)).astype(complex)
    return a, phi_s, phi_n, sigma_s**2, sigma_n**2


@pytest.mark.parametrize("ref", [0, 2])
def test_mvdr_souden_is_the_analytic_distortionless_filter(ref):
    a, phi_s, phi_n, _, _ = rank1_case()
    w, r, warnings = bf.mvdr_souden(phi_s, phi_n, ref, loading=0.0)
    expected = a * np.conj(a[:, ref : ref + 1]) / C  # a a_ref* / ‖a‖²
    assert r == ref and warnings == []
    np.testing.assert_allclose(w, expected, atol=1e-10)
    # distortionless with respect to the reference channel's image: wᴴ a = a_ref
    np.testing.assert_allclose(np.einsum("fc,fc->f", np.conj(w), a), a[:, ref], atol=1e-10)


def test_mwf_matches_sherman_morrison():
    a, phi_s, phi_n, s2, n2 = rank1_case(1)
    w, _ = bf.mwf(phi_s, phi_n, 1, loading=0.0)
    expected = s2 * a * np.conj(a[:, 1:2]) / (n2 + s2 * C)
    np.testing.assert_allclose(w, expected, atol=1e-10)


def test_gev_ban_in_white_noise_is_delay_and_sum():
    """Principal generalised eigenvector ∝ a; with Φn = σ²I, BAN gives 1/(|c| ‖a‖ √C): w = a e^{jθ} / C,
    and the phase fix (w_ref real > 0) makes it a a_ref* / C — the delay-and-sum filter."""
    a, phi_s, phi_n, _, _ = rank1_case(2)
    w, warnings = bf.gev_ban(phi_s, phi_n, 0, loading=0.0)
    expected = a * np.conj(a[:, :1]) / C
    assert warnings == []
    np.testing.assert_allclose(w, expected, atol=1e-10)
    np.testing.assert_allclose(bf.delay_and_sum(phi_s, 0), expected, atol=1e-10)


def test_gev_maximises_the_generalised_rayleigh_quotient():
    rng = np.random.default_rng(3)
    b = rng.normal(size=(F, C, C)) + 1j * rng.normal(size=(F, C, C))
    phi_n = b @ np.conj(np.swapaxes(b, -1, -2)) + 0.1 * np.eye(C)
    a, phi_s, _, _, _ = rank1_case(3)
    v, _ = bf.principal_generalized_eigenvector(phi_s, phi_n, loading=0.0)
    # rank-1 speech: v ∝ Φn⁻¹ a
    expected = np.linalg.solve(phi_n, a[..., None])[..., 0]
    cos = np.abs(np.einsum("fc,fc->f", np.conj(v), expected)) / (
        np.linalg.norm(v, axis=1) * np.linalg.norm(expected, axis=1)
    )
    np.testing.assert_allclose(cos, 1.0, atol=1e-9)


def test_gev_ban_keeps_the_reference_channels_phase_in_coloured_noise():
    """Rank-1 speech, any Φn: ``wᴴ a / a_ref`` is real and positive at every bin (no phase jumps)."""
    rng = np.random.default_rng(8)
    b = rng.normal(size=(F, C, C)) + 1j * rng.normal(size=(F, C, C))
    phi_n = b @ np.conj(np.swapaxes(b, -1, -2)) + 0.1 * np.eye(C)
    a, phi_s, _, _, _ = rank1_case(8)
    for ref in range(C):
        w, _ = bf.gev_ban(phi_s, phi_n, ref, loading=0.0)
        response = np.einsum("fc,fc->f", np.conj(w), a) / a[:, ref]
        np.testing.assert_allclose(np.imag(response), 0.0, atol=1e-9)
        assert np.all(np.real(response) > 0)


def test_reference_selection_picks_the_best_snr_channel():
    """Rank-1 speech: every reference gives the same filter up to a scale (a tie). With diffuse speech
    ``Φs = diag(p)`` in white noise, ``w_r ∝ e_r`` and reference r's output SNR is ``p_r / σn²``."""
    _, _, phi_n, _, _ = rank1_case(4)
    phi_s = np.broadcast_to(np.diag([0.3, 0.5, 2.0, 1.0]), (F, C, C)).astype(complex)
    assert bf.select_reference(phi_s, phi_n) == 2
    assert bf.design("mvdr", phi_s, phi_n).ref == 2


def test_singular_noise_covariance_is_regularised_with_a_warning():
    _, phi_s, _, _, _ = rank1_case(5)
    rng = np.random.default_rng(5)
    d = np.exp(1j * rng.uniform(-np.pi, np.pi, (F, C)))
    phi_n = np.einsum("fc,fd->fcd", d, np.conj(d))  # rank 1: singular
    phi_n[0] = 0.0  # and an all-zero bin
    for method in bf.BEAMFORMERS:
        out = bf.design(method, phi_s, phi_n, ref=0)
        assert np.all(np.isfinite(out.w)), method
        if method != "delay_and_sum":
            assert out.warnings and "singular" in out.warnings[0], method


def test_covariance_estimator_whole_and_recursive():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(C, F, 50)) + 1j * rng.normal(size=(C, F, 50))
    m = rng.uniform(size=(F, 50))
    s_ref = np.einsum("ft,cft,dft->fcd", m, X, np.conj(X)) / 50
    n_ref = np.einsum("ft,cft,dft->fcd", 1 - m, X, np.conj(X)) / 50
    est = bf.CovarianceEstimator()
    est.update(X[..., :20], m[:, :20])
    est.update(X[..., 20:], m[:, 20:])
    s, n = est.covariances()
    np.testing.assert_allclose(s, s_ref, atol=1e-12)
    np.testing.assert_allclose(n, n_ref, atol=1e-12)
    np.testing.assert_allclose(s + n, np.einsum("cft,dft->fcd", X, np.conj(X)) / 50, atol=1e-12)
    # recursion frame by frame == block update
    lam = 0.9
    phi = np.zeros((F, C, C), complex)
    for t in range(50):
        phi = lam * phi + (1 - lam) * m[:, t, None, None] * np.einsum(
            "cf,df->fcd", X[:, :, t], np.conj(X[:, :, t])
        )
    rec = bf.CovarianceEstimator(lam)
    rec.update(X[..., :7], m[:, :7])
    rec.update(X[..., 7:], m[:, 7:])
    np.testing.assert_allclose(rec.covariances()[0], phi, atol=1e-12)


def test_apply_filter_and_bad_inputs():
    a, phi_s, phi_n, _, _ = rank1_case(7)
    s = np.ones((F, 3))
    X = a.T[:, :, None] * s[None]  # [C, F, T]: the source seen through the steering
    w = bf.delay_and_sum(phi_s, 0)
    np.testing.assert_allclose(bf.apply_filter(w, X), a[:, :1] * s, atol=1e-12)
    with pytest.raises(ParameterError):
        bf.design("nope", phi_s, phi_n)
    with pytest.raises(ParameterError):
        bf.CovarianceEstimator(1.0)
    with pytest.raises(ParameterError):
        bf.mwf(phi_s[0], phi_n)


def test_hold_mask_known_answers_and_blocks():
    m = np.zeros((2, 8))
    m[0, 2] = 0.9  # one bin of speech at frame 2
    m[1, 5] = 0.4
    held = bf.hold_mask(m, 2)
    np.testing.assert_array_equal(held[0], [0, 0, 0.9, 0.9, 0.9, 0, 0, 0])  # frames 2..4
    np.testing.assert_array_equal(held[1], [0, 0, 0, 0, 0, 0.4, 0.4, 0.4])
    np.testing.assert_array_equal(bf.hold_mask(m, 0), m)
    # block by block, with the previous block's last frames, == in one piece
    rng = np.random.default_rng(8)
    m = rng.uniform(size=(3, 40))
    pieces = [bf.hold_mask(m[:, :13], 3), bf.hold_mask(m[:, 13:], 3, m[:, 10:13])]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), bf.hold_mask(m, 3))
    with pytest.raises(ParameterError):
        bf.hold_mask(m, -1)


def test_covariance_estimator_held_and_powered_noise_weights():
    """Noise weight ``(1 - held mask)^p``: the explicit sums, and the same block by block (the held mask
    carries over the block boundary); the speech SCM is unchanged."""
    rng = np.random.default_rng(9)
    X = rng.normal(size=(C, F, 50)) + 1j * rng.normal(size=(C, F, 50))
    m = rng.uniform(size=(F, 50)) ** 3
    w_n = (1 - bf.hold_mask(m, 3)) ** 2
    n_ref = np.einsum("ft,cft,dft->fcd", w_n, X, np.conj(X)) / 50
    s_ref = np.einsum("ft,cft,dft->fcd", m, X, np.conj(X)) / 50
    est = bf.CovarianceEstimator(noise_hold=3, noise_power=2.0)
    for a, b in ((0, 2), (2, 21), (21, 50)):  # a block shorter than the hold, too
        est.update(X[..., a:b], m[:, a:b])
    s, n = est.covariances()
    np.testing.assert_allclose(s, s_ref, atol=1e-12)
    np.testing.assert_allclose(n, n_ref, atol=1e-12)
    # held weights never exceed 1 - m: the noise SCM only loses frames next to speech
    assert np.all(w_n <= 1 - m + 1e-12)
    with pytest.raises(ParameterError):
        bf.CovarianceEstimator(noise_hold=-1)
    with pytest.raises(ParameterError):
        bf.CovarianceEstimator(noise_power=0.0)
