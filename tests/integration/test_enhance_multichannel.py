"""Multichannel files through :func:`enhance_file`: ``--multichannel keep`` and ``beamform``, stereo pairs
out of phase, the row's account of what was done."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import soundfile as sf

from batchsep.errors import ParameterError
from batchsep.pipeline.enhance.file import EnhanceOptions, enhance_file
from batchsep.pipeline.enhance.multichannel import REFINE

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


def test_beamform_whole_file_and_recursive_statistics_and_mono_files_are_untouched(tmp_path):
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
    for refine in (-1, 4):
        with pytest.raises(
            ParameterError, match=rf"beam_refine={refine} must be an integer in \[0, 3\]"
        ):
            EnhanceOptions(multichannel="beamform", beam_refine=refine)
    for power in (0.0, 4.5):
        with pytest.raises(ParameterError, match=rf"beam_noise_power={power} must be in \(0, 4\]"):
            EnhanceOptions(multichannel="beamform", beam_noise_power=power)
    opts = EnhanceOptions(multichannel="beamform", beam_refine=3, beam_noise_power=4)
    assert (opts.beam_refine, opts.beam_noise_power) == (3, 4)
    assert (EnhanceOptions().beam_refine, EnhanceOptions().beam_noise_power) == (REFINE, None)


class _Counting(_Oracle):
    """The oracle, counting the rows it is given that are not windows of the mixture: the beamformer's
    output, which a refinement round asks the model's mask of."""

    outputs = 0

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        for row in np.atleast_2d(windows):
            view = np.lib.stride_tricks.sliding_window_view(self.mixture, 16, axis=1)
            self.outputs += not np.any(np.all(view == row[:16], axis=2))
        return super().__call__(windows)


@pytest.mark.slow
@pytest.mark.parametrize("refine", [0, 2])
def test_beam_refine_and_noise_power_reach_the_beamformer(tmp_path, monkeypatch, refine):
    """``beam_refine`` rounds: whole-file statistics read the file 2 + refine times (first pass, one per
    round, the filter) and ask the model for the mask of the beamformed signal once per window and round;
    a forgetting factor reads it once. ``beam_noise_power`` (or the filter's default) is the row's."""
    from batchsep.io import storage

    x, speech = _stereo_out_of_phase(seconds=2.0, seed=3)
    sf.write(tmp_path / "pair.wav", x.T, SR, subtype="FLOAT")
    opened: list[str] = []
    open_input = storage.open_input

    def counting_open(uri: str):
        opened.append(uri)
        return open_input(uri)

    monkeypatch.setattr(storage, "open_input", counting_open)
    cases: list[
        tuple[dict[str, Any], int, str | None]
    ] = [  # (options, reads, the row's noise weight)
        (dict(beamformer="mvdr"), 2 + refine, "noise weight (1 - mask)^2, "),
        (dict(beamformer="mwf", beam_noise_power=3.0), 2 + refine, "noise weight (1 - mask)^3, "),
        (dict(beamformer="mwf", beam_forgetting=0.98), 1, None),  # the MWF's default: 1 - mask
    ]
    for given, reads, noise in cases:
        opts = EnhanceOptions(
            multichannel="beamform", chunk_s=0.5, overlap_s=0.125, beam_postmask=False,
            beam_refine=refine, **given,  # type: ignore[arg-type]
        )  # fmt: skip
        model = _Counting(x, speech)
        opened.clear()
        row = enhance_file(str(tmp_path / "pair.wav"), str(tmp_path / "o.wav"), model, opts)
        assert row["status"] == "ok", row
        assert len(opened) == reads, (given, opened)
        y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
        assert y.shape == (x.shape[1],) and np.all(np.isfinite(y))
        if given.get("beam_forgetting") is None:
            assert model.outputs == 4 * refine  # 4 half-second segments per round
            assert (f"refined {refine}x" in row["warning"]) == (refine > 0)
        else:
            # one pass, 5 windows (0.5 s, hop 0.375 s): each after the first masks the filter so far's output
            assert model.outputs == (4 if refine else 0)
        if noise is None:
            assert "noise weight" not in row["warning"]
        else:
            assert noise in row["warning"]


