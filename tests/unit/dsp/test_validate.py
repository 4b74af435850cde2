"""Input validation: every bad input gives a ParameterError naming the value and the rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from batchsep.dsp.validate import check_positive, check_sample_rate, validate_audio
from batchsep.errors import ParameterError


@pytest.mark.parametrize(
    ("value", "allow_zero"), [(1e-9, False), (3, False), (0.0, True), (2.5, True)]
)
def test_check_positive_accepts(value, allow_zero):
    check_positive("x", value, allow_zero=allow_zero)


@pytest.mark.parametrize(
    ("value", "allow_zero", "rule"),
    [(0, False, "> 0"), (-1.0, False, "> 0"), (-1e-12, True, ">= 0"), (float("nan"), True, ">= 0"),
     (float("inf"), False, "> 0"), (-float("inf"), True, ">= 0")],
)  # fmt: skip
def test_check_positive_rejects(value, allow_zero, rule):
    with pytest.raises(ParameterError) as e:
        check_positive("alpha", value, allow_zero=allow_zero)
    assert str(e.value) == f"alpha={value!r} must be a finite number {rule}"


@pytest.mark.parametrize("sr", [16000, 1, np.int64(48000), np.int32(8000)])
def test_check_sample_rate_accepts(sr):
    out = check_sample_rate(sr)
    assert out == int(sr) and type(out) is int


@pytest.mark.parametrize(
    "sr", [0, -16000, 16000.0, 16000.5, True, "16000", None, np.float64(16000)]
)
def test_check_sample_rate_rejects(sr):
    with pytest.raises(ParameterError) as e:
        check_sample_rate(sr, "orig_sr")
    assert str(e.value) == f"orig_sr={sr!r} must be an integer > 0"


@pytest.mark.parametrize(
    "x",
    [np.zeros(1, np.float32), np.zeros((2, 3, 5), np.float64), np.zeros(4, np.complex64),
     torch.zeros(3, 10), torch.zeros(2, dtype=torch.float64)],
)  # fmt: skip
def test_validate_audio_accepts_and_returns_same_object(x):
    assert validate_audio(x) is x


@pytest.mark.parametrize(
    ("x", "needle"),
    [
        (np.zeros(4, np.int16), "audio dtype=int16 must be floating point"),
        (np.zeros(4, bool), "audio dtype=bool must be floating point"),
        (torch.zeros(4, dtype=torch.int32), "audio dtype=torch.int32 must be floating point"),
        ([0.0, 1.0], "must be a numpy array or torch tensor, got list"),
        (np.float32(1.0), "numpy array or torch tensor, got float32"),
        (np.array(1.0), "must have a time axis, got a 0-d array"),
        (torch.tensor(1.0), "must have a time axis"),
        (np.zeros(0, np.float32), "has 0 samples; at least 1 required"),
        (np.zeros((3, 0), np.float32), "has 0 samples"),
        (torch.zeros(2, 0), "has 0 samples"),
        (np.array([0.0, np.nan]), "contains NaN or Inf"),
        (np.array([0.0, -np.inf], np.float32), "contains NaN or Inf"),
        (torch.tensor([1.0, float("inf")]), "contains NaN or Inf"),
        (np.array([1 + 1j, complex(np.nan, 0)]), "contains NaN or Inf"),
    ],
)
def test_validate_audio_rejects(x, needle):
    with pytest.raises(ParameterError, match=None) as e:
        validate_audio(x)
    assert needle in str(e.value)


def test_validate_audio_options_and_name():
    with pytest.raises(ParameterError, match=r"speech has ndim=2; at most 1 allowed"):
        validate_audio(np.zeros((1, 4)), name="speech", max_ndim=1)
    with pytest.raises(ParameterError, match=r"noise has 4 samples; at least 5 required"):
        validate_audio(np.zeros(4), name="noise", min_samples=5)
    validate_audio(np.zeros(5), min_samples=5)
