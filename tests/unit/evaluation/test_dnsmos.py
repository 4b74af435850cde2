"""DNSMOS wrapper: same numbers as ``speechmos``, known order clean > noisy, bounded threads, errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from batchsep.errors import ParameterError
from batchsep.evaluation import dnsmos as dn

pytest.importorskip("speechmos", reason="DNSMOS needs the zoo extra: pip install 'batchsep[zoo]'")
pytest.importorskip("onnxruntime")

SR = 16000


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    """3 s of real clean speech (VoiceBank p287, 16 kHz)."""
    x, sr = sf.read(
        shared_data / "pairs" / "voicebank_demand" / "clean" / "p287_003.flac", dtype="float32"
    )
    assert sr == SR
    return x


@pytest.mark.slow
@pytest.mark.realdata
def test_clean_speech_rates_above_the_same_speech_in_strong_noise(speech):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(speech.size).astype(np.float32)
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2))  # 0 dB SNR white noise
    noisy = np.clip(speech + noise, -1, 1)
    clean_s, noisy_s = dn.dnsmos_score(speech, SR), dn.dnsmos_score(noisy, SR)
    assert set(clean_s) == {"sig", "bak", "ovrl", "p808"}
    assert clean_s["ovrl"] > noisy_s["ovrl"] + 1.0, (clean_s, noisy_s)
    assert clean_s["bak"] > noisy_s["bak"] + 1.0, (clean_s, noisy_s)
    assert clean_s["p808"] > noisy_s["p808"]
    assert all(1.0 <= v <= 5.0 for v in clean_s.values())


@pytest.mark.slow
@pytest.mark.realdata
def test_same_numbers_as_speechmos_called_directly(speech):
    from speechmos import dnsmos as sm

    long = np.tile(speech, 5)[: int(12.5 * SR)]  # two 9.01 s windows with the 1 s hop
    for x in (speech, long):
        ours = dn.dnsmos_score(x, SR)
        theirs = sm.run(x, SR)
        for k, key in (("sig", "sig_mos"), ("bak", "bak_mos"), ("ovrl", "ovrl_mos")):
            assert ours[k] == pytest.approx(float(theirs[key]), abs=1e-6)
        assert ours["p808"] == pytest.approx(float(theirs["p808_mos"]), abs=1e-5)


@pytest.mark.slow
@pytest.mark.realdata
def test_other_rates_and_channels_are_scored_at_16k_mono(speech):
    from batchsep.dsp.resample import resample

    at_48k = resample(speech, SR, 48000)
    stereo = np.stack([at_48k, at_48k])
    a, b = dn.dnsmos_score(stereo, 48000), dn.dnsmos_score(resample(at_48k, 48000, SR), SR)
    assert a == pytest.approx(b, abs=1e-9)


def test_sessions_are_loaded_once_with_bounded_threads(monkeypatch):
    monkeypatch.delenv("BATCHSEP_DNSMOS_THREADS", raising=False)
    scorer = dn.get_scorer()
    assert dn.get_scorer() is scorer and scorer.threads == 1
    model = scorer._model
    for sess in (model.onnx_sess, model.p808_onnx_sess):
        opts = sess.get_session_options()
        assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    monkeypatch.setenv("BATCHSEP_DNSMOS_THREADS", "2")
    assert dn.get_scorer().threads == 2
    monkeypatch.setenv("BATCHSEP_DNSMOS_THREADS", "0")
    with pytest.raises(ParameterError, match="BATCHSEP_DNSMOS_THREADS"):
        dn.get_scorer()


@pytest.mark.slow
def _score(row: dict[str, float | str | None], key: str) -> float:
    value = row[key]
    assert isinstance(value, float), (key, value)
    return value


def test_bad_audio_gives_reasons_not_exceptions():
    t = np.arange(int(1.2 * SR)) / SR  # repeated to 9.6 s: one DNSMOS window
    tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = dn.dnsmos_pair(tone, np.zeros(SR, np.float32), SR, SR)
    assert np.isnan(_score(out, "dnsmos_ovrl")) and "silence" in str(out["dnsmos_error"])
    assert np.isfinite(_score(out, "dnsmos_ovrl_in")) and out["dnsmos_in_error"] is None
    assert np.isnan(_score(out, "dnsmos_ovrl_i")) and list(out) == dn.dnsmos_keys()
    bad = tone.copy()
    bad[5] = np.nan
    assert "NaN" in str(dn.dnsmos_pair(bad, tone, SR, SR)["dnsmos_in_error"])
    with pytest.raises(ParameterError, match="no samples"):
        dn.dnsmos_score(np.zeros(0, np.float32), SR)
    loud = dn.dnsmos_score(3 * tone, SR)  # beyond ±1: clipped, not refused
    assert np.isfinite(loud["ovrl"])


def test_not_installed_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(dn, "missing_modules", lambda: ["speechmos"])
    assert not dn.dnsmos_available()
    with pytest.raises(ParameterError, match=r"pip install 'batchsep\[zoo\]'"):
        dn.require_dnsmos("--metrics dnsmos")
