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
=====================  =====  ==================================================================

The 6 moments are mean, std, 10th, 50th, 90th percentile and the 10-90 range. Nothing depends on the
absolute gain (energy is relative to the utterance's peak), so the level of a recording or of an
enhancer's output does not move the features. "Voiced" frames: YIN gives no voicing decision, so a frame
counts as voiced when it is within 30 dB of the peak, its F0 is not at the search edges and it is within
one semitone of a neighbouring frame's F0 (pYIN would decide better but costs ~50× more CPU).
Cost: about 15-30 ms of CPU per 3 s utterance.
"""

from __future__ import annotations

import itertools

import numpy as np

from batchsep.dsp.vad import trim_silence
from batchsep.errors import ParameterError

STATS_SR = 16000
N_STATS = 214
_HOP, _NFFT = 160, 512


def _moments(t: np.ndarray) -> list[float]:
    if t.size == 0:
        return [0.0] * 6
    p10, p50, p90 = np.percentile(t, [10, 50, 90])
    return [float(t.mean()), float(t.std()), float(p10), float(p50), float(p90), float(p90 - p10)]


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
    import librosa

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
    S = np.abs(librosa.stft(x, n_fft=_NFFT, hop_length=_HOP)) ** 2
    mag = np.sqrt(S)
    mel = librosa.feature.melspectrogram(S=S, sr=STATS_SR, n_mels=64)
    mf = librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=float(mel.max()) + 1e-20), n_mfcc=40)
    d = librosa.feature.delta(mf) if mf.shape[1] >= 9 else np.zeros_like(mf)
    feats: list[np.ndarray] = [mf.mean(1), mf.std(1), d.mean(1), d.std(1)]
    shape = [
        librosa.feature.spectral_centroid(S=mag, sr=STATS_SR)[0] / 1000,
        librosa.feature.spectral_bandwidth(S=mag, sr=STATS_SR)[0] / 1000,
        librosa.feature.spectral_rolloff(S=mag, sr=STATS_SR)[0] / 1000,
        librosa.feature.spectral_flatness(S=mag)[0],
        librosa.feature.zero_crossing_rate(x, frame_length=_NFFT, hop_length=_HOP)[0],
    ]
    feats.append(np.array([v for t in shape for v in (t.mean(), t.std())]))
    e = 10 * np.log10(S.sum(0) + 1e-10)
    e = e - e.max()
    active = e > -40
    ea = e[active]
    feats.append(np.array([*_moments(ea), float(np.diff(ea).std()) if ea.size > 1 else 0.0]))
    f0 = librosa.yin(x, fmin=60, fmax=500, sr=STATS_SR, frame_length=1024, hop_length=_HOP)
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
    con = librosa.feature.spectral_contrast(S=mag, sr=STATS_SR, n_bands=6, fmin=100)
    feats += [con.mean(1), con.std(1)]
    runs = int(np.sum(np.diff(voiced.astype(int)) == 1)) if n > 1 else 0
    dur = x.size / STATS_SR
    feats.append(
        np.array([voiced.mean() if n else 0.0, runs / max(dur, 0.1), dur, 1 - active.mean()])
    )
    freqs = librosa.fft_frequencies(sr=STATS_SR, n_fft=_NFFT)
    edges = (0, 500, 1000, 2000, 4000, 8001)
    band = np.array([S[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in itertools.pairwise(edges)])
    lb = 10 * np.log10(band / max(band.sum(), 1e-30) + 1e-10)
    ratios = [lb[i] - lb[j] for i in range(5) for j in range(i + 1, 5)]
    feats.append(np.array([*ratios, float(lb.max() - lb.min())]))
    out = np.concatenate([np.asarray(f, np.float64).ravel() for f in feats])
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
