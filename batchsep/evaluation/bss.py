"""BSS Eval (SDR / SIR / SAR) for one target source, exact and fast.

Convention ("single target vs the rest", no permutation)
--------------------------------------------------------
Speech enhancement has one target. It is scored as a two-source separation problem:

* references ``[clean, noise]`` with ``noise = mixture - clean``;
* estimates ``[enhanced, mixture - enhanced]``;
* no permutation search; the metrics of **source 0** (the speech) are reported.

With no permutation, source 0's SDR/SIR/SAR depend only on the two references and on the first
estimate, so ``mixture - enhanced`` never has to be formed (and it may be all zeros, as when the
"enhanced" signal is the unprocessed mixture). Distortion filters have 512 taps, as in
``mir_eval.separation.bss_eval_sources``, whose values these agree with to far better than 0.01 dB.

How it is computed
------------------
BSS Eval projects the estimate ``e`` on the span of the delayed references. With ``G`` the Gram
matrix of the delayed references (ordered speech first, then noise) and ``d`` the correlations of
``e`` with them, the energy of the projection on the speech-only span is ``a = d_sᵀ G_ss⁻¹ d_s``,
on the whole span ``b = dᵀ G⁻¹ d``, and with ``E = ‖e‖²``::

    SDR = a / (E - a)      SIR = a / (b - a)      SAR = b / (E - b)       (then 10·log10)

One Cholesky factor ``L`` of ``G`` gives both: its leading block is the factor of ``G_ss``, so with
``y = L⁻¹ d``, ``a = ‖y[:L]‖²`` and ``b = ‖y‖²``. The factor depends only on the references, so
several estimates of the same target (enhanced output *and* unprocessed input) share it.
``mir_eval`` instead builds and solves both systems with LU for every estimate.

Values are clamped to ``±DB_LIMIT`` dB: beyond 100 dB the ratio is float64 rounding noise (the
unprocessed mixture has SAR = +inf in theory), and a finite clamp keeps averages usable.
"""

from __future__ import annotations

from dataclasses import dataclass

import fast_bss_eval
import numpy as np
import scipy.fft as sfft
import scipy.linalg as sla

from batchsep.dsp.validate import validate_audio
from batchsep.errors import ParameterError

DB_LIMIT = 100.0
"""Largest magnitude (dB) any BSS Eval or SI-SDR value is reported with."""

FILTER_LENGTH = 512
"""Length of the BSS Eval distortion filters (``mir_eval`` uses 512)."""


@dataclass(frozen=True)
class BssResult:
    """SDR, SIR and SAR (dB) of one estimate of the target source."""

    sdr: float
    sir: float
    sar: float

    def as_dict(self) -> dict[str, float]:
        """``{"sdr": ..., "sir": ..., "sar": ...}``."""
        return {"sdr": self.sdr, "sir": self.sir, "sar": self.sar}


def ratio_db(num: float, den: float) -> float:
    """``10·log10(num / den)`` clamped to ``[-DB_LIMIT, DB_LIMIT]`` (``den <= 0`` gives +DB_LIMIT)."""
    if den <= num * 10.0 ** (-DB_LIMIT / 10.0):
        return DB_LIMIT
    if num <= den * 10.0 ** (-DB_LIMIT / 10.0):
        return -DB_LIMIT
    return float(10.0 * np.log10(num / den))


def as_signal(x: object, *, name: str, ndim: int = 1) -> np.ndarray:
    """Validate a real, finite, non-empty float array with ``ndim`` dims; return it as float64."""
    arr = validate_audio(x, name=name, max_ndim=ndim)
    if not isinstance(arr, np.ndarray):
        arr = arr.detach().cpu().numpy()
    if arr.ndim != ndim:
        raise ParameterError(f"{name} has ndim={arr.ndim}; expected {ndim}")
    if np.iscomplexobj(arr):
        raise ParameterError(f"{name} dtype={arr.dtype} must be real")
    return np.asarray(arr, dtype=np.float64)


def _check_not_silent(x: np.ndarray, name: str) -> float:
    energy = float(np.dot(x, x))
    if energy == 0.0:
        raise ParameterError(f"{name} is digital silence (all zeros); BSS Eval is undefined for it")
    return energy


