"""BSS Eval: agreement with mir_eval / fast_bss_eval, closed forms, conventions, errors."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import cast

import fast_bss_eval
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.signal as ss
import torch

from batchsep.dsp import irm, istft, stft
from batchsep.errors import ParameterError
from batchsep.evaluation import bss as bss_mod
from batchsep.evaluation.bss import DB_LIMIT, bss_eval, bss_eval_many, sdr_only

TOL_DB = 0.01  # required agreement with mir_eval


def mir_eval_source0(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
    """[sdr, sir, sar] of source 0 from mir_eval.separation.bss_eval_sources, no permutation."""
    import mir_eval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bss_eval_sources is deprecated in mir_eval 0.8
        sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(
            refs, ests, compute_permutation=False
        )
    return np.array([sdr[0], sir[0], sar[0]])


def as_array(r: bss_mod.BssResult) -> np.ndarray:
    return np.array([r.sdr, r.sir, r.sar])


def colored(rng: np.random.Generator, n: int, pole: float) -> np.ndarray:
    """AR(1) noise: low-passed like speech, so the Gram matrix is not trivially conditioned."""
    return ss.lfilter([1.0], [1.0, -pole], rng.standard_normal(n))


def synthetic_case(seed: int, n: int = 12000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """clean, noise and an 'enhanced' estimate with filtering, residual noise and artifacts."""
    rng = np.random.default_rng(seed)
    clean = colored(rng, n, 0.9) * np.hanning(n)
    noise = colored(rng, n, rng.uniform(0.0, 0.95)) * rng.uniform(0.3, 2.0)
    fir = rng.standard_normal(8) * 0.1
    fir[0] = 1.0
    enhanced = (
        ss.lfilter(fir, [1.0], clean)
        + rng.uniform(0.05, 0.5) * noise
        + rng.uniform(0.01, 0.2) * rng.standard_normal(n)
    )
    return clean, noise, enhanced


@pytest.mark.parametrize("seed", range(4))
def test_matches_mir_eval_on_synthetic_signals(seed: int) -> None:
    clean, noise, enhanced = synthetic_case(seed)
    mixture = clean + noise
    expected = mir_eval_source0(np.stack([clean, noise]), np.stack([enhanced, mixture - enhanced]))
    got = as_array(bss_eval(clean, enhanced, noise_reference=noise))
    np.testing.assert_allclose(got, expected, atol=TOL_DB, rtol=0)
    assert np.all(np.abs(got) < 60)  # a real decomposition, not clamped values


@pytest.mark.parametrize("seed", range(2))
def test_matches_fast_bss_eval_two_sources(seed: int) -> None:
    # fast_bss_eval's numpy bss_eval_sources breaks on numpy 2; its torch backend works
    clean, noise, enhanced = synthetic_case(seed + 10)
    mixture = clean + noise
    refs = torch.from_numpy(np.stack([clean, noise]))
    ests = torch.from_numpy(np.stack([enhanced, mixture - enhanced]))
    sdr, sir, sar = fast_bss_eval.bss_eval_sources(refs, ests, compute_permutation=False)[:3]
    expected = np.array([sdr[0].item(), sir[0].item(), sar[0].item()])
    got = as_array(bss_eval(clean, enhanced, noise_reference=noise))
    np.testing.assert_allclose(got, expected, atol=TOL_DB, rtol=0)


def test_source0_does_not_depend_on_second_estimate() -> None:
    clean, noise, enhanced = synthetic_case(3)
    mixture = clean + noise
    a = mir_eval_source0(np.stack([clean, noise]), np.stack([enhanced, mixture - enhanced]))
    b = mir_eval_source0(np.stack([clean, noise]), np.stack([enhanced, noise + 1.0]))
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_sdr_only_matches_mir_eval_and_bss_eval() -> None:
    clean, noise, enhanced = synthetic_case(5)
    full = bss_eval(clean, enhanced, noise_reference=noise)
    expected = mir_eval_source0(np.stack([clean, noise]), np.stack([enhanced, noise]))[0]
    assert sdr_only(clean, enhanced) == pytest.approx(expected, abs=TOL_DB)
    assert sdr_only(clean, enhanced) == pytest.approx(full.sdr, abs=1e-6)


def test_single_reference_convention_matches_mir_eval() -> None:
    clean, _, enhanced = synthetic_case(6)
    mir = mir_eval_source0(clean[None], enhanced[None])
    assert np.isinf(mir[1])  # mir_eval: SIR = +inf with one source
    res = bss_eval(clean, enhanced)
    assert res.sdr == pytest.approx(mir[0], abs=TOL_DB)
    assert res.sar == pytest.approx(mir[2], abs=TOL_DB)
    assert res.sir == DB_LIMIT
    silent_noise = bss_eval(clean, enhanced, noise_reference=np.zeros_like(clean))
    assert silent_noise == res


def test_closed_form_white_noise_at_known_snr() -> None:
    rng = np.random.default_rng(7)
    n = 64000
    clean = colored(rng, n, 0.8)
    noise = rng.standard_normal(n)
    for snr in (-5.0, 0.0, 10.0, 20.0):
        scaled = noise * np.sqrt(np.sum(clean**2) / np.sum(noise**2) / 10 ** (snr / 10))
        res = bss_eval(clean, clean + scaled, noise_reference=scaled)
        # the 512 filter taps absorb a fraction p = 512/n of the white noise into the target
        p = 512 / n
        ratio = 10 ** (snr / 10)
        expected = 10 * np.log10((ratio + p) / (1 - p))
        assert res.sdr == pytest.approx(expected, abs=0.05)
        assert res.sir == pytest.approx(expected, abs=0.05)
        assert res.sar == DB_LIMIT  # the mixture lies in the span of the references


def test_closed_form_artifacts_give_sar_not_sir() -> None:
    rng = np.random.default_rng(8)
    n = 64000
    clean, noise, artifact = colored(rng, n, 0.8), rng.standard_normal(n), rng.standard_normal(n)
    artifact *= np.sqrt(np.sum(clean**2) / np.sum(artifact**2) / 10 ** (10 / 10))
    res = bss_eval(clean, clean + artifact, noise_reference=noise)
    assert res.sar == pytest.approx(10.0, abs=0.1)
    assert res.sdr == pytest.approx(10.0, abs=0.1)
    assert res.sir > 25.0


def test_filtered_and_scaled_target_is_perfect() -> None:
    rng = np.random.default_rng(9)
    clean, noise = colored(rng, 16000, 0.8), rng.standard_normal(16000)
    clean[-16:] = 0.0  # so that the filtered copy has no truncated tail
    est = -0.3 * ss.lfilter([1.0, 0.5, -0.2], [1.0], clean)  # within the 512-tap distortion model
    res = bss_eval(clean, est, noise_reference=noise)
    assert res.sdr > 90.0 and res.sir > 90.0 and res.sar > 90.0
    assert max(res.sdr, res.sir, res.sar) <= DB_LIMIT


def test_scale_invariant_and_batch_consistent() -> None:
    clean, noise, enhanced = synthetic_case(11)
    one = bss_eval(clean, enhanced, noise_reference=noise)
    scaled = bss_eval(4.0 * clean, 0.01 * enhanced, noise_reference=4.0 * noise)
    np.testing.assert_allclose(as_array(scaled), as_array(one), atol=1e-8)
    estimates = np.stack([enhanced, clean + noise, clean + 0.1 * noise])
    many = bss_eval_many(clean, estimates, noise_reference=noise)
    single = [bss_eval(clean, e, noise_reference=noise) for e in estimates]
    for a, b in zip(many, single):
        np.testing.assert_allclose(as_array(a), as_array(b), atol=1e-8)


def test_float32_and_torch_inputs() -> None:
    clean, noise, enhanced = synthetic_case(12)
    ref = bss_eval(clean, enhanced, noise_reference=noise)
    got = bss_eval(
        cast(
            np.ndarray, torch.from_numpy(clean.astype(np.float32))
        ),  # declared ndarray; torch is taken
        enhanced.astype(np.float32),
        noise_reference=noise.astype(np.float32),
    )
    np.testing.assert_allclose(as_array(got), as_array(ref), atol=1e-3)


def test_least_squares_fallback_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    clean, noise, enhanced = synthetic_case(13)
    expected = as_array(bss_eval(clean, enhanced, noise_reference=noise))

    def broken_cholesky(*args: object, **kwargs: object) -> np.ndarray:
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(sla, "cholesky", broken_cholesky)
    got = as_array(bss_eval(clean, enhanced, noise_reference=noise))
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.ones(100), np.ones(99)), {}, "99 samples"),
        ((np.zeros(100), np.ones(100)), {}, "reference is digital silence"),
        ((np.ones(100), np.zeros(100)), {}, "estimate 0 is digital silence"),
        ((np.ones(100), np.full(100, np.nan)), {}, "NaN"),
        ((np.ones((2, 100)), np.ones(100)), {}, "ndim=2"),
        ((np.ones(100), np.ones(100)), {"noise_reference": np.ones(50)}, "noise_reference has 50"),
        ((np.ones(100), np.ones(100)), {"filter_length": 0}, "filter_length=0"),
        ((np.arange(100), np.ones(100)), {}, "floating point"),
    ],
)
def test_invalid_inputs_raise(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        bss_eval(*args, **kwargs)


def test_sdr_only_invalid_inputs() -> None:
    with pytest.raises(ParameterError, match="estimate is digital silence"):
        sdr_only(np.ones(1000), np.zeros(1000))
    with pytest.raises(ParameterError, match="999 samples"):
        sdr_only(np.ones(1000), np.ones(999))


def oracle_irm_enhance(clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """A realistic 'enhanced' signal: the oracle ratio mask applied to the noisy STFT."""
    s, x = stft(clean), stft(noisy)
    mask = irm(s, x - s)
    return np.asarray(istft(mask * x, length=noisy.shape[-1]), dtype=np.float64)


@pytest.mark.realdata
def test_matches_mir_eval_on_real_pairs(pairs_dir: Path) -> None:
    import soundfile as sf

    files = sorted((pairs_dir / "clean").glob("*.flac"))
    assert len(files) == 6
    for k, path in enumerate(files):
        clean, sr = sf.read(path, dtype="float64")
        noisy, sr2 = sf.read(pairs_dir / "noisy" / path.name, dtype="float64")
        assert sr == sr2 == 16000 and clean.shape == noisy.shape
        noise = noisy - clean
        enhanced = oracle_irm_enhance(clean, noisy)
        results = bss_eval_many(clean, np.stack([enhanced, noisy]), noise_reference=noise)
        expected = mir_eval_source0(np.stack([clean, noise]), np.stack([enhanced, noise]))
        np.testing.assert_allclose(as_array(results[0]), expected, atol=TOL_DB, rtol=0)
        if k < 2:  # input: mir_eval needs a non-silent 2nd estimate; source 0 ignores it
            expected_in = mir_eval_source0(np.stack([clean, noise]), np.stack([noisy, noise]))
            np.testing.assert_allclose(as_array(results[1])[:2], expected_in[:2], atol=TOL_DB)
            assert results[1].sar >= min(expected_in[2], DB_LIMIT) - 1.0  # both: rounding noise
        assert results[0].sdr > results[1].sdr + 3.0  # the oracle mask does enhance
        assert sdr_only(clean, enhanced) == pytest.approx(expected[0], abs=TOL_DB)
