"""A complex angular central Gaussian mixture model (cACGMM) over a multichannel STFT, guided by a speech mask.

Pure arrays (numpy), batched over frequency. The speech mask a single-channel model gives is refined by the
spatial evidence of the microphones: the direction of each time-frequency observation (its channel vector,
unit-normalised) is modelled per frequency by a mixture of ``K = 2`` angular central Gaussians, class 0 the
speech and class 1 the noise, whose EM starts from the model's mask (posteriors ``(m, 1 - m)``: the mask
fixes which class is the speech, so there is no permutation to solve). This is the "NN-guided spatial
mixture model" (Drude & Haeb-Umbach, Interspeech 2017; pb_bss's ``CACGMMTrainer``; the guided source
separation of CHiME-5/6).

Model, for ``z = x / ‖x‖ ∈ ℂᴰ`` (``D`` channels) at one frequency ``f``:

* ACG density ``p(z | B) = (D - 1)! / (2 π^D det B) · (zᴴ B⁻¹ z)^(-D)`` (scale-invariant in ``B``);
* E-step: ``γ_k(t) ∝ π_k p(z_t | B_k)``, with the class weights ``π_k`` either estimated per frequency
  (``prior="estimated"``: ``π_k = mean_t γ_k(t)``, the plain cACGMM) or fixed to the mask per bin
  (``prior="mask"``: ``π_speech(t) = m(t)``, the "guided" mixture: the posterior combines the model's mask,
  as a prior, with the spatial likelihood);
* M-step (the fixed-point update of Tyler's estimator): ``B_k = D Σ_t γ_k(t) z zᴴ / (zᴴ B_k⁻¹ z) / Σ_t
  γ_k(t)``, the quadratic form taken with the previous ``B_k`` (ones before the first E-step, as pb_bss).

Regularised so that a singular case does not crash: each ``B_k`` is normalised to trace ``D`` and its
eigenvalues are floored at :data:`EIGEN_FLOOR` times the largest (an all-zero class becomes ``I``); bins whose
observation is (numerically) zero carry no direction: they do not enter the M-step and keep the initial
mask. Memory: ``O(F · C · T)`` (no ``[F, T, C, C]`` array).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from batchsep.errors import ParameterError

Prior = Literal["estimated", "mask"]
PRIORS: tuple[str, ...] = ("estimated", "mask")

ITERATIONS = 10
"""EM iterations by default (each one M-step and one E-step)."""
EIGEN_FLOOR = 1e-10
"""Eigenvalues of each ``B_k`` are floored at this fraction of its largest one."""
MASK_FLOOR = 1e-10
"""A fixed prior ``m`` (``prior="mask"``) is clipped to ``[MASK_FLOOR, 1 - MASK_FLOOR]`` before its log."""
_TINY = 1e-30


def normalize_observations(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm channel vectors of a multichannel STFT.

    Parameters
    ----------
    X : np.ndarray [shape=(C, F, T)], complex
        The STFT of ``C`` channels.

    Returns
    -------
    Z : np.ndarray [shape=(F, C, T)], complex128
        ``x(f, t) / ‖x(f, t)‖`` (zero where the norm is not above a tiny floor).
    valid : np.ndarray [shape=(F, T)], bool
        Where the observation has a direction (non-zero norm).
    """
    X = np.asarray(X)
    if X.ndim != 3:
        raise ParameterError(f"X must be [C, F, T], got shape {X.shape}")
    Z = np.ascontiguousarray(np.transpose(X, (1, 0, 2)), dtype=np.complex128)
    norm = np.sqrt(np.sum(np.abs(Z) ** 2, axis=1))  # [F, T]
    scale = np.max(norm) if norm.size else 0.0
    valid = norm > max(1e-12 * scale, _TINY)
    Z = np.where(valid[:, None, :], Z / np.where(valid, norm, 1.0)[:, None, :], 0.0)
    return Z, valid