def _gram(spectra: np.ndarray, nfft: int, flen: int) -> np.ndarray:
    """Gram matrix of the delayed references, blocks ordered like ``spectra`` rows."""
    n_src = spectra.shape[0]
    gram = np.empty((n_src * flen, n_src * flen))
    neg_lags = (-np.arange(flen)) % nfft
    for i in range(n_src):
        for j in range(i, n_src):
            # xc[k] = sum_u r_i[u] r_j[u + k];  <r_i delayed p, r_j delayed q> = xc[p - q]
            xc = sfft.irfft(np.conj(spectra[i]) * spectra[j], n=nfft)
            block = sla.toeplitz(xc[:flen], xc[neg_lags])
            gram[i * flen : (i + 1) * flen, j * flen : (j + 1) * flen] = block
            gram[j * flen : (j + 1) * flen, i * flen : (i + 1) * flen] = block.T
    return gram


def _projection_energies(gram: np.ndarray, corr: np.ndarray, flen: int) -> tuple[np.ndarray, ...]:
    """Energies of the projections on the target span (a) and on the whole span (b), per column."""
    try:
        chol = sla.cholesky(gram, lower=True, check_finite=False)
        y = sla.solve_triangular(chol, corr, lower=True, check_finite=False)
        return np.sum(y[:flen] ** 2, axis=0), np.sum(y**2, axis=0)
    except np.linalg.LinAlgError:  # numerically singular: least squares, like mir_eval's fallback
        c_t = np.linalg.lstsq(gram[:flen, :flen], corr[:flen], rcond=None)[0]
        c_all = np.linalg.lstsq(gram, corr, rcond=None)[0]
        return np.sum(corr[:flen] * c_t, axis=0), np.sum(corr * c_all, axis=0)


def bss_eval_many(
    reference: np.ndarray,
    estimates: np.ndarray,
    *,
    noise_reference: np.ndarray | None = None,
    filter_length: int = FILTER_LENGTH,
) -> list[BssResult]:
    """BSS Eval of several estimates of one target against the same references.

    Parameters
    ----------
    reference : np.ndarray [shape=(n_samples,)]
        Clean target signal (speech).
    estimates : np.ndarray [shape=(n_estimates, n_samples)]
        Estimates of ``reference`` (e.g. the enhanced output and the unprocessed mixture).
    noise_reference : np.ndarray [shape=(n_samples,)], optional
        The interference, ``mixture - reference``. Without it (or when it is all zeros) the
        evaluation has a single reference: SIR = +DB_LIMIT and SAR = SDR, as ``mir_eval`` gives
        (+inf SIR) for one source.
    filter_length : int
        Taps of the distortion filters (512 in ``mir_eval``).

    Returns
    -------
    list of BssResult, one per estimate, in order.

    Raises
    ------
    ParameterError
        On shape mismatch, non-finite values, or a silent reference or estimate.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s, n = rng.standard_normal(16000), rng.standard_normal(16000)
    >>> res = bss_eval_many(s, np.stack([s + 0.1 * n, s + 0.5 * n]), noise_reference=n)
    >>> [round(r.sir) for r in res]
    [20, 6]
    """
    ref = as_signal(reference, name="reference")
    est = as_signal(estimates, name="estimates", ndim=2)
    if isinstance(filter_length, bool) or not isinstance(filter_length, int) or filter_length < 1:
        raise ParameterError(f"filter_length={filter_length!r} must be an integer >= 1")
    n = ref.shape[-1]
    if est.shape[-1] != n:
        raise ParameterError(f"estimates have {est.shape[-1]} samples; reference has {n}")
    refs = [ref]
    if noise_reference is not None:
        noise = as_signal(noise_reference, name="noise_reference")
        if noise.shape[-1] != n:
            raise ParameterError(
                f"noise_reference has {noise.shape[-1]} samples; reference has {n}"
            )
        if np.any(noise):
            refs.append(noise)
    _check_not_silent(ref, "reference")
    energies = [_check_not_silent(e, f"estimate {k}") for k, e in enumerate(est)]
    # unit-norm signals: scale-free, and keeps the Gram matrix well scaled
    refs = [r / np.sqrt(np.dot(r, r)) for r in refs]
    est = est / np.sqrt(np.asarray(energies))[:, None]
    nfft = sfft.next_fast_len(n + filter_length - 1, real=True)
    spectra = sfft.rfft(np.vstack([*refs, est]), n=nfft, axis=-1)
    n_ref = len(refs)
    gram = _gram(spectra[:n_ref], nfft, filter_length)
    # corr[p, k] = <e_k, r delayed p> = sum_u r[u] e_k[u + p]
    corr = sfft.irfft(np.conj(spectra[:n_ref, None]) * spectra[None, n_ref:], n=nfft, axis=-1)
    corr = corr[..., :filter_length].transpose(0, 2, 1).reshape(n_ref * filter_length, -1)
    a, b = _projection_energies(gram, corr, filter_length)
    results = []
    for a_k, b_k in zip(a.tolist(), b.tolist()):
        b_k = max(b_k, a_k)  # the target span lies inside the whole span
        sir = ratio_db(a_k, b_k - a_k) if n_ref > 1 else DB_LIMIT
        results.append(BssResult(ratio_db(a_k, 1.0 - a_k), sir, ratio_db(b_k, 1.0 - b_k)))
    return results


