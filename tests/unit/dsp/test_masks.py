"""Oracle masks on constructed spectra with known answers; numpy and torch alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from batchsep.dsp.masks import ORACLE_MASKS, iam, ibm, irm, psf
from batchsep.dsp.stft import stft
from batchsep.errors import ParameterError

F, T = 129, 20
S_BINS, N_BINS = slice(10, 30), slice(50, 90)


def rand_complex(rng, shape, scale=1.0):
    return scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def disjoint():
    """Speech energy only in bins 10-29, noise only in 50-89, nothing elsewhere."""
    rng = np.random.default_rng(0)
    S = np.zeros((F, T), np.complex128)
    N = np.zeros((F, T), np.complex128)
    S[S_BINS] = rand_complex(rng, (20, T), 0.01)
    N[N_BINS] = rand_complex(rng, (40, T), 5.0)
    return S, N


def test_ibm_on_disjoint_support_is_exactly_one_and_zero():
    S, N = disjoint()
    m = ibm(S, N)
    assert m.dtype == np.float32 and m.shape == (F, T)
    expected = np.zeros((F, T), np.float32)
    expected[S_BINS] = 1.0
    np.testing.assert_array_equal(m, expected)
    np.testing.assert_allclose(m * (S + N), S, rtol=0, atol=0)  # the IBM separates exactly here


def test_irm_on_disjoint_support():
    S, N = disjoint()
    m = irm(S, N)
    np.testing.assert_allclose(m[S_BINS], 1.0, atol=1e-4)  # EPS = 1e-8 against |S| ~ 1e-3
    assert np.all(m[N_BINS] == 0.0) and np.all(m[:10] == 0.0) and np.all(m[90:] == 0.0)


def test_ibm_on_tones_through_the_stft():
    """Speech = 1 kHz tone, noise = 5 kHz tone at 16 kHz: bin 32 is speech, bin 160 is noise."""
    t = np.arange(16000) / 16000
    S = stft(0.1 * np.sin(2 * np.pi * 1000 * t))
    N = stft(np.sin(2 * np.pi * 5000 * t))
    m = ibm(S, N)[:, 3:-3]
    assert np.all(m[32] == 1.0) and np.all(m[160] == 0.0)
    assert np.all(m[28:37] == 1.0)  # main lobe of the louder-here speech tone


def test_ibm_threshold():
    S = np.array([np.sqrt(2.0) + 0j])  # |S|²/|N|² = 2, i.e. 3.01 dB
    N = np.array([1.0 + 0j])
    assert ibm(S, N)[0] == 1.0
    assert ibm(S, N, threshold_db=3.0)[0] == 1.0
    assert ibm(S, N, threshold_db=3.1)[0] == 0.0
    assert ibm(N, S)[0] == 0.0


def test_irm_known_values_and_range():
    S = np.array([3.0 + 0j, 0.0, 1j])
    N = np.array([1.0 + 0j, 2.0, 0.0])
    np.testing.assert_allclose(irm(S, N), [0.75, 0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(irm(S, N, power=2.0), [0.9, 0.0, 1.0], atol=1e-7)
    rng = np.random.default_rng(1)
    Sr, Nr = rand_complex(rng, (F, T)), rand_complex(rng, (F, T))
    for p in (1.0, 2.0):
        m = irm(Sr, Nr, power=p)
        assert m.min() >= 0.0 and m.max() <= 1.0
        assert 0.2 < m.mean() < 0.8


def test_iam_known_values_and_truncation():
    S = np.array([1.0 + 0j, 2.0, 0.0, 1j])
    X = np.array([2.0 + 0j, 1.0, 3.0, -4j])
    np.testing.assert_allclose(iam(S, X), [0.5, 1.0, 0.0, 0.25], atol=1e-7)


def test_psf_equals_iam_when_phases_equal():
    rng = np.random.default_rng(2)
    phase = np.exp(1j * rng.uniform(-np.pi, np.pi, (F, T)))
    S = rng.uniform(0.0, 2.0, (F, T)) * phase
    X = rng.uniform(0.1, 2.0, (F, T)) * phase  # |S|/|X| both below and above 1
    np.testing.assert_allclose(psf(S, X), iam(S, X), atol=1e-6)
    assert 0.0 < (psf(S, X) == 1.0).mean() < 1.0  # the truncation at 1 was exercised


def test_psf_zero_for_opposite_phase():
    rng = np.random.default_rng(3)
    S = rand_complex(rng, (F, T))
    X = -rng.uniform(0.5, 3.0, (F, T)) * S
    assert np.all(psf(S, X) == 0.0)
    assert iam(S, X).min() > 0.3  # the amplitude mask does not see the phase


def test_psf_known_angle():
    S = np.array([1.0 + 0j])
    X = np.array([4.0 * np.exp(1j * np.pi / 3)])  # cos 60° = 0.5 → 0.25 · 0.5
    assert psf(S, X)[0] == pytest.approx(0.125, abs=1e-7)
    assert psf(S, 4.0 * np.exp(1j * np.pi / 2) * S)[0] == pytest.approx(0.0, abs=1e-7)


def test_psf_of_true_mixture_within_unit_interval():
    rng = np.random.default_rng(4)
    S, N = rand_complex(rng, (F, T)), rand_complex(rng, (F, T))
    X = S + N
    m = psf(S, X)
    assert m.min() >= 0.0 and m.max() <= 1.0
    untruncated = np.abs(S) / np.abs(X) * np.cos(np.angle(X) - np.angle(S))
    np.testing.assert_allclose(m, np.clip(untruncated, 0, 1), atol=1e-6)


@pytest.mark.parametrize("name", sorted(ORACLE_MASKS))
def test_torch_matches_numpy_and_batches(name):
    rng = np.random.default_rng(5)
    S, N = rand_complex(rng, (2, 3, F, T)), rand_complex(rng, (2, 3, F, T))
    B = S + N if name in ("iam", "psf") else N
    fn = ORACLE_MASKS[name]
    mn = fn(S, B)
    mt = fn(torch.from_numpy(S), torch.from_numpy(B))
    assert isinstance(mt, torch.Tensor) and mt.shape == (2, 3, F, T)
    np.testing.assert_allclose(mt.numpy(), mn, atol=1e-6)
    np.testing.assert_allclose(fn(S[1, 2], B[1, 2]), mn[1, 2], atol=1e-12)


@pytest.mark.parametrize("name", sorted(ORACLE_MASKS))
def test_shape_mismatch(name):
    with pytest.raises(ParameterError, match=r"differ in shape: \(3, 4\) vs \(4, 3\)"):
        ORACLE_MASKS[name](np.ones((3, 4), complex), np.ones((4, 3), complex))
