"""Utterance statistics for emotion recognition: spectral, energy and prosody tracks → one vector.

:func:`emotion_stats` maps a 16 kHz mono utterance (or voiced segment) to :data:`N_STATS` numbers, the
input of the ``emotion-stats`` model (:mod:`batchsep.models.emotion_stats`). It trims leading/trailing
silence (:func:`batchsep.dsp.vad.trim_silence`), takes a 512-point STFT every 10 ms and summarises over
time (mean, spread, percentiles):

=====================  =====  ==================================================================
group                  count  content
=====================  =====  ==================================================================
MFCC                   160    40 MFCCs of a 64-band mel spectrum in dB re its loudest bin (80 dB
                              range) and their deltas: mean, std
spectral shape         10     centroid, bandwidth, 85 % roll-off (kHz), flatness, zero crossings
energy                 7      frame energy in dB re the utterance's loudest frame: 6 moments and
                              the std of the frame-to-frame change, on active frames (> -40 dB)
F0 (prosody)           8      YIN (60-500 Hz) in semitones re 55 Hz on voiced frames: 6 moments,
                              slope (st per 100 frames), mean absolute change
spectral contrast      14     7 bands (100 Hz up, octaves): mean, std
timing                 4      voiced-frame ratio, voiced runs per second, trimmed duration (s),
                              inactive-frame ratio
band balance           11     level differences between the 0-0.5, 0.5-1, 1-2, 2-4, 4-8 kHz
                              bands (10 pairs) and their range
log-mel bands          128    the 64 mel bands in dB re the loudest bin, on active frames: mean, std
delta-delta MFCC       20     std of the second time derivative of MFCC 1-20 (active frames)
spectral slope         12     dB/kHz regression slope of each active frame over 0.1-4 kHz and over
                              1-8 kHz (alpha-ratio-like): 6 moments each
formants               9      F1-F3 (kHz) from order-16 LPC roots (bandwidth < 500 Hz) on every
                              second active frame: mean, std, median
shimmer / skew         2      mean absolute frame-to-frame level change (dB) and the skewness of
                              the active frames' level
rhythm                 4      share of the energy-envelope modulation spectrum (0.5-20 Hz) in
                              0.5-2, 2-4, 4-8, 8-20 Hz
=====================  =====  ==================================================================

The last six groups (175 values, "v2", issue 20) are eGeMAPS-like functionals computed with numpy and
scipy.fft only (no openSMILE): under leave-actors-out CV they add 2-3 points with an SVM (docs/emotion.md).

The 6 moments are mean, std, 10th, 50th, 90th percentile and the 10-90 range. Nothing depends on the
absolute gain (energy is relative to the utterance's peak), so the level of a recording or of an
enhancer's output does not move the features. "Voiced" frames: YIN gives no voicing decision, so a frame
counts as voiced when it is within 30 dB of the peak, its F0 is not at the search edges and it is within
one semitone of a neighbouring frame's F0 (pYIN would decide better but costs ~50× more CPU).
Cost: about 30 ms of CPU per 3 s utterance (2-core machine, 2026-12).

The spectral features are librosa's (STFT, mel filterbank, MFCC, deltas, spectral shape and contrast,
zero crossings, YIN, Burg LPC), computed by their ports in :mod:`batchsep.dsp.spectral`: the same numbers
to float rounding, without librosa's numba compile on a fresh install's first run (~20 s of CPU); tests in
tests/unit/dsp/ compare both, and the shipped tagger's output.
"""

from __future__ import annotations

import itertools

import numpy as np

from batchsep.dsp import spectral as sp
from batchsep.dsp.vad import trim_silence
from batchsep.errors import ParameterError

STATS_SR = 16000
N_STATS = 389
_HOP, _NFFT = 160, 512


def _moments(t: np.ndarray) -> list[float]:
    if t.size == 0:
        return [0.0] * 6
    p10, p50, p90 = np.percentile(t, [10, 50, 90])
    return [float(t.mean()), float(t.std()), float(p10), float(p50), float(p90), float(p90 - p10)]