def bss_eval(
    reference: np.ndarray,
    estimate: np.ndarray,
    *,
    noise_reference: np.ndarray | None = None,
    filter_length: int = FILTER_LENGTH,
) -> BssResult:
    """SDR, SIR and SAR of one estimate of the target (the convention is in the module docstring).

    Parameters
    ----------
    reference : np.ndarray [shape=(n_samples,)]
        Clean target signal.
    estimate : np.ndarray [shape=(n_samples,)]
        Estimate of the target (e.g. the enhanced signal).
    noise_reference : np.ndarray [shape=(n_samples,)], optional
        ``mixture - reference``; references are then ``[reference, noise_reference]``, estimates
        ``[estimate, mixture - estimate]``, source 0 is reported. Without it: one reference.
    filter_length : int
        Taps of the distortion filters.

    Returns
    -------
    BssResult
        In dB, clamped to ``±DB_LIMIT``; equal to ``mir_eval.separation.bss_eval_sources(
        [reference, noise], [estimate, mixture - estimate], compute_permutation=False)[:3][:, 0]``.

    Raises
    ------
    ParameterError
        On shape mismatch, non-finite values, or a silent reference or estimate.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s, n = rng.standard_normal(16000), rng.standard_normal(16000)
    >>> round(bss_eval(s, s + 0.1 * n, noise_reference=n).sir)
    20
    """
    est = as_signal(estimate, name="estimate")
    return bss_eval_many(
        reference, est[None], noise_reference=noise_reference, filter_length=filter_length
    )[0]


def sdr_only(
    reference: np.ndarray, estimate: np.ndarray, *, filter_length: int = FILTER_LENGTH
) -> float:
    """BSS Eval SDR alone (fast path, ``fast_bss_eval.sdr``), clamped to ``±DB_LIMIT``.

    SDR depends on the target reference only, so no noise reference is needed; the value equals
    :func:`bss_eval`'s ``sdr`` and ``mir_eval``'s.

    Parameters
    ----------
    reference, estimate : np.ndarray [shape=(n_samples,)]

    Returns
    -------
    float
        SDR in dB.

    Raises
    ------
    ParameterError
        On shape mismatch, non-finite values, or a silent reference or estimate.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.standard_normal(16000)
    >>> round(sdr_only(s, s + 0.1 * rng.standard_normal(16000)))
    20
    """
    ref = as_signal(reference, name="reference")
    est = as_signal(estimate, name="estimate")
    if est.shape != ref.shape:
        raise ParameterError(f"estimate has {est.shape[-1]} samples; reference has {ref.shape[-1]}")
    if isinstance(filter_length, bool) or not isinstance(filter_length, int) or filter_length < 1:
        raise ParameterError(f"filter_length={filter_length!r} must be an integer >= 1")
    _check_not_silent(ref, "reference")
    _check_not_silent(est, "estimate")
    value = float(fast_bss_eval.sdr(ref[None], est[None], filter_length=filter_length)[0])
    if np.isnan(value):
        raise ParameterError("SDR is NaN: the reference's Gram matrix is singular")
    return float(np.clip(value, -DB_LIMIT, DB_LIMIT))
