"""Shared by the input-format tests: real speech encoded by PyAV (FFmpeg) into the compressed formats users
keep speech in, and the broken files they meet (a truncated MP3, one with garbage in the middle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SPEECH = "pairs/voicebank_demand/noisy/p287_001.flac"
"""A real 16 kHz speech excerpt of ../shared/data (1.96 s, 31367 frames)."""

COMPRESSED = {  # name: (codec, container format, rate)
    "speech.mp3": ("libmp3lame", None, None),
    "speech.m4a": ("aac", "ipod", None),
    "speech.mp4": ("aac", "mp4", None),
    "speech.opus": ("libopus", "ogg", 48000),
    "speech.webm": ("libopus", "webm", 48000),
}


def encode(
    path: Path, x: np.ndarray, sr: int, codec: str, fmt: str | None, rate: int | None
) -> None:
    """Encode mono float ``x`` at ``sr`` into ``path`` with PyAV (``rate``: the codec's own rate)."""
    import av

    with av.open(str(path), "w", format=fmt) as c:
        stream = c.add_stream(codec, rate=rate or sr)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            x[None, :].astype(np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)


def make_corpus(data_root: Path, folder: Path) -> dict[str, float]:
    """Write the compressed formats, broken MP3s, PCM variants and a non-audio file into ``folder``;
    return each audio file's expected duration in seconds (None-free: broken ones map to their kind)."""
    x, sr = sf.read(data_root / SPEECH, dtype="float32")
    folder.mkdir(parents=True, exist_ok=True)
    for name, (codec, fmt, rate) in COMPRESSED.items():
        encode(folder / name, x, sr, codec, fmt, rate)
    mp3 = (folder / "speech.mp3").read_bytes()
    (folder / "truncated.mp3").write_bytes(mp3[: len(mp3) // 2])
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
    (folder / "corrupt.mp3").write_bytes(mp3[:2000] + garbage + mp3[2500:])
    (folder / "not_really.mp3").write_text("this is a text file with an audio name\n" * 50)
    sf.write(folder / "pcm16.wav", x, sr, subtype="PCM_16")
    sf.write(folder / "pcm24.wav", x, sr, subtype="PCM_24")
    sf.write(folder / "stereo.wav", np.stack([x, 0.5 * x], axis=1), sr, subtype="PCM_16")
    import soxr

    sf.write(folder / "narrow8k.wav", soxr.resample(x, sr, 8000), 8000, subtype="PCM_16")
    (folder / "notes.txt").write_text("not audio")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return {"frames": len(x), "sr": sr}
