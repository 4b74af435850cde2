"""Fixtures for the evaluation tests: synthetic speech-like signals and the real-data folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def make_speechlike(sr: int = 16000, dur: float = 3.0, seed: int = 0) -> np.ndarray:
    """Voiced-speech-like test signal: harmonics of a gliding f0 under a 3 Hz syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * dur)) / sr
    f0 = 120.0 + 30.0 * np.sin(2 * np.pi * 0.7 * t) + 10.0 * rng.standard_normal()
    phase = 2 * np.pi * np.cumsum(f0) / sr
    n_harm = int(min(30, (sr / 2 - 100) // 160))
    x = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, n_harm + 1))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0.0, None) ** 2 * (t > 0.3) * (t < dur - 0.3)
    return 0.3 * x * env + 1e-4 * rng.standard_normal(t.size)


@pytest.fixture
def speechlike() -> Callable[..., np.ndarray]:
    return make_speechlike


@pytest.fixture(scope="session")
def pairs_dir(shared_data: Path) -> Path:
    """The real VoiceBank-DEMAND pairs (``shared_data`` comes from tests/conftest.py)."""
    folder = shared_data / "pairs" / "voicebank_demand"
    if not (folder / "clean").is_dir():
        if os.environ.get("BATCHSEP_REQUIRE_REALDATA", "").lower() in {"1", "true", "yes", "on"}:
            pytest.fail(f"real data required but {folder} is missing")
        pytest.skip(f"real data pairs not found at {folder}")
    return folder
