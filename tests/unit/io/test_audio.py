"""Audio decode helpers: truncation detection, exact NaN/Inf positions, empty input, clipping counts."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from batchsep.errors import AudioDecodeError
from batchsep.io import audio

SR = 16000


def sine(seconds: float, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def encoded(x: np.ndarray, sr: int = SR, **kw) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, **{"format": "WAV", **kw})
    return buf.getvalue()


@pytest.mark.parametrize(
    "kw",
    [
        {"format": "WAV", "subtype": "PCM_16"},
        {"format": "WAV", "subtype": "FLOAT"},
        {"format": "WAV", "subtype": "PCM_24", "endian": "BIG"},  # RIFX
        {"format": "RF64", "subtype": "PCM_16"},
        {"format": "W64", "subtype": "PCM_16"},
        {"format": "W64", "subtype": "FLOAT"},
        {"format": "AIFF", "subtype": "PCM_16"},
        {"format": "AIFF", "subtype": "PCM_24"},
        {"format": "AIFF", "subtype": "FLOAT"},  # AIFF-C, fl32
        {"format": "AIFF", "subtype": "ULAW"},  # AIFF-C, ulaw
        {"format": "AU", "subtype": "PCM_16"},
        {"format": "AU", "subtype": "PCM_24", "endian": "LITTLE"},  # dns.
        {"format": "AU", "subtype": "ALAW"},
    ],
)
def test_truncated_uncompressed_file_is_detected(kw):
    """libsndfile decodes the part present of these as a valid, shorter file: the header is checked."""
    data = encoded(sine(5.0), **kw)
    cut = data[: len(data) // 3]
    assert audio.truncation_reason(io.BytesIO(data)) is None
    assert sf.info(io.BytesIO(cut)).frames < SR * 5  # what libsndfile alone makes of it
    reason = audio.truncation_reason(io.BytesIO(cut))
    assert reason is not None
    assert reason.startswith("truncated file: header declares 5.00 s of audio, 1.6")
    assert reason.endswith(" s present")
    for fn in (audio.probe, audio.decode):
        with pytest.raises(AudioDecodeError, match=r"truncated file: header declares 5\.00 s"):
            fn(cut)
    with pytest.raises(AudioDecodeError, match="truncated file"):
        list(audio.iter_blocks(io.BytesIO(cut)))


def test_truncation_message_exact():
    data = encoded(sine(5.0), subtype="PCM_16")
    expect = "truncated file: header declares 5.00 s of audio, 1.67 s present"
    assert audio.truncation_reason(io.BytesIO(data[: len(data) // 3])) == expect


def test_truncation_check_keeps_position_and_ignores_other_data():
    data = encoded(sine(1.0), subtype="PCM_16")
    f = io.BytesIO(data[:-1000])
    f.seek(7)
    assert audio.truncation_reason(f) is not None
    assert f.tell() == 7
    for other in (b"", b"RIFF", b"not audio at all" * 10, encoded(sine(1.0), format="FLAC")):
        assert audio.truncation_reason(io.BytesIO(other)) is None
    # a streaming writer's placeholder size (unknown length) is not truncation
    pos = data.index(b"data") + 4
    unknown = data[:pos] + struct.pack("<I", 0xFFFFFFFF) + data[pos + 4 :]
    assert audio.truncation_reason(io.BytesIO(unknown[:-1000])) is None
    # a partial last frame (fewer bytes than one frame missing) is not reported
    assert audio.truncation_reason(io.BytesIO(data[:-1])) is None
    # chunks after the data chunk (LIST, ...) may be cut without losing audio
    assert audio.truncation_reason(io.BytesIO(data + b"LIST" + struct.pack("<I", 100))) is None


def test_truncation_check_other_containers_edge_cases():
    # AU written to a pipe declares an unknown data size: not truncation
    au = encoded(sine(1.0), format="AU", subtype="PCM_16")
    unknown = au[:8] + struct.pack(">I", 0xFFFFFFFF) + au[12:]
    assert audio.truncation_reason(io.BytesIO(unknown[:-1000])) is None
    # a partial last frame is not reported, in any container
    for fmt in ("AIFF", "W64", "AU"):
        data = encoded(sine(1.0), format=fmt, subtype="PCM_16")
        assert audio.truncation_reason(io.BytesIO(data)) is None
        assert audio.truncation_reason(io.BytesIO(data[:-1])) is None
        assert audio.truncation_reason(io.BytesIO(data[:-2])) is not None
    # a compressed AIFF-C (IMA ADPCM) is not measured in frames x width: not judged
    ima = encoded(sine(1.0), format="AIFF", subtype="IMA_ADPCM")
    assert audio.truncation_reason(io.BytesIO(ima[: len(ima) // 2])) is None


def test_truncated_flac_is_a_readable_error():
    data = encoded(sine(5.0), format="FLAC")
    for cut in (len(data) // 3, 100):
        with pytest.raises(
            AudioDecodeError, match=r"truncated or corrupt file: header declares 5\.00 s"
        ):
            audio.probe(data[:cut])


@pytest.mark.parametrize("block_frames", [1000, 20000, 20001, 1 << 18])
def test_nan_inf_first_frame_exact(block_frames):
    x = sine(2.0, 32000)
    x[20000] = np.nan
    x[30000] = -np.inf
    data = encoded(x, 32000, subtype="FLOAT")
    want = r"audio contains NaN/Inf samples \(first at frame 20000, 0\.62 s\)$"
    with pytest.raises(AudioDecodeError, match=want):
        list(audio.iter_blocks(data, block_frames=block_frames))
    with pytest.raises(AudioDecodeError, match=want):
        audio.probe(data)
    with pytest.raises(AudioDecodeError, match=want):
        audio.decode(data)


def test_nan_in_second_channel_and_all_nan():
    x = np.stack([sine(1.0), sine(1.0)], axis=1)
    x[777, 1] = np.nan
    with pytest.raises(AudioDecodeError, match=r"first at frame 777, 0\.05 s\)"):
        audio.probe(encoded(x, subtype="FLOAT"))
    with pytest.raises(AudioDecodeError, match=r"first at frame 0, 0\.00 s\)"):
        audio.probe(encoded(np.full(SR, np.nan, np.float32), subtype="FLOAT"))


def test_first_nonfinite_frame():
    b = np.zeros((10, 2), np.float32)
    assert audio.first_nonfinite_frame(b) is None
    b[7, 1] = np.inf
    b[9, 0] = np.nan
    assert audio.first_nonfinite_frame(b) == 7


def test_empty_input_same_reason_for_bytes_and_file_objects():
    for src in (b"", io.BytesIO(b"")):
        with pytest.raises(AudioDecodeError, match=r"^empty file \(0 bytes\)$"):
            audio.probe(src)
    with pytest.raises(AudioDecodeError, match=r"^empty file \(0 bytes\)$"):
        audio.open_stream(io.BytesIO(b""))


def test_good_audio_still_probes():
    info = audio.probe(encoded(sine(1.0), subtype="PCM_16"))
    assert info.frames == SR and info.sample_rate == SR
    with audio.open_stream(io.BytesIO(encoded(sine(0.5), format="FLAC"))) as f:
        assert f.frames == SR // 2


def test_clip_count():
    y, n = audio.clip_to_full_scale(np.array([0.5, 1.0, 1.5, -2.0, -1.0], np.float32))
    assert n == 2
    np.testing.assert_array_equal(y, [0.5, 1.0, 1.0, -1.0, -1.0])
    assert audio.clips_on_write("flac") and not audio.clips_on_write("wav")
