"""Bad audio gives the same readable error in ``batchsep enhance`` rows as in ``batchsep scan`` rows
(truncated data, NaN/Inf at an exact frame, empty files), and integer output formats report clipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from batchsep.pipeline.enhance.driver import enhance
from batchsep.pipeline.enhance.file import EnhanceOptions, enhance_file
from batchsep.pipeline.enhance.outfolder import committed_rows
from batchsep.pipeline.runner import SerialRunner
from batchsep.pipeline.scan.driver import scan

SR = 16000


def sine(seconds: float, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def scan_errors(root: Path, out: Path) -> dict[str, str | None]:
    scan(str(root), str(out), runner=SerialRunner())
    return {r["rel_path"]: r["error"] for r in pq.read_table(out / "manifest.parquet").to_pylist()}


def enhance_errors(root: Path, out: Path, model_uri: str, **opts) -> dict[str, str | None]:
    enhance(str(root), str(out), model=model_uri, options=EnhanceOptions(**opts))
    return {r["rel_path"]: r["error"] for r in committed_rows(str(out))}


def test_enhance_and_scan_give_the_same_reasons(tmp_path, bad_corpus, model_uri):
    root, expected = bad_corpus
    scanned = scan_errors(root, tmp_path / "scan")
    enhanced = enhance_errors(root, tmp_path / "enh", model_uri, block_frames=4096)
    for rel, err in expected.items():
        if err is None:
            assert scanned[rel] is None and enhanced[rel] is None, rel
        else:
            assert err in str(scanned[rel]), (rel, scanned[rel])
            assert err in str(enhanced[rel]), (rel, enhanced[rel])
    assert enhanced["empty.wav"] == scanned["empty.wav"] == "empty file (0 bytes)"
    assert enhanced["truncated_data.wav"] == scanned["truncated_data.wav"]
    assert not (tmp_path / "enh" / "truncated_data.wav").exists()


@pytest.mark.parametrize("block_frames", [4096, 20000, 1 << 17])
def test_nan_and_inf_report_the_first_bad_frame(tmp_path, model_uri, block_frames):
    root = tmp_path / "in"
    root.mkdir()
    x = sine(2.0, 32000)
    x[20000] = np.nan
    x[30000] = np.inf
    sf.write(root / "nan_inf.wav", x, 32000, subtype="FLOAT")
    sf.write(root / "all_nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    want = {
        "nan_inf.wav": "audio contains NaN/Inf samples (first at frame 20000, 0.62 s)",
        "all_nan.wav": "audio contains NaN/Inf samples (first at frame 0, 0.00 s)",
    }
    assert scan_errors(root, tmp_path / "scan") == want
    assert enhance_errors(root, tmp_path / "enh", model_uri, block_frames=block_frames) == want


def test_truncated_wav_is_an_error_row_in_both(tmp_path, model_uri):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "five.wav", sine(5.0), SR)
    data = (root / "five.wav").read_bytes()
    (root / "five.wav").write_bytes(data[: len(data) // 3])
    want = {"five.wav": "truncated file: header declares 5.00 s of audio, 1.67 s present"}
    assert scan_errors(root, tmp_path / "scan") == want
    assert enhance_errors(root, tmp_path / "enh", model_uri) == want


def _gain(g: float):
    return lambda w: (g * w).astype(np.float32)


def test_integer_output_reports_clipping(tmp_path):
    src = tmp_path / "loud.wav"
    sf.write(src, sine(2.0, amp=0.9), SR, subtype="FLOAT")
    wav = enhance_file(str(src), str(tmp_path / "o.wav"), _gain(1.5), EnhanceOptions(fmt="wav"))
    assert wav["status"] == "ok" and wav["warning"] is None  # float WAV keeps values above 1
    over = int(np.count_nonzero(np.abs(sf.read(tmp_path / "o.wav", dtype="float32")[0]) > 1.0))
    assert over > 0
    flac = enhance_file(str(src), str(tmp_path / "o.flac"), _gain(1.5), EnhanceOptions(fmt="flac"))
    assert flac["status"] == "ok"
    assert flac["warning"] == f"output clipped to full scale ({over} samples)"
    assert np.abs(sf.read(tmp_path / "o.flac", dtype="float32")[0]).max() <= 1.0
    quiet = enhance_file(str(src), str(tmp_path / "q.flac"), _gain(1.0), EnhanceOptions(fmt="flac"))
    assert quiet["warning"] is None


def test_clipping_warnings_combine(tmp_path):
    src = tmp_path / "clipped_in.wav"
    sf.write(src, np.clip(4 * sine(1.0), -1, 1), SR)
    row = enhance_file(str(src), str(tmp_path / "o.flac"), _gain(1.5), EnhanceOptions(fmt="flac"))
    parts = row["warning"].split("; ")
    assert len(parts) == 2, row["warning"]
    assert parts[0].startswith("input is clipped (")
    assert parts[1].startswith("output clipped to full scale (")


def test_out_of_phase_downmix_does_not_cancel_and_float_input_beyond_full_scale_is_named(tmp_path):
    x = sine(1.0)
    sf.write(tmp_path / "anti.wav", np.stack([x, -x], axis=1), SR, subtype="FLOAT")
    row = enhance_file(
        str(tmp_path / "anti.wav"), str(tmp_path / "a.wav"), _gain(1.0), EnhanceOptions()
    )
    assert row["status"] == "ok"
    assert row["warning"] == (
        "2 channels downmixed to mono (channel 2 inverted: out of phase with channel 1)"
    )
    y, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    np.testing.assert_allclose(y, x, atol=1e-6)  # the first channel's polarity, not silence
    sf.write(tmp_path / "near.wav", np.stack([x, -0.99 * x, x], axis=1), SR, subtype="FLOAT")
    row = enhance_file(
        str(tmp_path / "near.wav"), str(tmp_path / "n.wav"), _gain(1.0), EnhanceOptions()
    )
    assert row["warning"] == (
        "3 channels downmixed to mono (channel 2 inverted: out of phase with channel 1)"
    )
    sf.write(tmp_path / "two.wav", np.stack([x, -0.4 * x, -0.6 * x], axis=1), SR, subtype="FLOAT")
    row = enhance_file(
        str(tmp_path / "two.wav"), str(tmp_path / "t.wav"), _gain(1.0), EnhanceOptions()
    )
    assert row["warning"] == (
        "3 channels downmixed to mono (channels 2, 3 inverted: out of phase with channel 1)"
    )
    # a silent first channel gives no polarity to align to: a downmix that cancels is still named
    silent_first = np.stack([0 * x, x, -x], axis=1)
    sf.write(tmp_path / "anti3.wav", silent_first, SR, subtype="FLOAT")
    row = enhance_file(
        str(tmp_path / "anti3.wav"), str(tmp_path / "a3.wav"), _gain(1.0), EnhanceOptions()
    )
    assert row["warning"] == (
        "3 channels downmixed to mono; the channels cancel in the mono downmix (out of phase?): "
        "it is digital silence"
    )
    sf.write(tmp_path / "same.wav", np.stack([x, 0.5 * x], axis=1), SR, subtype="FLOAT")
    row = enhance_file(
        str(tmp_path / "same.wav"), str(tmp_path / "s.wav"), _gain(1.0), EnhanceOptions()
    )
    assert row["warning"] == "2 channels downmixed to mono"
    loud = 1000 * x
    sf.write(tmp_path / "loud.wav", loud, SR, subtype="FLOAT")
    row = enhance_file(
        str(tmp_path / "loud.wav"), str(tmp_path / "l.wav"), _gain(1.0), EnhanceOptions()
    )
    over = int(np.count_nonzero(np.abs(loud) > 1.0))
    assert row["warning"] == f"input exceeds full scale ({over} float samples beyond ±1.0)"


@pytest.mark.parametrize("block_frames", [4800, 4096, 1 << 17])
def test_streamed_blocks_end_cleanly(tmp_path, block_frames):
    """A file that ends exactly on a block boundary is resampled to the end like any other."""
    src = tmp_path / "in.wav"
    x = sine(1.0, 48000)  # 48000 frames: 10 blocks of 4800 exactly
    sf.write(src, x, 48000, subtype="FLOAT")
    opts = EnhanceOptions(block_frames=block_frames)
    row = enhance_file(str(src), str(tmp_path / "o.wav"), _gain(1.0), opts)
    assert row["status"] == "ok" and row["duration_s"] == pytest.approx(1.0)
    y, sr = sf.read(tmp_path / "o.wav", dtype="float32")
    assert sr == 48000 and y.shape == x.shape
    # round trip through 16 kHz keeps a 440 Hz tone; the ends (resampler edges) are left out
    np.testing.assert_allclose(y[2000:-2000], x[2000:-2000], atol=2e-3)
    np.testing.assert_allclose(y[-2000:-50], x[-2000:-50], atol=1e-2)  # flushed to the very end