def test_resume_with_other_beam_settings_is_refused(tmp_path):
    """job.json records the options; a resume with another ``beam_refine`` or ``beam_noise_power`` is
    refused as any other option change; a folder made before these options existed is not compared on
    them."""
    from dataclasses import asdict, replace

    from batchsep.pipeline.common import jobinfo
    from batchsep.pipeline.enhance.outfolder import check_same_settings

    out = str(tmp_path / "out")
    opts = EnhanceOptions(multichannel="beamform", beamformer="mwf")

    def spec(o: EnhanceOptions) -> dict:
        return {"model_sha256": "0" * 64, "options": asdict(o), "input_level_db_used": -26.0}

    jobinfo.write_job_json(out, "enhance", spec(opts))
    check_same_settings(out, spec(opts))  # the same: resumes
    with pytest.raises(
        ParameterError, match=r"options\.beam_refine \(--beam-refine\): 1 -> 2.*--overwrite"
    ):
        check_same_settings(out, spec(replace(opts, beam_refine=2)))
    with pytest.raises(
        ParameterError, match=r"options\.beam_noise_power \(--beam-noise-power\): None -> 2\.0"
    ):
        check_same_settings(out, spec(replace(opts, beam_noise_power=2.0)))
    older = spec(opts)
    del older["options"]["beam_refine"], older["options"]["beam_noise_power"]
    jobinfo.write_job_json(out, "enhance", older)
    check_same_settings(out, spec(replace(opts, beam_refine=0)))


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


def test_beam_refine_and_noise_power_options_of_cli_and_api(tmp_path):
    """``--beam-refine`` and ``--beam-noise-power``: out of range, a usage error (exit 2) before anything
    runs; the api's rules say the same; the CLI's and the api's defaults are the stage's."""
    import inspect

    from click.testing import CliRunner

    from batchsep import api
    from batchsep.api_params import enhance_options
    from batchsep.cli.main import EXIT_USAGE, main

    (tmp_path / "in").mkdir()
    for option, value in [("--beam-refine", "4"), ("--beam-refine", "-1"), ("--beam-refine", "1.5"),
                          ("--beam-noise-power", "0"), ("--beam-noise-power", "4.5"),
                          ("--beam-noise-power", "x")]:  # fmt: skip
        r = CliRunner().invoke(main, [
            "enhance", str(tmp_path / "in"), str(tmp_path / "out"), "--multichannel", "beamform",
            option, value,
        ])  # fmt: skip
        assert r.exit_code == EXIT_USAGE == 2 and f"Invalid value for '{option}'" in r.output
        assert not (tmp_path / "out").exists()
    assert api.check_params("enhance", {"beam_refine": 4, "beam_noise_power": 0}) == [
        "beam_refine=4 must be in [0, 3]",
        "beam_noise_power=0 must be in (0, 4]",
    ]
    assert api.check_params("enhance", {"beam_refine": None}) == [
        "beam_refine=None must be an integer"
    ]
    assert api.check_params("enhance", {"beam_refine": 0, "beam_noise_power": 4}) == []
    with pytest.raises(ParameterError, match="beam_refine=9"):
        api.enhance(str(tmp_path / "in"), str(tmp_path / "out"), beam_refine=9)
    opts = enhance_options(multichannel="beamform", beam_refine=2, beam_noise_power=1.5)
    assert (opts.beam_refine, opts.beam_noise_power) == (2, 1.5)
    assert inspect.signature(api.enhance).parameters["beam_refine"].default == REFINE
    assert inspect.signature(api.enhance).parameters["beam_noise_power"].default is None
    params = {p.name: p for p in main.commands["enhance"].params}  # type: ignore[attr-defined]
    assert params["beam_refine"].default == REFINE and params["beam_noise_power"].default is None
    help_text = CliRunner().invoke(main, ["enhance", "--help"]).output
    assert "--beam-refine N" in help_text and "--beam-noise-power P" in help_text


