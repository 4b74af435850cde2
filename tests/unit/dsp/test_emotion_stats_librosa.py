"""The librosa-free emotion statistics equal the librosa-based ones they replaced, on real speech.

The reference, :func:`librosa_emotion_stats`, is the implementation of ``batchsep/dsp/emotion_stats.py``
before its port to :mod:`batchsep.dsp.spectral` (librosa calls; commit 5983d2e), kept here verbatim but
for its docstring and error type; it compiles librosa's numba kernels the first time it runs in a fresh
venv (cached afterwards). Measured on all 960 RAVDESS files when ported: largest difference 2.5e-6
(relative to 1 + |value|), YIN bit-identical, the shipped tagger's labels identical for every file and
segment, probabilities within 5e-7.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from batchsep.dsp.emotion_stats import N_STATS, STATS_SR, emotion_stats
from batchsep.dsp.vad import trim_silence

_HOP, _NFFT = 160, 512

# ----------------------------------------------------------------------------- the reference (pre-port)


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


def _ref_formants(x: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Mean, std and median of F1-F3 (kHz): order-16 LPC roots of the given 10 ms frames (512 points)."""
    import librosa

    xp = np.append(x[:1], x[1:] - 0.97 * x[:-1])  # pre-emphasis
    win = np.hanning(_NFFT)
    found = []
    for i in frames:
        seg = xp[max(0, i * _HOP - _NFFT // 2) : i * _HOP + _NFFT // 2]
        if seg.size < _NFFT or np.abs(seg).max() < 1e-6:
            continue
        a = librosa.lpc((seg * win).astype(np.float64), order=16)
        if not np.isfinite(a).all():
            continue
        r = np.roots(a)
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


def _ref_v2(
    x: np.ndarray, S: np.ndarray, mel: np.ndarray, active: np.ndarray, e: np.ndarray,
    freqs: np.ndarray,
) -> list[np.ndarray]:  # fmt: skip
    """The 175 values of the v2 groups (log-mel bands … rhythm, see the module docstring)."""
    import librosa

    act = active if active.sum() > 3 else np.ones_like(active)
    ldb = librosa.power_to_db(mel, ref=float(mel.max()) + 1e-20)
    la = ldb[:, act]
    mf = librosa.feature.mfcc(S=ldb, n_mfcc=20)[:, act]
    d2 = librosa.feature.delta(mf, order=2) if mf.shape[1] >= 9 else np.zeros_like(mf)
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
            _ref_formants(x, np.flatnonzero(act)[::2]), np.array(shimmer), np.array(rhythm)]  # fmt: skip


def librosa_emotion_stats(x: np.ndarray, *, trim: bool = True) -> np.ndarray:
    """The pre-port implementation (librosa calls), kept verbatim as the reference."""
    import librosa

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1 or x.size < STATS_SR // 20:
        raise ValueError(f"x shape={x.shape}")
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
    feats += _ref_v2(x, S, mel, active, e, freqs)
    out = np.concatenate([np.asarray(f, np.float64).ravel() for f in feats])
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


# ----------------------------------------------------------------------------- the comparison


def _real_clips(root: Path) -> list[tuple[str, np.ndarray]]:
    """20 real 16 kHz clips: one RAVDESS file per actor (emotions and intensities vary), 2 LibriSpeech
    excerpts (6 s) and 2 noisy VoiceBank+DEMAND files."""
    import soundfile as sf

    from batchsep.dsp.resample import to_rate_mono

    rav = root / "emotion" / "ravdess"
    paths = [sorted((rav / f"Actor_{a:02d}").glob("*.flac"))[(7 * a) % 60] for a in range(1, 17)]
    paths += sorted((root / "speech" / "librispeech").glob("*/*.flac"))[:2]
    paths += sorted((root / "pairs" / "voicebank_demand" / "noisy").glob("*.flac"))[:2]
    clips = []
    for p in paths:
        y, sr = sf.read(p, dtype="float32", always_2d=True)
        x = np.asarray(to_rate_mono(y.T, sr, STATS_SR), np.float32)[: 6 * STATS_SR]
        clips.append((p.name, x))
    return clips


@pytest.fixture(scope="module")
def clips(shared_data: Path) -> list[tuple[str, np.ndarray]]:
    return _real_clips(shared_data)


@pytest.mark.realdata
@pytest.mark.slow
def test_full_vector_matches_librosa_implementation(clips: list[tuple[str, np.ndarray]]) -> None:
    worst = 0.0
    for name, x in clips:
        for seg in (x, x[: STATS_SR // 2]):  # whole clip, and a 0.5 s piece (short-input paths)
            new, ref = emotion_stats(seg), librosa_emotion_stats(seg)
            assert new.shape == ref.shape == (N_STATS,), name
            err = np.abs(new - ref) / (1.0 + np.abs(ref))
            worst = max(worst, float(err.max()))
            assert err.max() < 2e-5, (name, int(err.argmax()), new[err.argmax()], ref[err.argmax()])
    print(f"largest difference: {worst:.2e} (relative to 1 + |value|)")


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_tagger_gives_the_same_tags(
    clips: list[tuple[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped ``default-emotion`` tagger: same labels and probabilities (1e-4) per segment and file."""
    from batchsep.pipeline.enhance import tag

    tagger = tag.EmotionTagger("default-emotion")
    assert tagger.input_kind == "stats"  # the model that uses emotion_stats

    def run() -> list[dict]:
        out = []
        for _, x in clips:
            stream = tagger.stream()
            stream.feed(x)
            out.append(stream.result())
        return out

    new = run()
    monkeypatch.setattr(tag, "emotion_stats", librosa_emotion_stats)
    ref = run()
    n_segments = 0
    for (name, _), a, b in zip(clips, new, ref, strict=True):
        assert a["emotion_label"] == b["emotion_label"], name
        assert a["emotion_warning"] == b["emotion_warning"], name
        pa, pb = (np.array(list(r["emotion_probs"].values())) for r in (a, b))
        np.testing.assert_allclose(pa, pb, atol=1e-4, err_msg=name)
        assert len(a["emotion_segments"]) == len(b["emotion_segments"]), name
        for sa, sb in zip(a["emotion_segments"], b["emotion_segments"], strict=True):
            assert sa["label"] == sb["label"], name
            np.testing.assert_allclose(
                list(sa["probs"].values()), list(sb["probs"].values()), atol=1e-4, err_msg=name
            )
            n_segments += 1
    assert n_segments >= len(clips)
