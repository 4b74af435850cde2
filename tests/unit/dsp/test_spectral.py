"""batchsep.dsp.spectral: every port against the librosa function it replaces, on real and edge-case audio."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import pytest

from batchsep.dsp import spectral as sp
from batchsep.errors import ParameterError

SR, NFFT, HOP = 16000, 512, 160


def _close(new: np.ndarray, ref: np.ndarray, rtol: float = 0.0, scale: float | None = None) -> None:
    """Same shape and dtype; equal, or within ``rtol`` of ``scale`` (default: ref's largest magnitude)."""
    assert new.shape == ref.shape and new.dtype == ref.dtype, (
        new.shape,
        ref.shape,
        new.dtype,
        ref.dtype,
    )
    if scale is None:
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    np.testing.assert_allclose(new, ref, rtol=0, atol=rtol * scale)


def _check_all(x: np.ndarray) -> None:
    """Each port against librosa on one signal (the calls and arguments of emotion_stats)."""
    D = librosa.stft(x, n_fft=NFFT, hop_length=HOP)
    _close(sp.stft(x, n_fft=NFFT, hop_length=HOP), D, 1e-6)
    S = np.abs(D) ** 2
    mag = np.sqrt(S)
    M = librosa.feature.melspectrogram(S=S, sr=SR, n_mels=64)
    _close(sp.melspectrogram(S, sr=SR, n_mels=64), M, 1e-6)
    ref = float(M.max()) + 1e-20
    L = librosa.power_to_db(M, ref=ref)
    _close(sp.power_to_db(M, ref=ref), L, 1e-6)
    C = librosa.feature.mfcc(S=L, n_mfcc=40)
    _close(sp.mfcc(L, n_mfcc=40), C, 1e-6)
    if C.shape[1] >= 9:
        for order in (1, 2):  # float32 Savitzky-Golay: rounding differs (a few 1e-7)
            scale = float(np.abs(C).max())  # a constant input's derivative is rounding noise
            _close(sp.delta(C, order=order), librosa.feature.delta(C, order=order), 1e-5, scale)
    _close(sp.spectral_centroid(mag, sr=SR), librosa.feature.spectral_centroid(S=mag, sr=SR)[0])
    _close(sp.spectral_bandwidth(mag, sr=SR), librosa.feature.spectral_bandwidth(S=mag, sr=SR)[0])
    _close(sp.spectral_rolloff(mag, sr=SR), librosa.feature.spectral_rolloff(S=mag, sr=SR)[0])
    _close(sp.spectral_flatness(mag), librosa.feature.spectral_flatness(S=mag)[0])
    _close(
        sp.spectral_contrast(mag, sr=SR, n_bands=6, fmin=100),
        librosa.feature.spectral_contrast(S=mag, sr=SR, n_bands=6, fmin=100),
    )
    _close(
        sp.zero_crossing_rate(x, frame_length=NFFT, hop_length=HOP),
        librosa.feature.zero_crossing_rate(x, frame_length=NFFT, hop_length=HOP)[0],
    )
    if x.size >= 1024:
        kw = {"fmin": 60, "fmax": 500, "sr": SR, "frame_length": 1024, "hop_length": HOP}
        _close(sp.yin(x, **kw), librosa.yin(x, **kw), 1e-6)  # type: ignore[arg-type]
    segs = [x[i : i + NFFT] for i in range(0, x.size - NFFT, 7 * HOP)]
    if segs:  # Burg LPC of Hann-windowed frames, float64; the reference runs per frame
        frames = (np.stack(segs) * np.hanning(NFFT)).astype(np.float64)
        frames = frames[np.abs(frames).max(1) > 1e-6]
        ref_lpc = np.stack([librosa.lpc(f, order=16) for f in frames]) if frames.size else frames
        _close(sp.lpc(frames, order=16), ref_lpc.reshape(-1, 17), 1e-6)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "rel",
    [
        "emotion/ravdess/Actor_01/03-01-05-02-02-02-01.flac",  # angry, strong
        "emotion/ravdess/Actor_12/03-01-02-01-01-01-12.flac",  # calm
        "pairs/voicebank_demand/noisy/p287_001.flac",
    ],
)
def test_ports_match_librosa_on_real_speech(shared_data: Path, rel: str) -> None:
    import soundfile as sf

    from batchsep.dsp.resample import to_rate_mono

    y, sr = sf.read(shared_data / rel, dtype="float32", always_2d=True)
    x = np.ascontiguousarray(to_rate_mono(y.T, sr, SR), dtype=np.float32)
    _check_all(x)
    _check_all(x.astype(np.float64))