def _floored_whitener(B: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """``(W, log det B)`` ``([..., D, D], [...])`` with ``Wᴴ W = B⁻¹`` (``W = Λ^(-1/2) Vᴴ``) of Hermitian ``B``
    normalised to trace ``D``, its eigenvalues floored at ``floor`` times the largest (``I`` where ``B`` is
    all zero)."""
    d = B.shape[-1]
    B = 0.5 * (B + np.conj(np.swapaxes(B, -1, -2)))
    tr = np.real(np.trace(B, axis1=-2, axis2=-1))
    ok = tr > _TINY
    B = np.where(ok[..., None, None], B * (d / np.where(ok, tr, 1.0))[..., None, None], np.eye(d))
    eig, vecs = np.linalg.eigh(B)
    eig = np.maximum(eig, floor * np.maximum(eig[..., -1:], _TINY))
    whitener = np.conj(np.swapaxes(vecs, -1, -2)) / np.sqrt(eig)[..., :, None]
    return whitener, np.sum(np.log(eig), axis=-1)


def quadratic_form(Z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``zᴴ B_k⁻¹ z = ‖W_k z‖²`` ``[K, F, T]`` for observations ``Z [F, D, T]`` and whiteners ``W [K, F, D, D]``
    (``W_kᴴ W_k = B_k⁻¹``; one class at a time: at most two ``[F, D, T]`` temporaries)."""
    out = np.empty((W.shape[0], Z.shape[0], Z.shape[2]))
    for k, w in enumerate(W):
        wz = w @ Z
        out[k] = np.sum(wz.real**2 + wz.imag**2, axis=1)
    return out


def acg_covariances(
    Z: np.ndarray, gamma: np.ndarray, quad: np.ndarray, *, eigen_floor: float = EIGEN_FLOOR
) -> tuple[np.ndarray, np.ndarray]:
    """The M-step of the ACG parameters.

    Parameters
    ----------
    Z : np.ndarray [shape=(F, D, T)]
        Unit-norm observations (zero where invalid).
    gamma : np.ndarray [shape=(K, F, T)]
        Class posteriors (zero where an observation is not to count).
    quad : np.ndarray [shape=(K, F, T)]
        ``zᴴ B_k⁻¹ z`` with the previous ``B_k`` (ones for the first M-step).
    eigen_floor : float
        Relative eigenvalue floor of each ``B_k`` (see :func:`_floored_whitener`).

    Returns
    -------
    W : np.ndarray [shape=(K, F, D, D)]
        Whiteners ``W_kᴴ W_k = B_k⁻¹`` of the regularised ``B_k = D Σ_t γ z zᴴ / q / Σ_t γ`` (normalised to
        trace ``D``).
    log_det : np.ndarray [shape=(K, F)]
        ``log det B_k`` of the same regularised matrices.
    """
    d = Z.shape[1]
    weight = gamma / np.maximum(quad, _TINY)  # [K, F, T]
    zh = np.conj(np.swapaxes(Z, -1, -2))  # [F, T, D]
    num = np.stack([(Z * w[:, None, :]) @ zh for w in weight])  # [K, F, D, D], a class at a time
    den = np.maximum(np.sum(gamma, axis=-1), _TINY)  # [K, F]
    return _floored_whitener(d * num / den[..., None, None], eigen_floor)


def acg_log_likelihood(quad: np.ndarray, log_det: np.ndarray, d: int) -> np.ndarray:
    """``log p(z | B_k)`` up to the constant ``log((D - 1)! / (2 π^D))``: ``-log det B_k - D log(zᴴ B_k⁻¹ z)``,
    ``[K, F, T]`` from ``quad [K, F, T]`` and ``log_det [K, F]``."""
    return -log_det[..., None] - d * np.log(np.maximum(quad, _TINY))


def _posteriors(log_lik: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    a = log_lik + log_prior
    a = a - np.max(a, axis=0, keepdims=True)
    e = np.exp(a)
    return e / np.sum(e, axis=0, keepdims=True)


def spatial_speech_mask(
    X: np.ndarray,
    mask: np.ndarray,
    *,
    iterations: int = ITERATIONS,
    prior: str = "estimated",
    eigen_floor: float = EIGEN_FLOOR,
) -> np.ndarray:
    """The speech posterior of a two-class cACGMM (speech, noise) initialised from a speech mask.

    Parameters
    ----------
    X : np.ndarray [shape=(C, F, T)], complex
        The multichannel STFT (``C ≥ 2`` channels).
    mask : np.ndarray [shape=(F, T)]
        The model's speech mask, in [0, 1] (clipped): the initial posteriors ``(m, 1 - m)`` and, with
        ``prior="mask"``, the fixed class weights of every bin.
    iterations : int
        EM iterations (``≥ 1``), :data:`ITERATIONS` by default.
    prior : {"estimated", "mask"}
        Class weights ``π_k`` per frequency re-estimated each iteration (the plain cACGMM) or the mask itself
        per bin (the guided mixture).
    eigen_floor : float
        Relative eigenvalue floor of the ACG matrices (regularisation).

    Returns
    -------
    np.ndarray [shape=(F, T)], float64
        The refined speech mask in [0, 1]; the initial mask where an observation is zero.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(3, 4, 50)) + 1j * rng.normal(size=(3, 4, 50))
    >>> spatial_speech_mask(X, np.full((4, 50), 0.5), iterations=2).shape
    (4, 50)
    """
    X = np.asarray(X)
    m = np.clip(np.asarray(mask, dtype=np.float64), 0.0, 1.0)
    if X.ndim != 3 or m.shape != X.shape[1:]:
        raise ParameterError(f"X [C, F, T] and mask [F, T] disagree: {X.shape} vs {m.shape}")
    if X.shape[0] < 2:
        raise ParameterError(f"a spatial mixture needs at least 2 channels, got {X.shape[0]}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ParameterError(f"iterations={iterations!r} must be an integer >= 1")
    if prior not in PRIORS:
        raise ParameterError(f"prior={prior!r} must be one of {list(PRIORS)}")
    if not 0.0 <= eigen_floor < 1.0:
        raise ParameterError(f"eigen_floor={eigen_floor} must be in [0, 1)")
    Z, valid = normalize_observations(X)
    d = Z.shape[1]
    gamma = np.stack([m, 1.0 - m]) * valid  # [2, F, T]
    quad = np.ones_like(gamma)
    if prior == "mask":
        pm = np.clip(m, MASK_FLOOR, 1.0 - MASK_FLOOR)
        log_prior = np.log(np.stack([pm, 1.0 - pm]))
    for _ in range(iterations):
        W, log_det = acg_covariances(Z, gamma, quad, eigen_floor=eigen_floor)
        quad = quadratic_form(Z, W)
        if prior == "estimated":
            n_valid = np.maximum(np.sum(valid, axis=-1), 1)  # [F]
            pi = np.sum(gamma, axis=-1) / n_valid  # [2, F]
            log_prior = np.log(np.clip(pi, MASK_FLOOR, None))[..., None]
        gamma = _posteriors(acg_log_likelihood(quad, log_det, d), log_prior) * valid
    return np.clip(np.where(valid, gamma[0], m), 0.0, 1.0)
