"""Reference-free speech quality: DNSMOS P.835 (SIG, BAK, OVRL) and P.808, via ``speechmos``.

DNSMOS (Reddy et al., ICASSP 2022) predicts the mean opinion scores listeners would give a clip on the
ITU-T P.835 scales — speech signal (SIG), background noise (BAK, higher = less intrusive noise) and
overall quality (OVRL) — and on the P.808 absolute category rating scale, from the audio alone: no
clean reference is needed. All four lie between 1 (bad) and 5 (excellent).

The ONNX models and the scoring code are those of the ``speechmos`` package (Microsoft's DNS
Challenge release; MIT licence; the models ship inside the wheel, nothing is downloaded), installed
with ``pip install 'batchsep[zoo]'``. This module calls ``speechmos``'s own per-clip scorer, so the
numbers are exactly those of ``speechmos.dnsmos.run``; it only builds the two ONNX sessions itself,
once per process, with a bounded number of threads (one by default) instead of onnxruntime's default
of one thread per core, and prepares the signal:

- **rate and channels**: the models are defined at 16 kHz mono; other rates are resampled (soxr)
  and channels averaged. An 8 kHz (telephone-band) file is upsampled and scored as 16 kHz audio
  without content above 4 kHz, which DNSMOS rates lower than wide-band speech.
- **level**: values beyond ±1 (a float file) are clipped to ±1, as ``speechmos`` accepts only
  [-1, 1] (as they would be in a 16-bit file); the level is otherwise untouched.
- **length**: as in the DNSMOS reference script, each clip is scored on 9.01 s windows with a 1 s
  hop and the window scores are averaged (a tail shorter than a hop after the last window is not
  scored); a clip shorter than 9.01 s is repeated end to end until it fills one window. So a
  file of ``T`` seconds (``T >= 9.01``) costs ``floor(T - 9.01) + 1`` windows of model time:
  about 0.2 s of one core per window (measured: 13.6 s of CPU for a 69 s file, 61 windows), i.e.
  ~5× real time per signal, ~2.5× for an output and its input. The whole file is held in memory
  (64 kB per second at 16 kHz float32).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from batchsep.dsp.resample import to_rate_mono
from batchsep.errors import ParameterError

DNSMOS_SR = 16000
"""Rate the DNSMOS models work at."""
WINDOW_S = 9.01
"""Length of one DNSMOS window in seconds (speechmos ``INPUT_LENGTH``)."""
HOP_S = 1.0
"""Hop between windows in seconds."""
DNSMOS_METRIC = "dnsmos"
"""Metric family name in ``batchsep evaluate --metrics``."""
DNSMOS_SCORES = ("sig", "bak", "ovrl", "p808")
"""The four scores, as key suffixes: ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``, ``dnsmos_p808``."""
INSTALL_HINT = "pip install 'batchsep[zoo]'"
_SPEECHMOS_KEYS = {"sig": "sig_mos", "bak": "bak_mos", "ovrl": "ovrl_mos", "p808": "p808_mos"}
_MODULES = ("speechmos", "onnxruntime", "requests")  # speechmos.dnsmos imports requests


def missing_modules() -> list[str]:
    """The modules DNSMOS needs that are not installed (empty when it can run)."""
    return [m for m in _MODULES if importlib.util.find_spec(m) is None]


def dnsmos_available() -> bool:
    """Whether ``speechmos`` and ``onnxruntime`` are importable (the ``zoo`` extra is installed)."""
    return not missing_modules()


def require_dnsmos(why: str = "DNSMOS") -> None:
    """Raise :class:`ParameterError` naming the pip command when DNSMOS cannot run.

    Parameters
    ----------
    why : str
        What needs it, for the message (``"--metrics dnsmos"`` ...).
    """
    missing = missing_modules()
    if missing:
        raise ParameterError(
            f"{why} needs {', '.join(missing)}, which is not installed: {INSTALL_HINT}"
        )


def dnsmos_keys() -> list[str]:
    """Columns of :func:`dnsmos_pair`: output scores, input scores, improvements, then errors.

    Examples
    --------
    >>> dnsmos_keys()[:5]
    ['dnsmos_sig', 'dnsmos_bak', 'dnsmos_ovrl', 'dnsmos_p808', 'dnsmos_sig_in']
    """
    names = [f"dnsmos_{s}" for s in DNSMOS_SCORES]
    return [
        *names,
        *(f"{n}_in" for n in names),
        *(f"{n}_i" for n in names),
        "dnsmos_error",
        "dnsmos_in_error",
    ]


def default_threads() -> int:
    """Intra-op threads per ONNX session: ``BATCHSEP_DNSMOS_THREADS`` if set, else 1 (one worker is
    one core's worth of work; Ray runs one scoring task per worker CPU)."""
    value = os.environ.get("BATCHSEP_DNSMOS_THREADS", "1")
    try:
        n = int(value)
    except ValueError:
        raise ParameterError(f"BATCHSEP_DNSMOS_THREADS={value!r} must be an integer >= 1") from None
    if n < 1:
        raise ParameterError(f"BATCHSEP_DNSMOS_THREADS={value!r} must be an integer >= 1")
    return n


class DnsmosScorer:
    """The two DNSMOS ONNX sessions (P.835 and P.808) of ``speechmos``, with ``threads`` threads.

    Parameters
    ----------
    threads : int
        onnxruntime intra-op threads of each session (inter-op: 1, sequential execution).
    personalized : bool
        Use the personalized DNSMOS P.835 model (interfering talkers count as noise) instead of the
        standard one.

    Raises
    ------
    ParameterError
        When ``speechmos``/``onnxruntime`` are not installed.
    """

    def __init__(self, threads: int = 1, *, personalized: bool = False) -> None:
        require_dnsmos()
        import onnxruntime as ort
        from speechmos import dnsmos as sm

        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ParameterError(f"threads={threads!r} must be an integer >= 1")
        root = os.path.dirname(os.path.abspath(sm.__file__))
        folder = "pdnsmos_models" if personalized else "dnsmos_models"
        self.primary_path = os.path.join(root, folder, "sig_bak_ovr.onnx")
        self.p808_path = os.path.join(root, "dnsmos_models", "model_v8.onnx")
        self.threads = threads
        self.personalized = personalized
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CPUExecutionProvider"]
        # speechmos's scorer, with our sessions in place of its default-threaded ones
        model = sm.DNSMOS.__new__(sm.DNSMOS)
        model.primary_model_path = self.primary_path
        model.onnx_sess = ort.InferenceSession(self.primary_path, opts, providers=providers)
        model.p808_onnx_sess = ort.InferenceSession(self.p808_path, opts, providers=providers)
        self._model = model
        self._lock = threading.Lock()

    def __call__(self, audio: np.ndarray, sr: int) -> dict[str, float]:
        """Score one clip: ``{"sig", "bak", "ovrl", "p808"}``, each the mean over its windows.

        Parameters
        ----------
        audio : np.ndarray [shape=(n_samples,) or (n_channels, n_samples)]
            Any rate and channel count (resampled to 16 kHz mono; see the module notes).
        sr : int
            Sample rate of ``audio`` in Hz.

        Raises
        ------
        ParameterError
            On empty audio, non-finite samples or digital silence.
        """
        x = prepare_signal(audio, sr)
        with self._lock:  # an ONNX session is thread-safe, speechmos's scorer object need not be
            out = self._model(x, DNSMOS_SR, self.personalized)
        return {k: float(out[v]) for k, v in _SPEECHMOS_KEYS.items()}


def prepare_signal(audio: Any, sr: int) -> np.ndarray:
    """``audio`` as the 1-D float32 16 kHz signal in [-1, 1] that DNSMOS scores.

    Raises
    ------
    ParameterError
        On empty audio, non-finite samples or digital silence (nothing to rate).
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim not in (1, 2) or x.size == 0:
        raise ParameterError(f"audio of shape {x.shape} has no samples to rate")
    if not np.all(np.isfinite(x)):
        raise ParameterError("audio has NaN or infinite samples")
    x = to_rate_mono(x, int(sr), DNSMOS_SR).astype(np.float32, copy=False)
    if x.size == 0:
        raise ParameterError("audio has no samples at 16 kHz")
    if not np.any(x):
        raise ParameterError("audio is digital silence (all zeros)")
    return np.clip(x, -1.0, 1.0)


def dnsmos_provenance() -> dict[str, Any]:
    """What a DNSMOS score depends on, for ``job.json``: package versions, windows, threads."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"window_s": WINDOW_S, "hop_s": HOP_S, "sample_rate": DNSMOS_SR}
    for dist in ("speechmos", "onnxruntime"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    out["threads"] = default_threads()
    out["models"] = "speechmos dnsmos_models/sig_bak_ovr.onnx (P.835), model_v8.onnx (P.808)"
    return out


_SCORERS: dict[tuple[int, bool], DnsmosScorer] = {}
_SCORERS_LOCK = threading.Lock()


def get_scorer(threads: int | None = None, *, personalized: bool = False) -> DnsmosScorer:
    """This process's scorer for ``threads`` (default :func:`default_threads`): built on first use and
    kept, so a worker loads the ONNX models once."""
    n = default_threads() if threads is None else threads
    with _SCORERS_LOCK:
        key = (n, personalized)
        if key not in _SCORERS:
            _SCORERS[key] = DnsmosScorer(n, personalized=personalized)
        return _SCORERS[key]


def dnsmos_score(audio: np.ndarray, sr: int, *, threads: int | None = None) -> dict[str, float]:
    """DNSMOS SIG, BAK, OVRL and P.808 of one clip (see :class:`DnsmosScorer`).

    Examples
    --------
    >>> t = np.arange(16000 * 3) / 16000
    >>> scores = dnsmos_score(0.1 * np.sin(2 * np.pi * 220 * t), 16000)  # doctest: +SKIP
    >>> sorted(scores)  # doctest: +SKIP
    ['bak', 'ovrl', 'p808', 'sig']
    """
    return get_scorer(threads)(audio, sr)


def dnsmos_pair(
    noisy: np.ndarray | None,
    enhanced: np.ndarray | None,
    sr_noisy: int,
    sr_enhanced: int,
    *,
    threads: int | None = None,
    noisy_scores: Mapping[str, float] | None = None,
) -> dict[str, float | str | None]:
    """DNSMOS of an enhanced file (``dnsmos_<s>``), its unprocessed input (``dnsmos_<s>_in``) and the
    improvement (``dnsmos_<s>_i``), with ``dnsmos_error`` / ``dnsmos_in_error`` saying why a side is
    NaN. Never raises for bad audio; raises :class:`ParameterError` only when DNSMOS is not installed.

    ``noisy_scores``: the input's scores when already known (``{"sig": ..., "bak": ..., "ovrl": ...,
    "p808": ...}``, e.g. from an earlier evaluation of the same input): used instead of scoring
    ``noisy`` again, which then may be None.
    """
    scorer = get_scorer(threads)
    out: dict[str, float | str | None] = {
        k: None if k.endswith("_error") else np.nan for k in dnsmos_keys()
    }
    sides: list[tuple[str, np.ndarray | None, int]] = [("", enhanced, sr_enhanced)]
    if noisy_scores is not None:
        out.update({f"dnsmos_{k}_in": float(noisy_scores[k]) for k in DNSMOS_SCORES})
    else:
        sides.append(("_in", noisy, sr_noisy))
    for suffix, x, sr in sides:
        if x is None:
            out[f"dnsmos{suffix}_error"] = "no audio"
            continue
        try:
            scores = scorer(x, sr)
        except ParameterError as exc:
            out[f"dnsmos{suffix}_error"] = str(exc)
            continue
        out.update({f"dnsmos_{k}{suffix}": v for k, v in scores.items()})
    for s in DNSMOS_SCORES:
        out[f"dnsmos_{s}_i"] = float(out[f"dnsmos_{s}"]) - float(out[f"dnsmos_{s}_in"])  # type: ignore[arg-type]
    return out


__all__ = [
    "DNSMOS_METRIC",
    "DNSMOS_SCORES",
    "DNSMOS_SR",
    "HOP_S",
    "INSTALL_HINT",
    "WINDOW_S",
    "DnsmosScorer",
    "dnsmos_available",
    "dnsmos_keys",
    "dnsmos_pair",
    "dnsmos_provenance",
    "dnsmos_score",
    "get_scorer",
    "require_dnsmos",
]
