"""SI-SDR, PESQ, STOI and score_file: closed forms, reference implementations, failure rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import fast_bss_eval
import numpy as np
import pesq
import pystoi
import pytest

from batchsep.dsp import mix_at_snr, resample
from batchsep.errors import ParameterError
from batchsep.evaluation.bss import DB_LIMIT, bss_eval
from batchsep.evaluation.metrics import (
    input_snr,
    pesq_score,
    score_file,
    score_keys,
    si_sdr,
    stoi_score,
)

Speech = Callable[..., np.ndarray]


def orthogonal_noise(ref: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """Noise exactly orthogonal to ``ref`` with ‖ref‖²/‖noise‖² = 10^(snr/10)."""
    noise = np.random.default_rng(seed).standard_normal(ref.size)
    noise -= np.dot(noise, ref) / np.dot(ref, ref) * ref
    return noise * np.sqrt(np.dot(ref, ref) / np.dot(noise, noise) / 10 ** (snr_db / 10))


# ---------------------------------------------------------------- SI-SDR


@pytest.mark.parametrize("snr", [-10.0, 0.0, 7.5, 30.0])
def test_si_sdr_closed_form_orthogonal_noise(snr: float) -> None:
    ref = np.random.default_rng(1).standard_normal(4000)
    est = ref + orthogonal_noise(ref, snr, seed=2)
    assert si_sdr(ref, est) == pytest.approx(snr, abs=1e-9)
    # scaling the estimate, or adding more of the target, changes nothing
    assert si_sdr(ref, 3.0 * est) == pytest.approx(snr, abs=1e-9)
    assert si_sdr(ref, est + 0.5 * ref) == pytest.approx(
        10 * np.log10(1.5**2 * 10 ** (snr / 10)), abs=1e-9
    )


def test_si_sdr_of_scaled_reference_is_clamped() -> None:
    ref = np.sin(np.arange(2000) / 7.0)
    assert si_sdr(ref, 2.0 * ref) == DB_LIMIT
    assert si_sdr(ref, -ref) == DB_LIMIT  # sign is a scale too
    orth = orthogonal_noise(ref, 0.0, seed=3)
    assert si_sdr(ref, orth) == -DB_LIMIT


def test_si_sdr_matches_fast_bss_eval() -> None:
    rng = np.random.default_rng(4)
    for _ in range(5):
        ref = rng.standard_normal(3000)
        est = ref * rng.uniform(0.2, 2) + rng.standard_normal(3000) * rng.uniform(0.1, 2)
        expected = float(fast_bss_eval.si_sdr(ref[None], est[None])[0])
        assert si_sdr(ref, est) == pytest.approx(expected, abs=1e-6)


def test_si_sdr_zero_mean() -> None:
    ref = np.random.default_rng(5).standard_normal(3000)
    est = ref + orthogonal_noise(ref, 10.0, seed=6)
    ref_c = ref - ref.mean()
    offset = 5.0  # a DC offset hurts SI-SDR unless means are removed
    assert si_sdr(ref, est + offset) < 0.0
    expected = si_sdr(ref_c, est - est.mean())
    assert si_sdr(ref + 1.0, est + offset, zero_mean=True) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("ref", "est", "match"),
    [
        (np.zeros(100), np.ones(100), "reference is digital silence"),
        (np.ones(100), np.zeros(100), "estimate is digital silence"),
        (np.ones(100), np.ones(90), "length mismatch"),
        (np.ones(100), np.full(100, np.inf), "NaN or Inf"),
    ],
)
def test_si_sdr_errors(ref: np.ndarray, est: np.ndarray, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        si_sdr(ref, est)


# ---------------------------------------------------------------- PESQ / STOI


def noisy_version(s: np.ndarray, snr: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(s.size)
    return mix_at_snr(s, noise, snr)[0]


def test_pesq_wideband_at_16k_matches_library(speechlike: Speech) -> None:
    s = speechlike(16000)
    x = noisy_version(s, 15.0)
    assert pesq_score(s, x, 16000) == pytest.approx(pesq.pesq(16000, s, x, "wb"), abs=1e-6)
    assert pesq_score(s, s, 16000) > 4.5
    assert pesq_score(s, noisy_version(s, 30.0), 16000) > pesq_score(
        s, noisy_version(s, 0.0), 16000
    )


def test_pesq_narrowband_at_8k(speechlike: Speech) -> None:
    s = speechlike(8000)
    x = noisy_version(s, 20.0)
    assert pesq_score(s, x, 8000) == pytest.approx(pesq.pesq(8000, s, x, "nb"), abs=1e-6)


def test_pesq_other_rates_resampled_to_16k(speechlike: Speech) -> None:
    s = speechlike(22050)
    x = noisy_version(s, 20.0)
    expected = pesq.pesq(16000, resample(s, 22050, 16000), resample(x, 22050, 16000), "wb")
    assert pesq_score(s, x, 22050) == pytest.approx(expected, abs=1e-6)


def test_pesq_too_short_is_a_readable_error(speechlike: Speech) -> None:
    s = speechlike(16000)[5000:6000]
    with pytest.raises(ParameterError, match=r"PESQ failed .* 0\.062 s"):
        pesq_score(s, s, 16000)


def test_stoi_matches_library(speechlike: Speech) -> None:
    s = speechlike(16000)
    x = noisy_version(s, 0.0)
    assert stoi_score(s, x, 16000) == pytest.approx(pystoi.stoi(s, x, 16000), abs=1e-9)
    assert stoi_score(s, x, 16000, extended=True) == pytest.approx(
        pystoi.stoi(s, x, 16000, extended=True), abs=1e-9
    )
    assert stoi_score(s, s, 16000) == pytest.approx(1.0, abs=1e-6)
    assert stoi_score(s, noisy_version(s, -5.0), 16000) < stoi_score(s, x, 16000)


@pytest.mark.parametrize(("start", "stop"), [(4000, 8000), (6000, 6300), (0, 8000)])
def test_stoi_too_short_is_an_error(speechlike: Speech, start: int, stop: int) -> None:
    s = speechlike(16000)[start:stop]
    with pytest.raises(ParameterError, match="STOI needs >= 30"):
        stoi_score(s, s, 16000)


def test_bad_sample_rate_raises(speechlike: Speech) -> None:
    s = speechlike(16000)
    with pytest.raises(ParameterError, match="sr=0"):
        pesq_score(s, s, 0)
    with pytest.raises(ParameterError, match=r"sr=16000\.0"):
        stoi_score(s, s, 16000.0)  # type: ignore[arg-type]


# ---------------------------------------------------------------- score_file


def test_input_snr_exact(speechlike: Speech) -> None:
    s = speechlike(16000)
    x = noisy_version(s, 3.25)
    assert input_snr(s, x) == pytest.approx(3.25, abs=1e-9)


def test_score_file_values_and_improvements(speechlike: Speech) -> None:
    s = speechlike(16000, seed=1)
    rng = np.random.default_rng(7)
    noise = rng.standard_normal(s.size)
    noisy, scaled, _ = mix_at_snr(s, noise, 5.0)
    enhanced = s + 0.2 * scaled + 0.01 * rng.standard_normal(s.size)
    out = score_file(s, noisy, enhanced, 16000)
    assert list(out) == score_keys()
    assert all(out[k] is None for k in out if k.endswith("_error")), out
    assert out["input_snr"] == pytest.approx(5.0, abs=1e-9)
    ref_bss = bss_eval(s, enhanced, noise_reference=scaled)
    assert out["sdr"] == pytest.approx(ref_bss.sdr, abs=1e-9)
    assert out["sar"] == pytest.approx(ref_bss.sar, abs=1e-9)
    assert out["sdr_in"] == pytest.approx(bss_eval(s, noisy, noise_reference=scaled).sdr, abs=1e-9)
    assert out["sar_in"] == DB_LIMIT
    assert out["si_sdr"] == pytest.approx(si_sdr(s, enhanced))
    assert out["pesq_in"] == pytest.approx(pesq_score(s, noisy, 16000))
    assert out["stoi"] == pytest.approx(stoi_score(s, enhanced, 16000))
    for m in ("sdr", "sir", "si_sdr", "pesq", "stoi"):
        assert out[f"{m}_i"] == pytest.approx(out[m] - out[f"{m}_in"])  # type: ignore[operator]
    assert out["sdr_i"] > 10.0 and out["pesq_i"] > 0.0 and out["stoi_i"] > 0.0  # type: ignore[operator]
    assert "sar_i" not in out


def test_score_file_subset_of_metrics(speechlike: Speech) -> None:
    s = speechlike(16000)
    out = score_file(s, noisy_version(s, 0.0), s, 16000, metrics=["si_sdr"])
    assert set(out) == {
        "input_snr",
        "si_sdr",
        "si_sdr_in",
        "si_sdr_i",
        "input_snr_error",
        "si_sdr_error",
        "si_sdr_in_error",
    }
    assert out["si_sdr"] == DB_LIMIT


def test_score_file_too_short_for_pesq_keeps_others(speechlike: Speech) -> None:
    s = speechlike(16000)[6000:6400]
    x = noisy_version(s, 10.0)
    out = score_file(s, x, s + 0.1 * (x - s), 16000)
    assert np.isnan(out["pesq"]) and np.isnan(out["pesq_in"]) and np.isnan(out["pesq_i"])  # type: ignore[arg-type]
    assert "PESQ failed" in str(out["pesq_error"]) and "PESQ failed" in str(out["pesq_in_error"])
    assert "STOI needs" in str(out["stoi_error"])
    assert out["sdr_error"] is None and np.isfinite(out["sdr"])  # type: ignore[arg-type]
    assert out["si_sdr_i"] == pytest.approx(20.0, abs=0.5)


def test_score_file_length_mismatch_of_noisy(speechlike: Speech) -> None:
    s = speechlike(16000)
    x = noisy_version(s, 10.0)
    out = score_file(s, x[:-5], s + 0.1 * (x - s), 16000)
    for key in ("input_snr", "sdr", "sdr_in", "si_sdr_in", "pesq_in", "stoi_in"):
        assert "length mismatch" in str(out[f"{key}_error"]), key
        assert "noisy has 47995" in str(out[f"{key}_error"])
    assert np.isnan(out["sdr"]) and np.isnan(out["si_sdr_i"])  # type: ignore[arg-type]
    # metrics that only need clean and enhanced are kept
    assert out["si_sdr_error"] is None and out["pesq_error"] is None and out["stoi_error"] is None
    assert np.isfinite(out["si_sdr"]) and np.isfinite(out["pesq"])  # type: ignore[arg-type]


def test_score_file_silent_and_nan_enhanced(speechlike: Speech) -> None:
    s = speechlike(16000)
    x = noisy_version(s, 10.0)
    out = score_file(s, x, np.zeros_like(s), 16000, metrics=["sdr", "si_sdr"])
    assert out["sdr_error"] == "enhanced is digital silence (all zeros)"
    assert out["si_sdr_error"] == "enhanced is digital silence (all zeros)"
    assert out["sdr_in_error"] is None
    assert out["sdr_in"] == pytest.approx(bss_eval(s, x, noise_reference=x - s).sdr, abs=1e-9)
    bad = s.copy()
    bad[100] = np.nan
    out = score_file(s, x, bad, 16000, metrics=["stoi"])
    assert "enhanced contains NaN" in str(out["stoi_error"])
    assert out["stoi_in_error"] is None


def test_score_file_silent_clean_fails_everything() -> None:
    z = np.zeros(16000)
    x = np.random.default_rng(0).standard_normal(16000)
    out = score_file(z, x, x, 16000)
    values = [k for k in score_keys() if not k.endswith("_error")]
    assert all(np.isnan(out[k]) for k in values)  # type: ignore[arg-type]
    errors = [k for k in score_keys() if k.endswith("_error")]
    assert all(out[k] == "clean is digital silence (all zeros)" for k in errors)


def test_score_file_bad_arguments_raise() -> None:
    x = np.ones(100)
    with pytest.raises(ParameterError, match="unknown metrics \\['mos'\\]"):
        score_file(x, x, x, 16000, metrics=["sdr", "mos"])
    with pytest.raises(ParameterError, match="not a string"):
        score_file(x, x, x, 16000, metrics="sdr")
    with pytest.raises(ParameterError, match="sr=-1"):
        score_file(x, x, x, -1)


@pytest.mark.realdata
def test_score_file_on_a_real_pair(pairs_dir: Path) -> None:
    import soundfile as sf

    clean, sr = sf.read(pairs_dir / "clean" / "p287_002.flac", dtype="float64")
    noisy, _ = sf.read(pairs_dir / "noisy" / "p287_002.flac", dtype="float64")
    out = score_file(clean, noisy, clean + 0.3 * (noisy - clean), sr)
    assert all(out[k] is None for k in out if k.endswith("_error")), out
    assert out["sdr_i"] == pytest.approx(-20 * np.log10(0.3), abs=0.2)  # noise scaled by 0.3
    assert 1.0 < out["pesq_in"] < out["pesq"] <= 4.65  # type: ignore[operator]
    assert 0.5 < out["stoi_in"] < out["stoi"] <= 1.0  # type: ignore[operator]
