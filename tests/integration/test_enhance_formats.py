"""Every common input format through ``batchsep enhance``: an ok row with the decoded length, or an error row
with a reason; the files skipped by name are listed (some on the console, all in job.json)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner
from format_helpers import make_corpus

from batchsep.cli.main import main

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_enhance_decodes_every_common_format(shared_data, tmp_path, capfd):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_corpus(shared_data, inp)
    r = CliRunner().invoke(
        main, ["enhance", str(inp), str(out), "--local", "--no-emotion", "--show-skipped", "1"]
    )
    assert r.exit_code == 1, r.output  # one file is no audio at all
    assert "2 files skipped: not audio (by name): cover.jpg ... and 1 more" in r.output, r.output
    skipped = json.loads((out / "job.json").read_text())["stages"]["enhance"]["skipped_not_audio"]
    assert skipped == ["cover.jpg", "notes.txt"]
    rows = {row["rel_path"]: row for row in pq.read_table(out / "results").to_pylist()}
    audio_names = sorted(p.name for p in inp.iterdir() if p.suffix not in (".txt", ".jpg"))
    assert sorted(rows) == audio_names
    bad = rows.pop("not_really.mp3")
    assert bad["status"] == "error" and "not a recognised audio format" in bad["error"]
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["error"])
        info = sf.info(
            row["output_uri"].removeprefix("file://")
        )  # speech.mp3.wav, speech.m4a.wav, ...
        # the output has the decoded length, at the input's rate
        assert info.samplerate == row["out_sample_rate"] == row["sample_rate"]
        assert info.frames == round(row["duration_s"] * row["sample_rate"]), name
        if name not in ("truncated.mp3", "corrupt.mp3"):  # these lose what could not be decoded
            assert abs(row["duration_s"] - 31367 / 16000) < 0.13, (name, row["duration_s"])
    assert 0.5 < rows["truncated.mp3"]["duration_s"] < 1.5
    assert "truncated file?" in rows["truncated.mp3"]["warning"]
    assert "decoder: " in rows["corrupt.mp3"]["warning"]
    assert 1.0 < rows["corrupt.mp3"]["duration_s"] < 1.97
    assert "2 channels downmixed" in rows["stereo.wav"]["warning"]
    assert rows["narrow8k.wav"]["sample_rate"] == 8000
    # --subtype keep (the default): 16-bit in, 16-bit out; 24-bit in, 24-bit out; decoded MP3: float
    subtypes = {
        n: sf.info(r["output_uri"].removeprefix("file://")).subtype for n, r in rows.items()
    }
    assert subtypes["pcm16.wav"] == subtypes["stereo.wav"] == subtypes["narrow8k.wav"] == "PCM_16"
    assert subtypes["pcm24.wav"] == "PCM_24"
    assert subtypes["speech.mp3"] == subtypes["speech.m4a"] == "FLOAT"
    out_fd, err_fd = capfd.readouterr()
    assert "Xing" not in err_fd + out_fd and "Header missing" not in err_fd + out_fd  # nothing raw


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("wav", "PCM_24"), ("wav", "FLOAT"), ("flac", "PCM_16")]
)
def test_subtype_chooses_the_output_sample_format(shared_data, tmp_path, fmt, subtype):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    x, sr = sf.read(shared_data / "pairs/voicebank_demand/noisy/p287_001.flac", dtype="float32")
    sf.write(inp / "a.wav", x, sr, subtype="PCM_16")
    args = ["enhance", str(inp), str(out), "--local", "--no-emotion", "--format", fmt]
    r = CliRunner().invoke(main, [*args, "--subtype", subtype])
    assert r.exit_code == 0, r.output
    info = sf.info(out / f"a.{fmt}")
    assert (info.subtype, info.frames) == (subtype, len(x))


def test_flac_cannot_be_float(tmp_path, shared_data):
    src = shared_data / "pairs/voicebank_demand/noisy"
    r = CliRunner().invoke(
        main, ["enhance", str(src), str(tmp_path / "o"), "--local", "--format", "flac",
               "--subtype", "FLOAT"],
    )  # fmt: skip
    assert r.exit_code == 2 and "cannot be stored as FLAC" in r.output, r.output


@pytest.mark.parametrize(("fmt", "codec"), [("ogg", "VORBIS"), ("opus", "OPUS")])
def test_lossy_outputs_are_named_by_format_and_evaluated(shared_data, tmp_path, fmt, codec):
    """Ogg Vorbis / Opus outputs: suffix of the format, the codec, the length (Opus: a 22.05 kHz
    input is written at 48 kHz, a rate it encodes), and evaluate reads them back."""
    import numpy as np
    import soxr

    pairs = shared_data / "pairs/voicebank_demand"
    inp, out, clean = tmp_path / "in", tmp_path / "out", tmp_path / "clean"
    inp.mkdir()
    clean.mkdir()
    x, sr = sf.read(pairs / "noisy/p287_001.flac", dtype="float32")
    c, _ = sf.read(pairs / "clean/p287_001.flac", dtype="float32")
    sf.write(inp / "a.wav", x, sr, subtype="PCM_16")
    sf.write(clean / "a.wav", c, sr)
    x22 = soxr.resample(x, sr, 22050)
    sf.write(inp / "b.wav", x22, 22050, subtype="PCM_16")
    sf.write(clean / "b.wav", soxr.resample(c, sr, 22050), 22050)
    args = ["enhance", str(inp), str(out), "--local", "--no-emotion", "--format", fmt]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    a, b = sf.info(out / f"a.{fmt}"), sf.info(out / f"b.{fmt}")
    assert (a.format, a.subtype, b.format, b.subtype) == ("OGG", codec, "OGG", codec)
    assert (a.samplerate, a.frames) == (sr, len(x))
    b_sr = 48000 if fmt == "opus" else 22050
    assert b.samplerate == b_sr and abs(b.frames - round(len(x22) * b_sr / 22050)) <= 1
    assert not list(out.glob("*.wav"))
    rows = pq.read_table(out / "results").to_pylist()
    assert sorted(r["output_uri"].rsplit(".", 1)[1] for r in rows) == [fmt, fmt]
    r = CliRunner().invoke(
        main, ["evaluate", str(out), "--references", str(clean), "--metrics", "si_sdr", "--local"]
    )
    assert r.exit_code == 0 and "scored 2/2 files" in r.output, r.output
    m = pq.read_table(out / "metrics").to_pandas()
    assert np.isfinite(m["si_sdr"]).all() and (m["si_sdr_i"] > -3).all(), m[["si_sdr", "si_sdr_i"]]


def test_a_subtype_the_format_cannot_store_is_a_usage_error(tmp_path, shared_data):
    src = shared_data / "pairs/voicebank_demand/noisy"
    args = ["enhance", str(src), str(tmp_path / "o"), "--local", "--format", "ogg"]
    r = CliRunner().invoke(main, [*args, "--subtype", "PCM_16"])
    assert r.exit_code == 2, r.output
    assert (
        "subtype='PCM_16' cannot be stored as OGG (lossy Vorbis only): VORBIS (or keep)" in r.output
    )
