"""Compressed formats through FFmpeg (PyAV): decoded in bounded blocks, lengths as decoded, messages kept."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from format_helpers import COMPRESSED, SPEECH, encode

from batchsep.errors import AudioDecodeError
from batchsep.io import audio

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def speech(shared_data):
    x, sr = sf.read(shared_data / SPEECH, dtype="float32")
    return x, sr


@pytest.mark.parametrize("name", sorted(COMPRESSED))
def test_compressed_formats_decode_in_blocks_to_about_their_length(tmp_path, speech, name):
    x, sr = speech
    codec, fmt, rate = COMPRESSED[name]
    path = tmp_path / name
    encode(path, x, sr, codec, fmt, rate)
    with path.open("rb") as fobj, audio.open_stream(fobj) as f:
        exact = getattr(f, "frames_exact", True)  # Ogg Opus: libsndfile, an exact length
        assert exact == name.endswith(".opus") and f.channels == 1
        blocks = list(audio.read_blocks(f, 4096))
        assert all(b.shape[0] == 4096 for b in blocks[:-1]) and blocks[-1].shape[0] <= 4096
        n = sum(b.shape[0] for b in blocks)
        assert f.samplerate == (rate or sr)
        seconds = n / f.samplerate
        # MP3 and Opus decode to the exact length; AAC keeps its encoder's priming and padding (<= 2048)
        assert abs(seconds - len(x) / sr) <= 2048 / sr, (name, seconds)
        if name.endswith((".mp3", ".opus", ".webm")):
            assert n == round(len(x) * f.samplerate / sr)
        assert getattr(f, "warnings", []) == []
        if exact:
            assert n == f.frames
    y = np.concatenate(blocks)[:, 0]
    if f.samplerate == sr:  # the decoded audio is the speech (lossy: correlated, not equal)
        lag = int(np.argmax(np.correlate(y[:8000], x[:4000], mode="valid")))
        seg = y[lag : lag + len(x) - 4000]
        assert np.corrcoef(seg, x[: len(seg)])[0, 1] > 0.9


def test_a_truncated_mp3_is_decoded_as_far_as_it_goes_and_says_so(tmp_path, speech):
    x, sr = speech
    encode(tmp_path / "a.mp3", x, sr, "libmp3lame", None, None)
    data = (tmp_path / "a.mp3").read_bytes()
    with audio.open_stream(io.BytesIO(data[: len(data) // 2])) as f:
        n = sum(b.shape[0] for b in audio.read_blocks(f, 1 << 14))
    assert 0 < n < 0.7 * len(x)
    assert any("truncated file?" in w for w in f.warnings), f.warnings


def test_garbage_inside_an_mp3_is_reported_not_printed(tmp_path, speech, capfd):
    x, sr = speech
    encode(tmp_path / "a.mp3", x, sr, "libmp3lame", None, None)
    data = (tmp_path / "a.mp3").read_bytes()
    bad = data[:2000] + bytes(range(256)) * 2 + data[2500:]
    with audio.open_stream(io.BytesIO(bad)) as f:
        n = sum(b.shape[0] for b in audio.read_blocks(f, 1 << 14))
    assert n > 0.5 * len(x)
    assert f.warnings and all(w.startswith("decoder: ") for w in f.warnings), f.warnings
    out, err = capfd.readouterr()
    assert "Header missing" not in err + out and "resync" not in err + out  # not printed raw


def test_no_audio_track_and_not_audio_are_readable_errors(tmp_path):
    with pytest.raises(AudioDecodeError, match="not a recognised audio format"):
        audio.open_stream(io.BytesIO(b"hello, not audio at all\n" * 100))
    import av

    path = tmp_path / "video_only.mp4"
    with av.open(str(path), "w") as c:  # a video track and no audio track
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(
                np.full((32, 32, 3), i * 40, np.uint8), format="rgb24"
            )
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with pytest.raises(AudioDecodeError, match="no audio track"):
        audio.open_stream(path.open("rb"))


def test_the_suffix_list_is_the_one_the_scan_uses():
    for name in ("a.m4a", "b.AAC", "c.mp4", "d.webm", "e.opus", "f.ogg", "g.mp3", "h.wma", "i.mka"):
        assert audio.is_audio_name(name), name
    assert not audio.is_audio_name("cover.jpg") and not audio.is_audio_name("notes.txt")
