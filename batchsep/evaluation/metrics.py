"""Per-file speech-enhancement metrics: SI-SDR, PESQ, STOI, and one scorer for a whole file.

:func:`score_file` never raises for bad *data*: a metric that cannot be computed (signal too short
for PESQ, silent reference, length mismatch, NaN samples ...) is NaN and ``<key>_error`` holds the
reason, while every other metric is kept. It raises only for bad *arguments* (unknown metric name,
invalid sample rate).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pesq as pesq_lib
import pystoi

from batchsep.dsp.resample import resample
from batchsep.dsp.validate import check_sample_rate
from batchsep.errors import ParameterError
from batchsep.evaluation.bss import DB_LIMIT, as_signal, bss_eval_many, ratio_db

SCORE_METRICS = ("sdr", "si_sdr", "pesq", "stoi")
"""Metric families :func:`score_file` knows (all need a clean reference); ``"sdr"`` means the BSS
Eval triple SDR/SIR/SAR."""

METRIC_FAMILIES = (*SCORE_METRICS, "dnsmos")
"""Every metric family ``batchsep evaluate`` knows: the reference metrics and the reference-free
DNSMOS (:mod:`batchsep.evaluation.dnsmos`, scored per signal, not by :func:`score_file`)."""

_FAMILY_VALUES = {
    "sdr": ("sdr", "sir", "sar"),
    "si_sdr": ("si_sdr",),
    "pesq": ("pesq",),
    "stoi": ("stoi",),
}
_STOI_RATE = 10000  # pystoi works at 10 kHz with 256-sample frames, hop 128, 30-frame segments
_STOI_MIN_SAMPLES = 29 * 128 + 256
_IMPROVED = {"sdr": ("sdr", "sir"), "si_sdr": ("si_sdr",), "pesq": ("pesq",), "stoi": ("stoi",)}


def _pair(reference: object, estimate: object) -> tuple[np.ndarray, np.ndarray]:
    ref = as_signal(reference, name="reference")
    est = as_signal(estimate, name="estimate")
    if ref.shape != est.shape:
        raise ParameterError(
            f"length mismatch: reference has {ref.shape[-1]} samples, estimate {est.shape[-1]}"
        )
    if not np.any(ref):
        raise ParameterError("reference is digital silence (all zeros)")
    return ref, est


def si_sdr(reference: np.ndarray, estimate: np.ndarray, *, zero_mean: bool = False) -> float:
    """Scale-invariant SDR (Le Roux et al. 2019), in dB, clamped to ``±DB_LIMIT``.

    ``α = ⟨ŝ, s⟩ / ‖s‖²``, ``SI-SDR = 10·log10(‖α s‖² / ‖ŝ − α s‖²)``.

    Parameters
    ----------
    reference, estimate : np.ndarray [shape=(n_samples,)]
    zero_mean : bool
        Remove each signal's mean first.

    Returns
    -------
    float

    Raises
    ------
    ParameterError
        On length mismatch, non-finite values, or a silent reference or estimate.

    Examples
    --------
    >>> s = np.sin(np.arange(1000) / 5.0)
    >>> si_sdr(s, 3.0 * s)
    100.0
    """
    ref, est = _pair(reference, estimate)
    if zero_mean:
        ref, est = ref - ref.mean(), est - est.mean()
    e_ref, e_est = float(np.dot(ref, ref)), float(np.dot(est, est))
    if e_ref == 0.0:
        raise ParameterError("reference is constant; SI-SDR is undefined with zero_mean=True")
    if e_est == 0.0:
        raise ParameterError("estimate is digital silence (all zeros); SI-SDR is undefined")
    # with c = <ŝ,s>²/(‖s‖²‖ŝ‖²): ‖αs‖² = c‖ŝ‖² and ‖ŝ − αs‖² = (1 − c)‖ŝ‖²
    coherence = float(np.dot(ref, est)) ** 2 / (e_ref * e_est)
    return ratio_db(coherence, 1.0 - coherence)


def pesq_score(reference: np.ndarray, estimate: np.ndarray, sr: int) -> float:
    """PESQ (ITU-T P.862.2 MOS-LQO): wide-band at 16 kHz, narrow-band at 8 kHz.

    Other rates are resampled to 16 kHz and scored wide-band.

    Parameters
    ----------
    reference, estimate : np.ndarray [shape=(n_samples,)]
    sr : int
        Sample rate of both signals, in Hz.

    Returns
    -------
    float
        About 1.0 (bad) to 4.64 (wide-band) / 4.55 (narrow-band).

    Raises
    ------
    ParameterError
        On invalid input, or when PESQ finds no utterance / the signal is too short.
    """
    sr = check_sample_rate(sr, "sr")
    ref, est = _pair(reference, estimate)
    if not np.any(est):
        raise ParameterError("estimate is digital silence (all zeros); PESQ is undefined")
    if sr not in (8000, 16000):
        ref, est = resample(ref, sr, 16000), resample(est, sr, 16000)
        sr = 16000
    mode = "wb" if sr == 16000 else "nb"
    try:
        return float(pesq_lib.pesq(sr, ref, est, mode))
    except pesq_lib.PesqError as exc:
        reason = type(exc).__name__
        raise ParameterError(
            f"PESQ failed ({reason}) on {ref.shape[-1] / sr:.3f} s at {sr} Hz: "
            "needs at least ~0.25 s containing speech"
        ) from exc


def stoi_score(
    reference: np.ndarray, estimate: np.ndarray, sr: int, *, extended: bool = False
) -> float:
    """STOI (Taal et al. 2011), or extended STOI with ``extended=True``, via ``pystoi``.

    Parameters
    ----------
    reference, estimate : np.ndarray [shape=(n_samples,)]
    sr : int
        Sample rate in Hz (pystoi resamples to 10 kHz itself).
    extended : bool
        Compute ESTOI instead.

    Returns
    -------
    float
        Between about 0 and 1.

    Raises
    ------
    ParameterError
        On invalid input, or when fewer than 30 non-silent frames (~0.4 s of speech) remain.
    """
    sr = check_sample_rate(sr, "sr")
    ref, est = _pair(reference, estimate)
    too_short = ParameterError(
        f"STOI needs >= 30 non-silent frames (~0.4 s of speech); "
        f"{ref.shape[-1] / sr:.3f} s given has fewer"
    )
    if ref.shape[-1] * _STOI_RATE < _STOI_MIN_SAMPLES * sr:  # pystoi crashes below one frame
        raise too_short
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(pystoi.stoi(ref, est, sr, extended=extended))
        except (ValueError, IndexError) as exc:  # e.g. everything removed as silence
            raise ParameterError(f"STOI failed: {_reason(exc)}") from exc
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise too_short
    return value


def input_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR of the unprocessed input in dB: ``10·log10(‖clean‖² / ‖noisy − clean‖²)``, clamped."""
    ref, mix = _pair(clean, noisy)
    noise = mix - ref
    return ratio_db(float(np.dot(ref, ref)), float(np.dot(noise, noise)))


