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
