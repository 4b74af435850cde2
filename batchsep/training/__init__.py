"""Losses, the shared training loop and learning curves (device-agnostic; no I/O except via callbacks)."""

from batchsep.models.losses import MASK_LOSSES, frame_mask, mask_loss, msa, psa, psa_target
from batchsep.training.curves import learning_curves, render_learning_curves
from batchsep.training.loop import (
    Callback,
    EpochRecord,
    LossModule,
    TrainConfig,
    TrainerState,
    TrainResult,
    fit,
)

__all__ = [
    "MASK_LOSSES",
    "Callback",
    "EpochRecord",
    "LossModule",
    "TrainConfig",
    "TrainResult",
    "TrainerState",
    "fit",
    "frame_mask",
    "learning_curves",
    "mask_loss",
    "msa",
    "psa",
    "psa_target",
    "render_learning_curves",
]