@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")  # librosa's, for the short input
@pytest.mark.parametrize(
    "make",
    [
        lambda rng: np.zeros(SR, np.float32),  # digital silence
        lambda rng: (0.1 * rng.standard_normal(300)).astype(np.float32),  # shorter than a frame
        lambda rng: np.concatenate([np.zeros(4000), rng.standard_normal(8000)]).astype(np.float32),
        # a tone with a noise floor (order-16 LPC of a pure tone is ill-conditioned: rounding decides)
        lambda rng: (
            np.sin(2 * np.pi * 220 * np.arange(12345) / SR) + 1e-3 * rng.standard_normal(12345)
        ).astype(np.float32),
    ],
    ids=["silence", "short", "step", "tone"],
)
def test_ports_match_librosa_on_edge_cases(
    make: Callable[[np.random.Generator], np.ndarray],
) -> None:
    _check_all(make(np.random.default_rng(0)))


def test_mel_basis_matches_librosa_for_other_settings() -> None:
    for kw in (
        {"sr": 16000, "n_fft": 1024, "n_mels": 80},
        {"sr": 22050, "n_fft": 2048, "n_mels": 128, "fmin": 30.0, "fmax": 8000.0},
        {"sr": 8000, "n_fft": 256, "n_mels": 40},
    ):
        _close(sp.mel_basis(**kw), librosa.filters.mel(**kw), 1e-7)  # type: ignore[arg-type]
    assert not sp.mel_basis(sr=16000, n_fft=512, n_mels=64).flags.writeable
    np.testing.assert_allclose(
        sp.hz_to_mel(np.array([0.0, 500.0, 1000.0, 4000.0])),
        librosa.hz_to_mel([0.0, 500.0, 1000.0, 4000.0]),
    )
    assert sp.hann(512).tolist() == librosa.filters.get_window("hann", 512).tolist()


def test_known_answers_and_errors() -> None:
    t = np.arange(SR) / SR
    f0 = sp.yin((0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), fmin=60, fmax=500, sr=SR,
                frame_length=1024, hop_length=HOP)  # fmt: skip
    assert np.median(f0) == pytest.approx(200.0, rel=5e-3)  # YIN's parabolic refinement: ~0.2 %
    ramp = np.arange(20, dtype=np.float32)[None, :] ** 2  # d/dt t^2 = 2t, d2/dt2 = 2
    assert sp.delta(ramp, order=2) == pytest.approx(np.full((1, 20), 2.0), abs=1e-4)
    assert sp.delta(ramp)[0, 4:-4] == pytest.approx(2 * np.arange(4, 16), abs=1e-3)
    ar = sp.lpc(
        np.sin(0.3 * np.arange(512)) + 1e-3 * np.random.default_rng(0).standard_normal(512), order=2
    )
    assert (
        ar[0] == 1.0
        and ar[1] == pytest.approx(-2 * np.cos(0.3), abs=0.01)
        and ar[2] == pytest.approx(1, abs=0.01)
    )
    with pytest.raises(ParameterError):
        sp.yin(
            np.zeros(2048, np.float32), fmin=10, fmax=500, sr=SR, frame_length=1024, hop_length=HOP
        )
    with pytest.raises(ParameterError):
        sp.delta(np.zeros((3, 5)))
    with pytest.raises(ParameterError):
        sp.spectral_contrast(np.ones((257, 3)), sr=SR, fmin=2000.0)


def test_poly_roots_equals_np_roots_row_by_row() -> None:
    rng = np.random.default_rng(1)
    a = np.concatenate([np.ones((40, 1)), 0.3 * rng.standard_normal((40, 16))], axis=1)
    a[3, -1] = 0.0  # a trailing zero: np.roots strips it and adds a zero root
    a[7, -3:] = 0.0
    a[9, 0] = 0.0  # a leading zero: one degree less
    got = sp.poly_roots(a)
    assert len(got) == 40
    for row, r in zip(a, got, strict=True):
        ref = np.roots(row)
        assert r.shape == ref.shape and np.array_equal(r, ref)
    assert sp.poly_roots(np.zeros((0, 17))) == []
