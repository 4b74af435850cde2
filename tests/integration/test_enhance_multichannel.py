"""Multichannel files through :func:`enhance_file`: ``--multichannel keep`` and ``beamform``, stereo pairs
out of phase, the row's account of what was done."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from batchsep.errors import ParameterError
from batchsep.pipeline.enhance.file import EnhanceOptions, enhance_file

SR = 16000


def _gain(g: float):
    return lambda w: (g * np.asarray(w)).astype(np.float32)


class _Oracle:
    """A waveform 'model' that returns the known speech part of each row it is given (found in the
    mixture by its first samples; float WAV keeps them exactly)."""

    def __init__(self, mixture: np.ndarray, speech: np.ndarray) -> None:
        self.mixture, self.speech = mixture, speech  # [C, n]

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        out = np.empty_like(windows)
        for i, row in enumerate(np.atleast_2d(windows)):
            for c, channel in enumerate(self.mixture):
                view = np.lib.stride_tricks.sliding_window_view(channel, 16)
                starts = np.flatnonzero(np.all(view == row[:16], axis=1))
                if starts.size:
                    out[i] = self.speech[c, starts[0] : starts[0] + row.size]
                    break
            else:  # the beamformer's output (post-mask): pass it on
                out[i] = row
        return out


def _stereo_out_of_phase(seconds: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``L = s + n_L``, ``R = -s + n_R``: the talker out of phase, independent noises 10 dB down."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    s = 0.1 * rng.normal(size=n) * (np.sin(2 * np.pi * 1.5 * t) > 0)
    speech = np.stack([s, -s]).astype(np.float32)
    noise = 0.1 * np.sqrt(0.05) * rng.normal(size=(2, n))
    return (speech + noise).astype(np.float32), speech


@pytest.mark.parametrize("method", ["mvdr", "gev_ban", "mwf", "delay_and_sum"])
def test_out_of_phase_stereo_does_not_cancel_when_beamformed(tmp_path, method):
    x, speech = _stereo_out_of_phase()
    sf.write(tmp_path / "pair.wav", x.T, SR, subtype="FLOAT")
    opts = EnhanceOptions(multichannel="beamform", beamformer=method, beam_postmask=False)
    row = enhance_file(
        str(tmp_path / "pair.wav"), str(tmp_path / "o.wav"), _Oracle(x, speech), opts
    )
    assert row["status"] == "ok", row
    y, sr = sf.read(tmp_path / "o.wav", dtype="float32")
    assert sr == SR and y.shape == (x.shape[1],)  # one channel, the input's length
    ref = row["ref_channel"]
    target = speech[ref]
    err_in = np.sum((x[ref] - target) ** 2)
    assert np.sum(y**2) > 0.5 * np.sum(target**2)  # no cancellation
    assert np.sum((y - target) ** 2) < err_in  # nearer the talker than the reference microphone
    assert row["warning"].startswith("2 channels beamformed (")
    assert f"reference channel {ref + 1} chosen by SNR" in row["warning"]
    assert "masks |Ŝ|/|X| from the model's output" in row["warning"]


def test_out_of_phase_stereo_downmix_keeps_the_talker(tmp_path):
    x, speech = _stereo_out_of_phase()
    sf.write(tmp_path / "pair.wav", x.T, SR, subtype="FLOAT")
    row = enhance_file(
        str(tmp_path / "pair.wav"), str(tmp_path / "o.wav"), _gain(1.0), EnhanceOptions()
    )
    y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    np.testing.assert_allclose(y, (x[0] - x[1]) / 2, atol=1e-5)  # R inverted, then averaged
    assert np.sum(y**2) > 0.5 * np.sum(speech[0] ** 2)
    assert (
        row["warning"]
        == "2 channels downmixed to mono (channel 2 inverted: out of phase with channel 1)"
    )


@pytest.mark.parametrize("in_sr", [16000, 44100])
def test_keep_enhances_each_channel_and_writes_them_all(tmp_path, in_sr):
    n = int(2.5 * in_sr)
    t = np.arange(n) / in_sr
    x = np.stack(
        [0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1000 * t), 0 * t], axis=1
    )
    sf.write(tmp_path / "three.wav", x, in_sr, subtype="FLOAT")
    opts = EnhanceOptions(multichannel="keep", chunk_s=1.0, overlap_s=0.25)
    row = enhance_file(str(tmp_path / "three.wav"), str(tmp_path / "o.flac"), _gain(0.5), opts)
    assert row["status"] == "ok", row
    assert row["warning"] == "3 channels enhanced one by one (as many in the output)"
    y, sr = sf.read(tmp_path / "o.flac", dtype="float32")
    assert sr == in_sr and y.shape == x.shape
    inner = slice(in_sr // 10, -in_sr // 10)  # the resampler's edges aside
    np.testing.assert_allclose(y[inner], 0.5 * x[inner], atol=2e-3)


def test_beamform_whole_file_reads_twice_recursive_once_and_mono_files_are_untouched(tmp_path):
    x, speech = _stereo_out_of_phase(seconds=4.0, seed=3)
    sf.write(tmp_path / "pair.wav", x.T, SR, subtype="FLOAT")
    oracle = _Oracle(x, speech)
    for forgetting in (None, 0.98):
        opts = EnhanceOptions(
            multichannel="beamform", beam_forgetting=forgetting, chunk_s=1.0, overlap_s=0.25,
            beam_postmask=False,
        )  # fmt: skip
        row = enhance_file(str(tmp_path / "pair.wav"), str(tmp_path / "o.wav"), oracle, opts)
        assert row["status"] == "ok", row
        y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
        target = speech[row["ref_channel"]]
        late = slice(2 * SR, None)
        assert np.sum((y[late] - target[late]) ** 2) < np.sum(
            (x[row["ref_channel"], late] - target[late]) ** 2
        )
        stats = "whole-file statistics" if forgetting is None else "forgetting factor 0.98"
        assert stats in row["warning"]
    sf.write(tmp_path / "mono.wav", x[0], SR, subtype="FLOAT")
    row = enhance_file(
        str(tmp_path / "mono.wav"), str(tmp_path / "m.wav"), _gain(1.0),
        EnhanceOptions(multichannel="beamform"),
    )  # fmt: skip
    assert row["status"] == "ok" and row["warning"] is None and "ref_channel" not in row


def test_bad_multichannel_options_are_refused():
    with pytest.raises(ParameterError, match="multichannel='stereo'"):
        EnhanceOptions(multichannel="stereo")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="beam_forgetting"):
        EnhanceOptions(multichannel="beamform", beam_forgetting=1.5)


@pytest.mark.slow
@pytest.mark.realdata
def test_cli_beamforms_a_simulated_array_and_evaluate_scores_the_reference_channel(
    tmp_path, shared_data
):
    """``batchsep enhance --multichannel beamform`` with the shipped model on a simulated 4-mic room (a
    LibriSpeech talker, household noise), then ``batchsep evaluate`` against the clean images (4
    channels): scored at the row's reference channel."""
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from batchsep.cli.main import EXIT_OK, main
    from batchsep.corpus.roomsim import RoomConfig, simulate_room
    from batchsep.evaluation.bss import sdr_only

    rng = np.random.default_rng(0)
    n = 4 * SR
    talker = np.resize(
        sf.read(sorted((shared_data / "speech").rglob("*.flac"))[3], dtype="float32")[0], n
    )
    noise = sf.read(
        sorted((shared_data / "noise" / "household").glob("*.flac"))[0], dtype="float32"
    )[0]
    noise = noise if noise.ndim == 1 else noise.mean(axis=1)
    sc = simulate_room(talker, [noise[:n]], RoomConfig(n_mics=4, t60=0.3, snr_db=0.0), rng)
    (tmp_path / "in").mkdir()
    (tmp_path / "clean").mkdir()
    sf.write(tmp_path / "in" / "room.wav", sc.mixture.T, SR, subtype="FLOAT")
    sf.write(tmp_path / "clean" / "room.wav", sc.speech_image.T, SR, subtype="FLOAT")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, [
        "enhance", str(tmp_path / "in"), str(out), "--multichannel", "beamform", "--local",
        "--no-emotion", "--beamformer", "mvdr",
    ])  # fmt: skip
    assert r.exit_code == EXIT_OK, r.output
    rows = pq.read_table(out / "results").to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    assert rows[0]["warning"].startswith("4 channels beamformed (MVDR, whole-file statistics, ")
    ref = rows[0]["ref_channel"]
    assert 0 <= ref < 4
    y, _ = sf.read(out / "room.wav", dtype="float32")
    assert y.ndim == 1 and y.size == n
    r = CliRunner().invoke(main, [
        "evaluate", str(out), "--references", str(tmp_path / "clean"), "--metrics", "sdr", "--local",
    ])  # fmt: skip
    assert r.exit_code == EXIT_OK, r.output
    metrics = pq.read_table(out / "metrics").to_pylist()[0]
    assert metrics["sdr"] == pytest.approx(sdr_only(sc.speech_image[ref], y), abs=0.05)
    assert metrics["sdr_in"] == pytest.approx(
        sdr_only(sc.speech_image[ref], sc.mixture[ref]), abs=0.05
    )
    assert metrics["sdr"] > metrics["sdr_in"] + 3


def test_channels_is_the_older_spelling_of_multichannel(tmp_path):
    from click.testing import CliRunner

    from batchsep import api
    from batchsep.cli.enhance import _multichannel
    from batchsep.cli.main import main

    assert _multichannel(None, None) == "downmix"
    assert _multichannel(None, "mono") == "downmix"
    assert _multichannel(None, "keep") == "keep"
    assert _multichannel("beamform", None) == "beamform"
    assert _multichannel("keep", "keep") == "keep"
    (tmp_path / "in").mkdir()
    r = CliRunner().invoke(main, [
        "enhance", str(tmp_path / "in"), str(tmp_path / "out"), "--channels", "keep",
        "--multichannel", "beamform",
    ])  # fmt: skip
    assert r.exit_code == 2 and "--channels keep and --multichannel beamform disagree" in r.output
    assert api.check_params("enhance", {"multichannel": "stereo", "beam_forgetting": 0}) == [
        "multichannel='stereo' must be one of downmix, keep, beamform, mono",
        "beam_forgetting=0 must be in (0, 1]",
    ]
    assert api.check_params("enhance", {"multichannel": "mono", "beamformer": "gev_ban"}) == []
