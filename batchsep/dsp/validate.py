"""Input validation for arrays of audio and for scalar parameters.

Every public dsp function validates what it is given and raises :class:`~batchsep.errors.ParameterError`
with a message that names the value and the rule, so bad input fails early and readably.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from batchsep.errors import ParameterError

ArrayLike = np.ndarray | torch.Tensor


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise ParameterError unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    ok = np.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        rule = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name}={value!r} must be a finite number {rule}")


def check_sample_rate(sr: Any, name: str = "sample_rate") -> int:
    """Return ``sr`` as an int, or raise ParameterError when it is not a positive integer."""
    if isinstance(sr, bool) or not isinstance(sr, int | np.integer) or sr <= 0:
        raise ParameterError(f"{name}={sr!r} must be an integer > 0")
    return int(sr)


def validate_audio(
    x: Any,
    *,
    name: str = "audio",
    min_samples: int = 1,
    max_ndim: int | None = None,
) -> ArrayLike:
    """Check that ``x`` is a non-empty, finite, floating-point audio array.

    Parameters
    ----------
    x : np.ndarray or torch.Tensor [shape=(..., n_samples)]
        Audio samples; the last axis is time.
    name : str
        Name used in error messages.
    min_samples : int
        Smallest acceptable length of the time axis.
    max_ndim : int, optional
        Largest acceptable number of dimensions.

    Returns
    -------
    The same array, unchanged.

    Raises
    ------
    ParameterError
        If ``x`` is not an array, is not floating point, is 0-d, is too short, or holds NaN/Inf.

    Examples
    --------
    >>> validate_audio(np.zeros(16, dtype=np.float32)).shape
    (16,)
    """
    if isinstance(x, torch.Tensor):
        if not (x.is_floating_point() or x.is_complex()):
            raise ParameterError(f"{name} dtype={x.dtype} must be floating point")
        finite = bool(torch.isfinite(x).all())
    elif isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating)):
            raise ParameterError(f"{name} dtype={x.dtype} must be floating point")
        finite = bool(np.isfinite(x).all())
    else:
        raise ParameterError(
            f"{name} must be a numpy array or torch tensor, got {type(x).__name__}"
        )
    if x.ndim == 0:
        raise ParameterError(f"{name} must have a time axis, got a 0-d array")
    if max_ndim is not None and x.ndim > max_ndim:
        raise ParameterError(f"{name} has ndim={x.ndim}; at most {max_ndim} allowed")
    if x.shape[-1] < min_samples:
        raise ParameterError(f"{name} has {x.shape[-1]} samples; at least {min_samples} required")
    if not finite:
        raise ParameterError(f"{name} contains NaN or Inf values")
    return x
