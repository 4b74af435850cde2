"""Feature transform configs (STFT magnitudes, log-mel) and their hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from batchsep.config import Config, register_config
from batchsep.dsp.stft import StftConfig
from batchsep.errors import ParameterError

FEATURES_VERSION = "1"
"""Bumped whenever the computation of a feature changes (it enters every transform hash)."""


@register_config("stft_features")
@dataclass(frozen=True)
class StftFeatures(Config):
    """STFT magnitude features of a prepare run (defaults: :class:`~batchsep.dsp.StftConfig`'s)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    window: Literal["sqrt_hann", "hann"] = "sqrt_hann"
    noise_mag: bool = True
    psa_target: bool = False

    def __post_init__(self) -> None:
        StftConfig(self.sample_rate, self.n_fft, self.hop_length, self.window)  # validates

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def columns(self) -> list[str]:
        return (
            ["noisy_mag", "clean_mag"]
            + ["noise_mag"] * self.noise_mag
            + ["psa_target"] * self.psa_target
        )

    def n_frames(self, n_samples: int) -> int:
        return 1 + max(n_samples, self.n_fft // 2 + 1) // self.hop_length


@register_config("logmel_features")
@dataclass(frozen=True)
class LogMelFeatures(Config):
    """80-band log-power mel spectrogram (dB) of every file of a scan run (:func:`dsp.mel.log_mel`)."""

    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 400
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0

    def __post_init__(self) -> None:
        if self.n_mels < 1 or self.n_fft < 2 or not 1 <= self.hop_length <= self.n_fft:
            raise ParameterError(
                f"n_mels={self.n_mels}, n_fft={self.n_fft}, hop_length={self.hop_length}: "
                "need n_mels >= 1, n_fft >= 2, 1 <= hop_length <= n_fft"
            )

    @property
    def n_bins(self) -> int:
        return self.n_mels

    def columns(self) -> list[str]:
        return ["logmel"]

    def n_frames(self, n_samples: int) -> int:
        return 1 + max(n_samples, self.n_fft // 2 + 1) // self.hop_length


FeatureConfig = StftFeatures | LogMelFeatures


def transform_hash(config: FeatureConfig) -> str:
    """Hash of the transform: its parameters and :data:`FEATURES_VERSION`."""
    text = FEATURES_VERSION + config.to_json()
    return hashlib.sha256(text.encode()).hexdigest()[:16]
