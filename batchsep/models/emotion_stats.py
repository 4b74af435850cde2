"""``emotion-stats``: a small ensemble of MLPs over utterance statistics (:mod:`batchsep.dsp.emotion_stats`).

Input: ``[B, n_features]`` vectors of :func:`batchsep.dsp.emotion_stats.emotion_stats` (389 values of
MFCC, spectral shape, energy, F0, timing, log-mel band, spectral slope and formant statistics). The
module standardises them with the training set's mean and std (buffers ``mean``, ``scale``, set by
:meth:`EmotionStats.set_standardizer`), runs ``n_members`` independently initialised MLPs (one hidden
ReLU layer, dropout) and averages their softmax outputs; ``forward`` returns the log of that average, so
``softmax(forward(x) / temperature)`` is the calibrated probability
:meth:`~batchsep.models.emotion.EmotionClassifier.predict_proba` gives.
``temperature`` (config) is fitted on held-out actors by the trainer (temperature scaling, Guo et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from batchsep.config import Config, register_config
from batchsep.dsp.emotion_stats import N_STATS
from batchsep.errors import ParameterError
from batchsep.models.base import MODELS
from batchsep.models.emotion import EmotionClassifier, _accuracy


@register_config("emotion-stats")
@dataclass(frozen=True)
class EmotionStatsConfig(Config):
    """MLP ensemble over utterance statistics; ``temperature`` divides the log-probabilities."""

    n_features: int = N_STATS
    n_classes: int = 8
    hidden: int = 256
    n_members: int = 5
    dropout: float = 0.2
    label_smoothing: float = 0.0
    input_noise: float = 0.1
    temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_features", "hidden", "n_members"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name}={getattr(self, name)} must be >= 1")
        if self.n_classes < 2:
            raise ParameterError(f"n_classes={self.n_classes} must be >= 2")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ParameterError(
                f"dropout={self.dropout}, label_smoothing={self.label_smoothing} must be in [0, 1)"
            )
        if self.input_noise < 0 or not self.temperature > 0:
            raise ParameterError(
                f"input_noise={self.input_noise} must be >= 0, temperature={self.temperature} > 0"
            )


@MODELS.register("emotion-stats")
class EmotionStats(EmotionClassifier):
    """Averaged MLP ensemble over standardised utterance statistics (see the module docstring)."""

    name = "emotion-stats"
    config_class = EmotionStatsConfig
    config: EmotionStatsConfig
    input_kind = "stats"
    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, config: EmotionStatsConfig | None = None) -> None:
        super().__init__(config or EmotionStatsConfig())
        c = self.config
        self.n_features, self.n_classes = c.n_features, c.n_classes
        self.register_buffer("mean", torch.zeros(c.n_features))
        self.register_buffer("scale", torch.ones(c.n_features))
        self.members = nn.ModuleList(
            nn.Sequential(
                nn.Linear(c.n_features, c.hidden),
                nn.ReLU(),
                nn.Dropout(c.dropout),
                nn.Linear(c.hidden, c.n_classes),
            )
            for _ in range(c.n_members)
        )

    def set_standardizer(self, x: torch.Tensor) -> None:
        """Set ``mean`` and ``scale`` from training features ``x [n, n_features]`` (std floored at 1e-6)."""
        self.check_input(x)
        self.mean.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-6))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ParameterError unless ``x`` is a finite float tensor ``[B, n_features]``."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ParameterError(f"stats must be a floating-point tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.n_features or x.shape[0] < 1:
            raise ParameterError(
                f"stats shape={tuple(x.shape)} must be [B, {self.n_features}] with B >= 1"
            )
        if not bool(torch.isfinite(x).all()):
            raise ParameterError("stats contain NaN or Inf values")

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        z = (x - self.mean) / self.scale
        return [m(z) for m in self.members]

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        """Log of the members' mean softmax, ``[B, n_classes]`` (uncalibrated: temperature 1)."""
        self.check_input(stats)
        probs = torch.stack([F.softmax(g, -1) for g in self.member_logits(stats)]).mean(0)
        return torch.log(probs.clamp_min(1e-12))

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum over members of the cross-entropy (each member sees its own input noise and dropout)."""
        for key in ("stats", "label"):
            if key not in batch:
                raise ParameterError(f"batch is missing key {key!r}; has {sorted(batch)}")
        x, y = batch["stats"], batch["label"]
        self.check_input(x)
        c = self.config
        losses, logits = [], []
        for m in self.members:
            z = (x - self.mean) / self.scale
            if self.training and c.input_noise > 0:
                z = z + c.input_noise * torch.randn_like(z)
            g = m(z)
            logits.append(g)
            losses.append(F.cross_entropy(g, y, label_smoothing=c.label_smoothing))
        loss = torch.stack(losses).sum()
        mean_logits = torch.stack(logits).mean(0).detach()
        return loss, {"loss": float(loss.detach()) / len(losses), "acc": _accuracy(mean_logits, y)}