def score_keys(metrics: Sequence[str] = SCORE_METRICS) -> list[str]:
    """Keys of :func:`score_file`'s result, in order; those ending in ``_error`` hold str or None.

    Examples
    --------
    >>> score_keys(["si_sdr"])
    ['input_snr', 'si_sdr', 'si_sdr_in', 'si_sdr_i', 'input_snr_error', 'si_sdr_error', 'si_sdr_in_error']
    """
    families = _check_metrics(metrics)
    values, errors = ["input_snr"], ["input_snr_error"]
    for fam in families:
        names = _FAMILY_VALUES[fam]
        values += [*names, *(f"{n}_in" for n in names), *(f"{n}_i" for n in _IMPROVED[fam])]
        errors += [f"{fam}_error", f"{fam}_in_error"]
    return values + errors


def metric_columns() -> list[str]:
    """Every per-file metric column a metrics table can have: :func:`score_keys` of all reference
    families, then the DNSMOS columns (:func:`batchsep.evaluation.dnsmos.dnsmos_keys`)."""
    from batchsep.evaluation.dnsmos import dnsmos_keys

    return [*score_keys(), *dnsmos_keys()]


def _check_metrics(metrics: Sequence[str]) -> list[str]:
    if isinstance(metrics, str):
        raise ParameterError(f"metrics={metrics!r} must be a sequence of names, not a string")
    unknown = [m for m in metrics if m not in SCORE_METRICS]
    if unknown:
        raise ParameterError(f"unknown metrics {unknown}; known: {list(SCORE_METRICS)}")
    return list(dict.fromkeys(metrics))


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def score_file(
    clean: np.ndarray,
    noisy: np.ndarray,
    enhanced: np.ndarray,
    sr: int,
    *,
    metrics: Sequence[str] = SCORE_METRICS,
) -> dict[str, float | str | None]:
    """Score one enhanced file and its unprocessed input against the clean reference.

    Parameters
    ----------
    clean, noisy, enhanced : np.ndarray [shape=(n_samples,)]
        Reference speech, the mixture given to the enhancer, and its output (same length).
    sr : int
        Sample rate of all three signals, in Hz.
    metrics : sequence of {"sdr", "si_sdr", "pesq", "stoi"}
        Metric families. ``"sdr"`` is BSS Eval (see :mod:`batchsep.evaluation.bss`) with
        references ``[clean, noisy - clean]`` and gives ``sdr``, ``sir``, ``sar``.

    Returns
    -------
    dict
        Keys from :func:`score_keys`: ``input_snr``; for each metric ``m`` the enhanced value ``m``,
        the input's ``m_in``, the improvement ``m_i = m - m_in`` (not for SAR: the input's SAR is
        infinite by construction, reported as ``DB_LIMIT``); then per family ``<family>_error`` and
        ``<family>_in_error``: None, or why the values of that family are NaN.

    Raises
    ------
    ParameterError
        Only for an unknown metric name or an invalid ``sr``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s, n = rng.standard_normal(16000), rng.standard_normal(16000)
    >>> out = score_file(s, s + n, s + 0.1 * n, 16000, metrics=["si_sdr"])
    >>> round(out["si_sdr_i"]), out["si_sdr_error"]
    (20, None)
    """
    families = _check_metrics(metrics)
    sr = check_sample_rate(sr, "sr")
    out: dict[str, float | str | None] = {
        k: None if k.endswith("_error") else np.nan for k in score_keys(families)
    }
    signals, problems = _prepare({"clean": clean, "noisy": noisy, "enhanced": enhanced})

    def attempt(key: str, names: tuple[str, str], fn: Callable[..., dict[str, float]]) -> None:
        problem = _pair_problem(names, signals, problems)
        if problem is not None:
            out[f"{key}_error"] = problem
            return
        try:
            out.update(fn(*(signals[n] for n in names)))
        except ParameterError as exc:
            out[f"{key}_error"] = _reason(exc)

    attempt("input_snr", ("clean", "noisy"), lambda c, x: {"input_snr": input_snr(c, x)})
    for fam in families:
        if fam == "sdr":
            _score_bss(signals, problems, out)
        else:
            fn = _SCALAR[fam]
            for key, est_name in ((fam, "enhanced"), (f"{fam}_in", "noisy")):
                attempt(key, ("clean", est_name), lambda c, e, fn=fn, key=key: {key: fn(c, e, sr)})
        for name in _IMPROVED[fam]:
            out[f"{name}_i"] = float(out[name]) - float(out[f"{name}_in"])  # type: ignore[arg-type]
    return out


