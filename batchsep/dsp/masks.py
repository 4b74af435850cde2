"""Oracle time-frequency masks (seed 002): IBM, IRM, IAM and the truncated phase-sensitive filter.

All take complex STFTs of the clean speech ``S`` and of the noise ``N`` (or of the mixture ``X = S + N``)
with the same shape ``(..., F, T)`` and return a real mask of that shape; applying a mask means
``mask * X``. They work on numpy arrays and torch tensors alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from batchsep.errors import ParameterError

EPS = 1e-8


def _lib(x: Any) -> Any:
    return torch if isinstance(x, torch.Tensor) else np


def _check(a: Any, b: Any) -> None:
    if a.shape != b.shape:
        raise ParameterError(f"mask inputs differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")


def ibm(S: Any, N: Any, *, threshold_db: float = 0.0) -> Any:
    """Ideal binary mask: 1 where |S|² / |N|² > 10^(threshold_db / 10), else 0."""
    _check(S, N)
    lib = _lib(S)
    ratio = lib.abs(S) ** 2 / (lib.abs(N) ** 2 + EPS)
    return (
        (ratio > 10.0 ** (threshold_db / 10.0)).astype(np.float32)
        if lib is np
        else (ratio > 10.0 ** (threshold_db / 10.0)).float()
    )


def irm(S: Any, N: Any, *, power: float = 1.0) -> Any:
    """Ideal ratio mask |S|^p / (|S|^p + |N|^p); p = 1 (magnitude ratio, seed 002), 2 = Wiener-like."""
    _check(S, N)
    lib = _lib(S)
    s, n = lib.abs(S) ** power, lib.abs(N) ** power
    return s / (s + n + EPS)


def iam(S: Any, X: Any) -> Any:
    """Ideal amplitude mask |S| / |X|, truncated to [0, 1] (seed 002)."""
    _check(S, X)
    lib = _lib(S)
    return lib.clip(lib.abs(S) / (lib.abs(X) + EPS), 0.0, 1.0)


def psf(S: Any, X: Any) -> Any:
    """Phase-sensitive filter |S|/|X|·cos(θ_X − θ_S), truncated to [0, 1].

    ``Re(S · conj(X)) / |X|²`` equals the untruncated PSF, so no angles are computed.
    """
    _check(S, X)
    lib = _lib(S)
    num = (S * X.conj()).real
    return lib.clip(num / (lib.abs(X) ** 2 + EPS), 0.0, 1.0)


ORACLE_MASKS: dict[str, Callable[..., Any]] = {"ibm": ibm, "irm": irm, "iam": iam, "psf": psf}
"""Name → function. ``ibm`` and ``irm`` take (S, N); ``iam`` and ``psf`` take (S, X)."""