def _slope(S: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Least-squares slope (dB per kHz) of each frame's log-power spectrum over [lo, hi] Hz."""
    sel = (freqs >= lo) & (freqs <= hi)
    f = freqs[sel] / 1000
    f = f - f.mean()
    level = 10 * np.log10(S[sel] / (float(S.max()) + 1e-30) + 1e-10)  # dB re the loudest bin
    return (f[:, None] * (level - level.mean(0))).sum(0) / (f**2).sum()


def _formants(x: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Mean, std and median of F1-F3 (kHz): order-16 LPC roots of the given 10 ms frames (512 points)."""
    xp = np.append(x[:1], x[1:] - 0.97 * x[:-1])  # pre-emphasis
    win = np.hanning(_NFFT)
    segs = [xp[max(0, i * _HOP - _NFFT // 2) : i * _HOP + _NFFT // 2] for i in frames]
    segs = [g for g in segs if g.size == _NFFT and np.abs(g).max() >= 1e-6]
    if not segs:
        return np.zeros(9)
    with np.errstate(all="ignore"):  # a degenerate frame gives non-finite coefficients: skipped
        coefs = sp.lpc((np.stack(segs) * win).astype(np.float64), order=16)
    coefs = coefs[np.isfinite(coefs).all(1)]
    found = []
    for r in sp.poly_roots(coefs):
        r = r[np.imag(r) > 0.01]
        hz = np.angle(r) * STATS_SR / (2 * np.pi)
        bw = -STATS_SR / np.pi * np.log(np.abs(r) + 1e-12)
        f = np.sort(hz[(hz > 200) & (hz < 5000) & (bw < 500)])
        if f.size >= 3:
            found.append(f[:3])
    if not found:
        return np.zeros(9)
    F = np.array(found) / 1000
    return np.concatenate([F.mean(0), F.std(0), np.median(F, 0)])


def _v2_functionals(
    x: np.ndarray, S: np.ndarray, mel: np.ndarray, active: np.ndarray, e: np.ndarray,
    freqs: np.ndarray,
) -> list[np.ndarray]:  # fmt: skip
    """The 175 values of the v2 groups (log-mel bands … rhythm, see the module docstring)."""
    act = active if active.sum() > 3 else np.ones_like(active)
    ldb = sp.power_to_db(mel, ref=float(mel.max()) + 1e-20)
    la = ldb[:, act]
    mf = sp.mfcc(ldb, n_mfcc=20)[:, act]
    d2 = sp.delta(mf, order=2) if mf.shape[1] >= 9 else np.zeros_like(mf)
    slopes = [*_moments(_slope(S[:, act], freqs, 100, 4000)),
              *_moments(_slope(S[:, act], freqs, 1000, 8000))]  # fmt: skip
    ea = e[act]
    shimmer = [
        float(np.abs(np.diff(ea)).mean()) if ea.size > 2 else 0.0,
        float(((ea - ea.mean()) ** 3).mean() / (ea.std() ** 3 + 1e-9)) if ea.size > 2 else 0.0,
    ]
    env = np.sqrt(S.sum(0))
    n = max(512, env.size)
    mod = np.abs(np.fft.rfft(env - env.mean(), n=n)) ** 2
    fm = np.fft.rfftfreq(n, d=_HOP / STATS_SR)
    total = mod[(fm > 0.5) & (fm < 20)].sum() + 1e-12
    rhythm = [
        mod[(fm >= lo) & (fm < hi)].sum() / total for lo, hi in ((0.5, 2), (2, 4), (4, 8), (8, 20))
    ]
    return [la.mean(1), la.std(1), d2.std(1), np.array(slopes),
            _formants(x, np.flatnonzero(act)[::2]), np.array(shimmer), np.array(rhythm)]  # fmt: skip


def emotion_stats(x: np.ndarray, *, trim: bool = True) -> np.ndarray:
    """The :data:`N_STATS` utterance statistics of a 16 kHz mono signal (see the module docstring).

    Parameters
    ----------
    x : np.ndarray [shape=(n_samples,)]
        Mono audio at 16 kHz, at least 0.05 s.
    trim : bool
        Cut leading and trailing silence first.

    Returns
    -------
    np.ndarray [shape=(N_STATS,)], float64, finite

    Raises
    ------
    ParameterError
        Not a 1-D signal, or shorter than 0.05 s.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1 or x.size < STATS_SR // 20:
        raise ParameterError(f"x shape={x.shape} must be one mono signal of >= 0.05 s at 16 kHz")
    if trim:
        a, b = trim_silence(x, STATS_SR)
        if b - a >= STATS_SR // 20:
            x = x[a:b]
    x = np.ascontiguousarray(x)
    if x.size < 1024:  # YIN's frame
        x = np.pad(x, (0, 1024 - x.size))
    S = np.abs(sp.stft(x, n_fft=_NFFT, hop_length=_HOP)) ** 2
    mag = np.sqrt(S)
    mel = sp.melspectrogram(S, sr=STATS_SR, n_mels=64)
    mf = sp.mfcc(sp.power_to_db(mel, ref=float(mel.max()) + 1e-20), n_mfcc=40)
    d = sp.delta(mf) if mf.shape[1] >= 9 else np.zeros_like(mf)
    feats: list[np.ndarray] = [mf.mean(1), mf.std(1), d.mean(1), d.std(1)]
    shape = [
        sp.spectral_centroid(mag, sr=STATS_SR) / 1000,
        sp.spectral_bandwidth(mag, sr=STATS_SR) / 1000,
        sp.spectral_rolloff(mag, sr=STATS_SR) / 1000,
        sp.spectral_flatness(mag),
        sp.zero_crossing_rate(x, frame_length=_NFFT, hop_length=_HOP),
    ]
    feats.append(np.array([v for t in shape for v in (t.mean(), t.std())]))
    e = 10 * np.log10(S.sum(0) + 1e-10)
    e = e - e.max()
    active = e > -40
    ea = e[active]
    feats.append(np.array([*_moments(ea), float(np.diff(ea).std()) if ea.size > 1 else 0.0]))
    f0 = sp.yin(x, fmin=60, fmax=500, sr=STATS_SR, frame_length=1024, hop_length=_HOP)
    n = min(f0.size, e.size)
    f0, en = f0[:n], e[:n]
    st = 12 * np.log2(np.maximum(f0, 1.0) / 55.0)
    cont = np.zeros(n, bool)
    if n > 2:
        dd = np.abs(np.diff(st))
        cont[1:] |= dd < 1.0
        cont[:-1] |= dd < 1.0
    voiced = (en > -30) & (f0 > 62) & (f0 < 490) & cont
    sv = st[voiced]
    slope = float(np.polyfit(np.arange(sv.size), sv, 1)[0]) if sv.size > 2 else 0.0
    jit = float(np.abs(np.diff(sv)).mean()) if sv.size > 2 else 0.0
    feats.append(np.array([*_moments(sv), slope * 100, jit]))
    con = sp.spectral_contrast(mag, sr=STATS_SR, n_bands=6, fmin=100)
    feats += [con.mean(1), con.std(1)]
    runs = int(np.sum(np.diff(voiced.astype(int)) == 1)) if n > 1 else 0
    dur = x.size / STATS_SR
    feats.append(
        np.array([voiced.mean() if n else 0.0, runs / max(dur, 0.1), dur, 1 - active.mean()])
    )
    freqs = sp.fft_frequencies(sr=STATS_SR, n_fft=_NFFT)
    edges = (0, 500, 1000, 2000, 4000, 8001)
    band = np.array([S[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in itertools.pairwise(edges)])
    lb = 10 * np.log10(band / max(band.sum(), 1e-30) + 1e-10)
    ratios = [lb[i] - lb[j] for i in range(5) for j in range(i + 1, 5)]
    feats.append(np.array([*ratios, float(lb.max() - lb.min())]))
    feats += _v2_functionals(x, S, mel, active, e, freqs)
    out = np.concatenate([np.asarray(f, np.float64).ravel() for f in feats])
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