def test_beam_mask_option_reaches_the_beamformer_and_the_record(tmp_path):
    """``beam_mask``: checked (the options, the api's rules, the CLI: a usage error), the same default
    everywhere (``model``); ``spatial``/``guided`` refine the masks of the statistics by the cACGMM (the
    row's warning says so, the output keeps the talker); job.json records it and a resume with another
    value is refused; a folder made before the option existed is not compared on it."""
    import inspect
    from dataclasses import asdict, replace

    from click.testing import CliRunner

    from batchsep import api
    from batchsep.api_params import enhance_options
    from batchsep.cli.main import EXIT_USAGE, main
    from batchsep.pipeline.common import jobinfo
    from batchsep.pipeline.enhance.outfolder import check_same_settings

    with pytest.raises(ParameterError, match=r"beam_mask='oracle' must be one of \['model', "):
        EnhanceOptions(multichannel="beamform", beam_mask="oracle")  # type: ignore[arg-type]
    assert api.check_params("enhance", {"beam_mask": "oracle"}) == [
        "beam_mask='oracle' must be one of model, spatial, guided"
    ]
    assert api.check_params("enhance", {"beam_mask": "guided"}) == []
    assert enhance_options(multichannel="beamform", beam_mask="spatial").beam_mask == "spatial"
    assert EnhanceOptions().beam_mask == "model"
    assert inspect.signature(api.enhance).parameters["beam_mask"].default == "model"
    params = {p.name: p for p in main.commands["enhance"].params}  # type: ignore[attr-defined]
    assert params["beam_mask"].default == "model"
    (tmp_path / "in").mkdir()
    r = CliRunner().invoke(main, ["enhance", str(tmp_path / "in"), str(tmp_path / "out"),
                                  "--multichannel", "beamform", "--beam-mask", "oracle"])  # fmt: skip
    assert r.exit_code == EXIT_USAGE and "Invalid value for '--beam-mask'" in r.output
    assert not (tmp_path / "out").exists()

    x, speech = _stereo_out_of_phase(seconds=2.0, seed=5)
    sf.write(tmp_path / "pair.wav", x.T, SR, subtype="FLOAT")
    for mask, says in [("model", None), ("spatial", "(cACGMM, 10 EM iterations)"),
                       ("guided", "the mask as each bin's prior")]:  # fmt: skip
        opts = EnhanceOptions(multichannel="beamform", beam_postmask=False, beam_mask=mask)  # type: ignore[arg-type]
        row = enhance_file(str(tmp_path / "pair.wav"), str(tmp_path / "o.wav"), _Oracle(x, speech), opts)  # fmt: skip
        assert row["status"] == "ok", row
        assert ("refined by a spatial mixture model" in row["warning"]) == (says is not None)
        if says:
            assert says in row["warning"]
        y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
        target = speech[row["ref_channel"]]
        assert np.sum(y**2) > 0.5 * np.sum(target**2)  # the out-of-phase talker does not cancel
        # independent noises on 2 channels: at best half the error of the reference microphone
        err = np.sum((y - target) ** 2) / np.sum((x[row["ref_channel"]] - target) ** 2)
        assert err < 0.6

    out = str(tmp_path / "out")
    opts = EnhanceOptions(multichannel="beamform")

    def spec(o: EnhanceOptions) -> dict:
        return {"model_sha256": "0" * 64, "options": asdict(o), "input_level_db_used": -26.0}

    jobinfo.write_job_json(out, "enhance", spec(opts))
    check_same_settings(out, spec(opts))
    with pytest.raises(
        ParameterError,
        match=r"options\.beam_mask \(--beam-mask\): 'model' -> 'spatial'.*--overwrite",
    ):
        check_same_settings(out, spec(replace(opts, beam_mask="spatial")))
    older = spec(opts)
    del older["options"]["beam_mask"]
    jobinfo.write_job_json(out, "enhance", older)
    check_same_settings(out, spec(replace(opts, beam_mask="guided")))
