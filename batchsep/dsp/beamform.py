"""Mask-based beamforming: spatial covariances from masks, and the MWF, MVDR, GEV-BAN and delay-and-sum filters.

Pure arrays (numpy), batched over frequency. Conventions: a multichannel STFT is ``X [C, F, T]`` (channels,
frequency bins, frames), a spatial covariance matrix (SCM) stack is ``[F, C, C]`` (Hermitian), a filter is
``w [F, C]`` and the beamformer output is ``y(f, t) = w(f)ᴴ x(f, t)`` (:func:`apply_filter`).

The methods are those of seed 002's multichannel part (restated in DESIGN.md):

* **SCMs from a speech mask** ``m(f, t)``: ``Φs = E[m x xᴴ]``, ``Φn = E[(1 - m) x xᴴ]``, either over the
  whole signal or recursively, ``Φ(t) = λ Φ(t-1) + (1 - λ) m(t) x(t) x(t)ᴴ`` (:class:`CovarianceEstimator`);
  optionally the noise weight is ``(1 - m̃)^p`` with ``m̃`` the mask held over the last frames
  (:func:`hold_mask`): bins just after speech (its reverberant tail) then do not count as noise;
* **MWF** ``W = Φx⁻¹ Φs`` (``Φx = Φs + Φn``), its column of the reference channel (:func:`mwf`);
* **MVDR**, Souden's form ``w = Φn⁻¹ Φs u / tr(Φn⁻¹ Φs)`` with the reference channel ``u`` chosen by the
  output SNR it gives (:func:`mvdr_souden`, :func:`select_reference`);
* **GEV** (max-SNR): the principal generalised eigenvector of ``(Φs, Φn)``, solved as a Hermitian
  eigenproblem after whitening by the Cholesky factor of ``Φn`` (:func:`gev`), with the **BAN** gain-fixing
  post-filter ``g = sqrt(wᴴ Φn Φn w / C) / (wᴴ Φn w)`` (Warsitz & Haeb-Umbach 2007; Heymann et al. 2016);
* **delay-and-sum**: unit-modulus phases of the speech SCM's principal eigenvector, averaged
  (:func:`delay_and_sum`): the array's steering without any noise statistics (the baseline).

Every inverse or whitening uses a diagonally loaded matrix (:func:`diagonal_loading`): a singular noise
covariance (a silent channel, a noise mask of zero) gives a finite filter and a warning, not an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from batchsep.errors import ParameterError

BeamformerName = Literal["mwf", "mvdr", "gev_ban", "delay_and_sum"]
BEAMFORMERS: tuple[str, ...] = ("mwf", "mvdr", "gev_ban", "delay_and_sum")

LOADING = 1e-6
"""Diagonal loading of every SCM that is inverted, relative to its mean diagonal (``tr Φ / C``)."""

ILL_CONDITIONED = 1e-10
"""An SCM whose smallest to largest eigenvalue ratio is below this (at any bin) is reported singular."""

_TINY = 1e-20


def _check_stack(phi: np.ndarray, name: str) -> np.ndarray:
    phi = np.asarray(phi)
    if phi.ndim != 3 or phi.shape[1] != phi.shape[2]:
        raise ParameterError(f"{name} must be [F, C, C], got shape {phi.shape}")
    return phi.astype(np.complex128, copy=False)


def hermitian(phi: np.ndarray) -> np.ndarray:
    """``(Φ + Φᴴ) / 2`` over the last two axes (removes rounding asymmetry)."""
    return 0.5 * (phi + np.conj(np.swapaxes(phi, -1, -2)))


def diagonal_loading(
    phi: np.ndarray, loading: float = LOADING, *, name: str = "noise covariance"
) -> tuple[np.ndarray, list[str]]:
    """``Φ + δ I`` with ``δ = loading · tr(Φ)/C`` per bin (an all-zero bin gets the stack's mean level).

    Returns
    -------
    phi : np.ndarray [shape=(F, C, C)]
        The loaded, Hermitian stack.
    warnings : list of str
        One readable message when some bin of ``Φ`` was singular (condition below :data:`ILL_CONDITIONED`).
    """
    phi = hermitian(_check_stack(phi, name))
    n_ch = phi.shape[-1]
    level = np.real(np.trace(phi, axis1=-2, axis2=-1)) / n_ch  # [F]
    fallback = float(level[level > 0].mean()) if np.any(level > 0) else 1.0
    level = np.where(level > 0, level, fallback)
    eig = np.linalg.eigvalsh(phi)  # ascending, [F, C]
    ratio = eig[:, 0] / np.maximum(eig[:, -1], _TINY)
    warnings = []
    singular = int(np.count_nonzero(ratio < ILL_CONDITIONED))
    if singular:
        warnings.append(
            f"{name} singular at {singular} of {phi.shape[0]} frequency bins "
            f"(regularised by diagonal loading {loading:g})"
        )
    delta = np.maximum(loading * level, _TINY)
    return phi + delta[:, None, None] * np.eye(n_ch), warnings


def _weighted_outer(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``Σ_t w(f, t) x(f, t) x(f, t)ᴴ`` ``[F, C, C]`` as one batched matrix product (no ``[F, T, C, C]``)."""
    xf = np.ascontiguousarray(np.transpose(X, (1, 0, 2)), dtype=np.complex128)  # [F, C, T]
    return (xf * weights[:, None, :]) @ np.conj(np.swapaxes(xf, -1, -2))


def hold_mask(mask: np.ndarray, frames: int, previous: np.ndarray | None = None) -> np.ndarray:
    """The mask ``[F, T]`` held for ``frames`` frames: ``m̃(f, t) = max(m(f, t - frames), …, m(f, t))``.

    ``previous [F, k]``: the frames just before this block (a stream's last ``frames`` frames), so that a
    signal processed block by block gets the same values as in one piece. ``frames=0``: the mask itself.
    """
    mask = np.asarray(mask, dtype=np.float64)
    if frames < 0:
        raise ParameterError(f"hold frames={frames} must be >= 0")
    if frames == 0:
        return mask
    n = mask.shape[-1]
    full = (
        mask if previous is None else np.concatenate([np.asarray(previous, np.float64), mask], -1)
    )
    out = full.copy()
    for d in range(1, frames + 1):
        out[:, d:] = np.maximum(out[:, d:], full[:, :-d])
    return out[:, full.shape[-1] - n :]


@dataclass
class CovarianceEstimator:
    """Speech and noise SCMs from a speech mask, updated block by block (a stream of STFT blocks).

    ``forgetting=None``: whole-signal averages ``Σ_t m x xᴴ / T`` (λ → 1, a time-invariant filter), so that
    ``Φs + Φn`` is the mixture's covariance (which the MWF needs; MVDR and GEV ignore the scale) when the
    noise weight is ``1 - m`` (the default).
    ``forgetting=λ`` in (0, 1): the recursion ``Φ(t) = λ Φ(t-1) + (1 - λ) m(t) x(t) x(t)ᴴ`` (and with
    the noise weight for the noise), evaluated exactly at the end of each block.

    ``noise_hold`` (frames) and ``noise_power`` ``p``: the noise weight is ``(1 - m̃)^p``, with ``m̃`` the
    speech mask held for ``noise_hold`` frames (:func:`hold_mask`; across blocks too). With a mask that
    calls only the direct path and early reflections speech, the reverberant tail after each word would
    otherwise enter the noise SCM, and a distortionless filter would suppress the talker's own reverberation
    as noise. Defaults ``0`` and ``1``: ``1 - m``.
    """

    forgetting: float | None = None
    noise_hold: int = 0
    noise_power: float = 1.0
    speech_sum: np.ndarray | None = field(default=None, repr=False)
    noise_sum: np.ndarray | None = field(default=None, repr=False)
    frames: int = 0
    _tail: np.ndarray | None = field(default=None, repr=False, init=False)

    def __post_init__(self) -> None:
        if self.forgetting is not None and not 0.0 < self.forgetting < 1.0:
            raise ParameterError(f"forgetting={self.forgetting} must be in (0, 1) or None")
        if self.noise_hold < 0 or not self.noise_power > 0:
            raise ParameterError(
                f"noise_hold={self.noise_hold} must be >= 0 and noise_power={self.noise_power} > 0"
            )

    def noise_weights(self, mask: np.ndarray) -> np.ndarray:
        """The noise weights ``(1 - m̃)^p`` ``[F, T]`` of a block's speech mask (remembers its last frames)."""
        held = hold_mask(mask, self.noise_hold, self._tail)
        if self.noise_hold:
            joined = mask if self._tail is None else np.concatenate([self._tail, mask], axis=-1)
            self._tail = joined[:, -self.noise_hold :]
        w = 1.0 - held
        return w if self.noise_power == 1.0 else w**self.noise_power

    def update(self, X: np.ndarray, mask: np.ndarray) -> None:
        """Add a block of STFT frames ``X [C, F, T]`` with its speech mask ``mask [F, T]`` (in [0, 1])."""
        X = np.asarray(X)
        mask = np.clip(np.asarray(mask, dtype=np.float64), 0.0, 1.0)
        if X.ndim != 3 or mask.shape != X.shape[1:]:
            raise ParameterError(f"X [C, F, T] and mask [F, T] disagree: {X.shape} vs {mask.shape}")
        n_frames = X.shape[-1]
        noise = self.noise_weights(mask)
        if self.forgetting is None:
            w_s, w_n = mask, noise
            decay = 1.0
        else:
            lam = self.forgetting
            ages = lam ** np.arange(n_frames - 1, -1, -1, dtype=np.float64)  # λ^(T-1-t)
            w_s, w_n = (1 - lam) * mask * ages, (1 - lam) * noise * ages
            decay = lam**n_frames
        s, n = _weighted_outer(X, w_s), _weighted_outer(X, w_n)
        if self.speech_sum is None or self.noise_sum is None:
            self.speech_sum, self.noise_sum = s, n
        else:
            self.speech_sum = decay * self.speech_sum + s
            self.noise_sum = decay * self.noise_sum + n
        self.frames += n_frames

    def covariances(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Φs, Φn)``, each ``[F, C, C]`` (Hermitian)."""
        if self.speech_sum is None or self.noise_sum is None:
            raise ParameterError("no frames were added to the covariance estimator")
        if self.forgetting is not None:
            return hermitian(self.speech_sum), hermitian(self.noise_sum)
        n = max(self.frames, 1)
        return hermitian(self.speech_sum / n), hermitian(self.noise_sum / n)


def spatial_covariances(
    X: np.ndarray, mask: np.ndarray, *, forgetting: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(Φs, Φn)`` ``[F, C, C]`` of a whole STFT ``X [C, F, T]`` from its speech mask ``[F, T]``."""
    est = CovarianceEstimator(forgetting)
    est.update(X, mask)
    return est.covariances()


def mwf(
    phi_s: np.ndarray, phi_n: np.ndarray, ref: int = 0, *, loading: float = LOADING
) -> tuple[np.ndarray, list[str]]:
    """Multichannel Wiener filter ``w = (Φs + Φn)⁻¹ Φs u_ref`` → ``(w [F, C], warnings)``."""
    phi_s, phi_n = _check_stack(phi_s, "speech covariance"), _check_stack(phi_n, "noise covariance")
    phi_x, warnings = diagonal_loading(phi_s + phi_n, loading, name="mixture covariance")
    w = np.linalg.solve(phi_x, phi_s[:, :, ref, None])[..., 0]
    return w, warnings


def _souden_all(
    phi_s: np.ndarray, phi_n: np.ndarray, loading: float
) -> tuple[np.ndarray, list[str]]:
    """``Φn⁻¹ Φs / tr(Φn⁻¹ Φs)`` ``[F, C, C]``: column ``r`` is the MVDR filter for reference ``r``."""
    phi_n, warnings = diagonal_loading(phi_n, loading)
    num = np.linalg.solve(phi_n, phi_s)
    tr = np.trace(num, axis1=-2, axis2=-1)
    tr = np.where(np.abs(tr) > _TINY, tr, _TINY)
    return num / tr[:, None, None], warnings


def select_reference(phi_s: np.ndarray, phi_n: np.ndarray, *, loading: float = LOADING) -> int:
    """The reference channel whose MVDR filter gives the largest output SNR over all bins (Erdogan et al.
    2016): ``argmax_r Σ_f w_rᴴ Φs w_r / Σ_f w_rᴴ Φn w_r``."""
    phi_s, phi_n = _check_stack(phi_s, "speech covariance"), _check_stack(phi_n, "noise covariance")
    w_all, _ = _souden_all(phi_s, phi_n, loading)
    s = np.real(np.einsum("fcr,fcd,fdr->r", np.conj(w_all), phi_s, w_all))
    n = np.real(np.einsum("fcr,fcd,fdr->r", np.conj(w_all), phi_n, w_all))
    return int(np.argmax(s / np.maximum(n, _TINY)))


def mvdr_souden(
    phi_s: np.ndarray, phi_n: np.ndarray, ref: int | None = None, *, loading: float = LOADING
) -> tuple[np.ndarray, int, list[str]]:
    """MVDR in Souden's form ``w = Φn⁻¹ Φs u_ref / tr(Φn⁻¹ Φs)`` → ``(w [F, C], ref, warnings)``.

    ``ref=None`` picks the reference channel by SNR (:func:`select_reference`).
    """
    phi_s, phi_n = _check_stack(phi_s, "speech covariance"), _check_stack(phi_n, "noise covariance")
    if ref is None:
        ref = select_reference(phi_s, phi_n, loading=loading)
    w_all, warnings = _souden_all(phi_s, phi_n, loading)
    return w_all[:, :, ref], ref, warnings


def principal_generalized_eigenvector(
    phi_s: np.ndarray, phi_n: np.ndarray, *, loading: float = LOADING
) -> tuple[np.ndarray, list[str]]:
    """The principal eigenvector ``v [F, C]`` of ``Φn⁻¹ Φs`` (max of ``vᴴ Φs v / vᴴ Φn v``).

    Solved as a Hermitian problem: with ``Φn = L Lᴴ`` (Cholesky), ``L⁻¹ Φs L⁻ᴴ`` is Hermitian; its top
    eigenvector ``z`` gives ``v = L⁻ᴴ z``.
    """
    phi_n, warnings = diagonal_loading(phi_n, loading)
    chol = np.linalg.cholesky(phi_n)
    inv_l = np.linalg.inv(chol)
    a = hermitian(inv_l @ hermitian(phi_s) @ np.conj(np.swapaxes(inv_l, -1, -2)))
    _, vecs = np.linalg.eigh(a)
    z = vecs[:, :, -1]
    v = np.einsum("fdc,fd->fc", np.conj(inv_l), z)  # L⁻ᴴ z
    return v, warnings


def ban_gain(w: np.ndarray, phi_n: np.ndarray) -> np.ndarray:
    """Blind analytic normalisation ``g(f) = sqrt(wᴴ Φn Φn w / C) / (wᴴ Φn w)`` ``[F]``."""
    n_ch = w.shape[-1]
    pw = np.einsum("fcd,fd->fc", phi_n, w)
    num = np.sqrt(np.maximum(np.real(np.einsum("fc,fc->f", np.conj(pw), pw)), 0.0) / n_ch)
    den = np.real(np.einsum("fc,fc->f", np.conj(w), pw))
    return num / np.maximum(den, _TINY)


def gev_ban(
    phi_s: np.ndarray,
    phi_n: np.ndarray,
    ref: int = 0,
    *,
    ban: bool = True,
    loading: float = LOADING,
) -> tuple[np.ndarray, list[str]]:
    """GEV (max-SNR) beamformer, with the BAN post-filter (``ban=True``) → ``(w [F, C], warnings)``.

    The eigenvector's arbitrary phase per bin is fixed so that ``wᴴ Φs u_ref`` is real and positive: for
    rank-1 speech ``Φs = σ² a aᴴ`` the output's speech ``wᴴ a`` then has the reference channel's phase
    ``∠a_ref`` (fixing ``w_ref`` instead would add the phase of ``(Φn⁻¹ a)_ref``: a distortion).
    """
    phi_s, phi_n = _check_stack(phi_s, "speech covariance"), _check_stack(phi_n, "noise covariance")
    v, warnings = principal_generalized_eigenvector(phi_s, phi_n, loading=loading)
    c = np.einsum("fc,fc->f", np.conj(v), phi_s[:, :, ref])  # vᴴ Φs u_ref
    v = v * (c / np.maximum(np.abs(c), _TINY))[:, None]
    if ban:
        phi_n_loaded, _ = diagonal_loading(phi_n, loading)
        v = v * ban_gain(v, phi_n_loaded)[:, None]
    return v, warnings


def delay_and_sum(phi_s: np.ndarray, ref: int = 0) -> np.ndarray:
    """Delay-and-sum ``w = exp(j∠(v / v_ref)) / C`` ``[F, C]`` from the speech SCM's principal eigenvector
    ``v`` (the relative steering vector; no noise statistics)."""
    phi_s = _check_stack(phi_s, "speech covariance")
    _, vecs = np.linalg.eigh(hermitian(phi_s))
    v = vecs[:, :, -1]
    rel = v * np.conj(v[:, ref : ref + 1])
    steer = np.where(np.abs(rel) > _TINY, rel / np.maximum(np.abs(rel), _TINY), 1.0)
    return steer / phi_s.shape[-1]


def apply_filter(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Beamformer output ``y [F, T] = Σ_c conj(w[f, c]) X[c, f, t]``."""
    return np.einsum("fc,cft->ft", np.conj(w), X)


@dataclass(frozen=True)
class Beamformer:
    """A filter computed from one pair of SCMs: ``w [F, C]``, the reference channel and any warnings."""

    w: np.ndarray
    ref: int
    warnings: tuple[str, ...] = ()


def design(
    method: str,
    phi_s: np.ndarray,
    phi_n: np.ndarray,
    *,
    ref: int | None = None,
    loading: float = LOADING,
) -> Beamformer:
    """The filter ``method`` (one of :data:`BEAMFORMERS`) for ``(Φs, Φn)``.

    ``ref=None``: the reference channel is chosen by SNR (:func:`select_reference`) for every method, so
    that all are scored against the same channel's image.
    """
    if method not in BEAMFORMERS:
        raise ParameterError(f"beamformer={method!r} must be one of {list(BEAMFORMERS)}")
    if ref is None:
        ref = select_reference(phi_s, phi_n, loading=loading)
    warnings: list[str] = []
    if method == "mwf":
        w, warnings = mwf(phi_s, phi_n, ref, loading=loading)
    elif method == "mvdr":
        w, ref, warnings = mvdr_souden(phi_s, phi_n, ref, loading=loading)
    elif method == "gev_ban":
        w, warnings = gev_ban(phi_s, phi_n, ref, loading=loading)
    else:
        w = delay_and_sum(phi_s, ref)
    return Beamformer(w=w, ref=int(ref), warnings=tuple(warnings))
