"""The plain types the train stage's modules share (no imports of the stage's other modules).

:class:`DataOptions` (how a features run becomes training data), :class:`TrainJob` (what a training worker
needs; it travels to Ray Train workers) and :class:`TrainSummary` (what ``train`` returns). They live here so
that the driver, the data and batch sources, the outputs and the emotion trainers import them without
importing each other (issue 23: this broke the ``train`` import circle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from batchsep.errors import ParameterError

TRAINABLE_MODELS = (
    "snmf", "drnmf", "lstm", "blstm", "sce", "dc", "dae", "emotion-cnn", "emotion-vae",
    "emotion-stats",
)  # fmt: skip
"""The models ``batchsep train --model`` (and a ``train`` stage's ``model``) accepts; ``oracle`` is
registered but needs no training."""


@dataclass(frozen=True)
class DataOptions:
    """How a features run is turned into training data.

    Parameters
    ----------
    batch_size : int
        Utterances per batch (seed 001: 32).
    crop_frames : int or None
        Random crop of longer training utterances (seed 001: sequences of <= 500 frames); None: whole.
    train_fraction : float
        Share of the train mixtures used, in (0, 1] (seed 001: 1 and 0.1).
    seed : int
        Seeds the subset, the shuffling and the SNMF frame sampling.
    bucket_batches : int
        Batches per length bucket (see FeatureDataset).
    snmf_frames : int
        Frames sampled from the training subset for SNMF dictionary learning (per source).
    snmf_noise_from : {"noisy", "noise"}
        Learn the noise dictionary on noisy mixtures (seed 001) or on the noise alone.
    extra_columns : tuple of str
        Feature columns batches carry besides ``noisy_mag`` and ``clean_mag`` (e.g. ``noise_mag``).
    index_columns : tuple of (key, column, values)
        Integer labels batches carry: ``key`` int64 [B] is the position of the row's ``column`` value
        in ``values`` (-1 when absent), e.g. ``("speaker_idx", "speaker", ("1221", "1580", ...))``.
    """

    batch_size: int = 32
    crop_frames: int | None = 500
    train_fraction: float = 1.0
    seed: int = 0
    bucket_batches: int = 8
    snmf_frames: int = 20000
    snmf_noise_from: Literal["noisy", "noise"] = "noisy"
    extra_columns: tuple[str, ...] = ()
    index_columns: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.bucket_batches < 1 or self.snmf_frames < 1:
            raise ParameterError(
                f"batch_size={self.batch_size}, bucket_batches={self.bucket_batches}, "
                f"snmf_frames={self.snmf_frames} must all be >= 1"
            )
        if self.crop_frames is not None and self.crop_frames < 1:
            raise ParameterError(f"crop_frames={self.crop_frames} must be >= 1 (or None)")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ParameterError(f"train_fraction={self.train_fraction} must be in (0, 1]")
        if self.snmf_noise_from not in ("noisy", "noise"):
            raise ParameterError(
                f"snmf_noise_from={self.snmf_noise_from!r} must be 'noisy' or 'noise'"
            )


@dataclass(frozen=True)
class TrainJob:
    """Everything a training worker needs (plain values: it travels to Ray Train workers)."""

    model: str
    features_uri: str
    out_uri: str
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    data: DataOptions
    stft: dict[str, Any]
    init_uri: str | None = None
    data_info: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    verbose: bool = True
    input_level_db: float | None = None


@dataclass
class TrainSummary:
    """What ``train`` produced (``metrics`` is the content of ``out_uri/metrics.json``)."""

    model: str
    out_uri: str
    best_epoch: int
    best_valid_loss: float | None
    epochs: int
    param_count: int
    stop_reason: str | None
    wall_s: float
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metrics(cls, out_uri: str, m: Mapping[str, Any]) -> TrainSummary:
        return cls(
            str(m["model"]), out_uri, int(m.get("best_epoch", 0)), m.get("best_valid_loss"),
            int(m.get("epochs", 0)), int(m.get("param_count", 0)), m.get("stop_reason"),
            float(m.get("wall_s", 0.0)), dict(m),
        )  # fmt: skip


__all__ = ["TRAINABLE_MODELS", "DataOptions", "TrainJob", "TrainSummary"]