def _prepare(arrays: dict[str, object]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    signals, problems = {}, {}
    for name, x in arrays.items():
        try:
            signals[name] = as_signal(x, name=name)
        except ParameterError as exc:
            problems[name] = _reason(exc)
            continue
        if not np.any(signals[name]):
            problems[name] = f"{name} is digital silence (all zeros)"
    return signals, problems


def _pair_problem(
    names: tuple[str, ...], signals: dict[str, np.ndarray], problems: dict[str, str]
) -> str | None:
    """Why the signals ``names`` cannot be scored together, or None."""
    for name in names:
        if name in problems:
            return problems[name]
    lengths = {name: signals[name].shape[-1] for name in names}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{n} has {k}" for n, k in lengths.items())
        return f"length mismatch: {detail} samples; they must be equal"
    return None


def _score_bss(
    signals: dict[str, np.ndarray], problems: dict[str, str], out: dict[str, float | str | None]
) -> None:
    """BSS Eval of enhanced and noisy together: one factorisation of the references serves both."""
    todo = []
    for suffix, est_name in (("", "enhanced"), ("_in", "noisy")):
        problem = _pair_problem(("clean", est_name, "noisy"), signals, problems)
        if problem is None:
            todo.append((suffix, est_name))
        else:
            out[f"sdr{suffix}_error"] = problem
    if not todo:
        return
    ref, mix = signals["clean"], signals["noisy"]
    try:
        results = bss_eval_many(
            ref, np.stack([signals[n] for _, n in todo]), noise_reference=mix - ref
        )
    except ParameterError as exc:
        for suffix, _ in todo:
            out[f"sdr{suffix}_error"] = _reason(exc)
        return
    for (suffix, _), res in zip(todo, results):
        out.update({f"{k}{suffix}": v for k, v in res.as_dict().items()})


_SCALAR: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "si_sdr": lambda ref, est, sr: si_sdr(ref, est),
    "pesq": pesq_score,
    "stoi": stoi_score,
}

__all__ = [
    "DB_LIMIT",
    "METRIC_FAMILIES",
    "SCORE_METRICS",
    "input_snr",
    "metric_columns",
    "pesq_score",
    "score_file",
    "score_keys",
    "si_sdr",
    "stoi_score",
]
