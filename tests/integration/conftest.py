"""Fixtures for integration tests: a bad-input corpus and a local Ray cluster owned by the test session."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000


def tone(seconds: float, sr: int = SR, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_bad_corpus(root: Path) -> dict[str, str | None]:
    """Create every kind of bad (and awkward but good) input under ``root``.

    Returns rel_path → expected error substring (None when the file must scan as ``ok``).
    Non-audio files are not in the mapping (they are skipped).
    """
    expected: dict[str, str | None] = {}
    root.mkdir(parents=True, exist_ok=True)

    (root / "empty.wav").write_bytes(b"")
    expected["empty.wav"] = "empty file (0 bytes)"

    good = root / "good.wav"
    sf.write(good, tone(1.0), SR, subtype="PCM_16")
    expected["good.wav"] = None
    (root / "truncated_header.wav").write_bytes(good.read_bytes()[:20])
    expected["truncated_header.wav"] = "Malformed"

    # a temporary left by an interrupted batchsep write (this folder was an OUT): not an input at all
    (root / ".batchsep-tmp-0f3a-good.wav").write_bytes(good.read_bytes()[:100])

    (root / "text.wav").write_text("this is not audio, just text in a .wav file\n" * 20)
    expected["text.wav"] = "not a recognised audio format"

    # cut off mid-data: the header declares 5 s, a third of the bytes are left (libsndfile reads them
    # silently for WAV; it fails to decode the FLAC)
    sf.write(root / "whole_5s.wav", tone(5.0), SR, subtype="PCM_16")
    data = (root / "whole_5s.wav").read_bytes()
    (root / "truncated_data.wav").write_bytes(data[: len(data) // 3])
    (root / "whole_5s.wav").unlink()
    expected["truncated_data.wav"] = (
        "truncated file: header declares 5.00 s of audio, 1.67 s present"
    )
    sf.write(root / "whole_5s.flac", tone(5.0), SR)
    data = (root / "whole_5s.flac").read_bytes()
    (root / "truncated_data.flac").write_bytes(data[: len(data) // 3])
    (root / "whole_5s.flac").unlink()
    expected["truncated_data.flac"] = "truncated or corrupt file: header declares 5.00 s of audio"
    for name, fmt in (("truncated_data.aiff", "AIFF"), ("truncated_data.au", "AU")):
        buf = io.BytesIO()
        sf.write(buf, tone(5.0), SR, format=fmt, subtype="PCM_16")
        (root / name).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
        expected[name] = "truncated file: header declares 5.00 s of audio, 1.6"

    bad = tone(1.0)
    bad[100] = np.nan
    sf.write(root / "nan_float.wav", bad, SR, subtype="FLOAT")
    expected["nan_float.wav"] = "NaN/Inf samples (first at frame 100, 0.01 s)"
    bad = tone(1.0)
    bad[-5] = np.inf
    sf.write(root / "inf_float.wav", bad, SR, subtype="FLOAT")
    expected["inf_float.wav"] = "NaN/Inf samples (first at frame 15995, 1.00 s)"

    sf.write(root / "zero_frames.wav", np.zeros(0, dtype=np.float32), SR)
    expected["zero_frames.wav"] = "no audio frames"

    sf.write(root / "stereo_48k.wav", tone(0.5, 48000, channels=2), 48000)
    expected["stereo_48k.wav"] = None
    sf.write(root / "rate_8k.wav", tone(0.5, 8000), 8000)
    expected["rate_8k.wav"] = None
    sf.write(root / "pcm24.wav", tone(0.5), SR, subtype="PCM_24")
    expected["pcm24.wav"] = None
    sf.write(root / "silence.flac", np.zeros(SR, dtype=np.float32), SR)
    expected["silence.flac"] = None

    name = "ünïcode näme with spaces — ✓.wav"
    sf.write(root / name, tone(0.25), SR)
    expected[name] = None

    deep = root.joinpath(*[f"level{i}" for i in range(12)])
    deep.mkdir(parents=True)
    sf.write(deep / "nested.flac", tone(0.25), SR)
    expected["/".join([f"level{i}" for i in range(12)] + ["nested.flac"])] = None

    os.symlink(root, root / "loop_dir")  # directory symlink to an ancestor: must not be followed
    os.symlink("self_loop.wav", root / "self_loop.wav")  # file symlink loop: error row
    expected["self_loop.wav"] = "symbolic links"

    (root / "README.txt").write_text("not audio, skipped by extension\n")
    return expected


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small, randomly initialised LSTM mask model saved as a checkpoint folder."""
    import torch

    from batchsep.io.checkpoint import write_checkpoint
    from batchsep.models import build_model, serialize

    torch.manual_seed(0)
    model = build_model("lstm", {"n_layers": 1, "hidden": 32})
    uri = str(tmp_path_factory.mktemp("model") / "lstm")
    write_checkpoint(uri, serialize(model))
    return uri


@pytest.fixture
def bad_corpus(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    root = tmp_path / "corpus"
    return root, write_bad_corpus(root)


@pytest.fixture(scope="session")
def _ray_session() -> Iterator[None]:
    """Stops the session's embedded Ray at the end (never `ray stop`: other Rays on the host live on)."""
    from batchsep.distributed import runtime

    yield
    runtime.shutdown()


@pytest.fixture
def ray_local(_ray_session: None) -> None:
    """An embedded 2-CPU Ray, started once and shared by the session's tests; (re)started on demand
    when a test before this one connected to a cluster of its own (tests/integration/test_multinode.py)."""
    from batchsep.distributed import runtime

    runtime.init(num_cpus=2)
