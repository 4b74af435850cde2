"""Output sample formats: ``keep`` keeps a 16/24-bit PCM input's in WAV; integer formats clip, float does not."""

from __future__ import annotations

import pytest

from batchsep.errors import ParameterError
from batchsep.io import audio


@pytest.mark.parametrize(
    ("fmt", "subtype", "input_subtype", "expected"),
    [
        ("wav", "keep", "PCM_16", "PCM_16"),
        ("wav", "keep", "PCM_24", "PCM_24"),
        ("wav", "keep", "FLOAT", "FLOAT"),
        ("wav", "keep", "MP3FLOAT", "FLOAT"),  # a decoded MP3
        ("wav", "keep", "PCM_U8", "FLOAT"),
        ("wav", "keep", None, "FLOAT"),
        ("flac", "keep", "PCM_16", "PCM_24"),
        ("wav", "PCM_24", "PCM_16", "PCM_24"),
        ("flac", "PCM_16", "FLOAT", "PCM_16"),
    ],
)
def test_output_subtype(fmt, subtype, input_subtype, expected):
    assert audio.output_subtype(fmt, subtype, input_subtype) == expected


def test_subtype_checks_and_clipping():
    audio.check_subtype("wav", "FLOAT")
    with pytest.raises(ParameterError, match="cannot be stored as FLAC"):
        audio.check_subtype("flac", "FLOAT")
    with pytest.raises(ParameterError, match="must be one of"):
        audio.check_subtype("wav", "PCM_8")
    assert audio.clips_on_write("wav", "PCM_16") and not audio.clips_on_write("wav", "FLOAT")
    assert audio.clips_on_write("flac") and not audio.clips_on_write("wav")


@pytest.mark.parametrize(
    ("fmt", "subtype", "expected"),
    [("ogg", "keep", "VORBIS"), ("opus", "keep", "OPUS"), ("ogg", "VORBIS", "VORBIS"),
     ("flac", "PCM_24", "PCM_24")],
)  # fmt: skip
def test_lossy_formats_take_their_codec(fmt, subtype, expected):
    audio.check_subtype(fmt, subtype)
    assert audio.output_subtype(fmt, subtype, "PCM_16") == expected
    assert audio.clips_on_write(fmt, expected)  # full scale: lossy codecs clip like integers


@pytest.mark.parametrize(
    ("fmt", "subtype", "message"),
    [
        ("ogg", "PCM_16", "subtype='PCM_16' cannot be stored as OGG (lossy Vorbis only): VORBIS"),
        ("opus", "VORBIS", "cannot be stored as OPUS (lossy Opus only): OPUS (or keep)"),
        ("wav", "OPUS", "cannot be stored as WAV: PCM_16 or PCM_24 or FLOAT (or keep)"),
        ("flac", "VORBIS", "cannot be stored as FLAC (integers only): PCM_16 or PCM_24"),
        ("mp3", "keep", "format='mp3' must be one of wav, flac, ogg, opus"),
    ],
)
def test_subtype_a_format_cannot_store_is_refused_saying_what_it_can(fmt, subtype, message):
    with pytest.raises(ParameterError) as e:
        audio.check_subtype(fmt, subtype)
    assert message in str(e.value)


def test_opus_writes_only_its_rates():
    assert audio.output_rate("opus", "keep", 16000) == 16000
    assert audio.output_rate("opus", "keep", 22050) == 48000
    assert audio.output_rate("opus", "keep", 44100) == 48000
    assert audio.output_rate("ogg", "keep", 22050) == 22050
    assert audio.output_rate("wav", 16000, 44100) == 16000


@pytest.mark.parametrize("fmt", ["ogg", "opus"])
def test_encode_lossy_round_trip(fmt):
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    y, sr = sf.read(io.BytesIO(audio.encode(x, 16000, fmt=fmt)), dtype="float32")
    info = sf.info(io.BytesIO(audio.encode(x, 16000, fmt=fmt)))
    assert sr == 16000 and info.format == "OGG" and info.subtype == audio.ENCODE_FORMATS[fmt][1]
    assert abs(len(y) - len(x)) <= 960  # whole file back (Opus: up to one 20 ms frame of padding)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
