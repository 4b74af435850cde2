"""Speech-emotion models over ``[B, 80, 128]`` log-mel inputs: the seed's conv VAE and a small CNN.

Both map a batch of normalised log-mel spectrograms (see :func:`batchsep.dsp.mel.emotion_features`) to
logits over the 8 RAVDESS emotions :data:`EMOTIONS`, train through ``training_loss(batch)`` with
``batch = {"logmel": [B, n_mels, n_frames] float32, "label": [B] int64}`` (``label = -1``: unlabelled)
and give class probabilities with ``predict_proba``.

``emotion-vae`` (seed 003)
    1-D convolutions over time with the mel bands as channels: 80→64→32→16→16→128→256, kernel 4,
    stride 2, padding 1, ReLU; the 128 frames shrink to 2, and a linear layer maps the flattened
    256 × 2 features to 16 values, the latent mean μ and log-variance log σ² (8 each). (The seed's table
    lists "Linear 256 → 16"; with 128 input frames six stride-2 layers leave 2 time steps, which we keep
    by flattening.) The decoder mirrors it with transposed convolutions. Loss, per input element:
    ``(½‖x − x̂‖² + β·KL(q(z|x) ‖ N(0, I))) / (n_mels · n_frames) + w · CE(head(μ), y)``, the
    cross-entropy over labelled items only, so unlabelled items still train the ELBO (semi-supervised).
``emotion-cnn``
    Four blocks of 3×3 conv, batch norm, ReLU and 2×2 max-pool over the ``[1, 80, 128]`` image; the
    channels × remaining mel rows at each time step (frequency position is kept: pitch and formant
    levels matter), their mean and max over time, dropout and a linear layer. In training only:
    SpecAugment-style frequency and time masks, Gaussian noise and mixup of labelled items.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from batchsep.config import Config, register_config
from batchsep.errors import ParameterError
from batchsep.models.base import MODELS, BatchsepModel

EMOTIONS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
)  # fmt: skip
"""RAVDESS emotion names; index ``i`` is RAVDESS emotion code ``i + 1``."""

EMOTION_MODELS = ("emotion-cnn", "emotion-vae", "emotion-stats")
"""Registered names of the emotion models (the rest of :data:`batchsep.models.base.MODELS` enhance)."""

_VAE_CHANNELS = (64, 32, 16, 16, 128, 256)


class EmotionClassifier(BatchsepModel):
    """Shared input checks, ``forward(logmel) -> logits`` contract and ``predict_proba``."""

    n_mels: int
    n_frames: int
    n_classes: int

    def check_input(self, logmel: torch.Tensor) -> None:
        """Raise ParameterError unless ``logmel`` is a finite float tensor ``[B, n_mels, n_frames]``."""
        if not isinstance(logmel, torch.Tensor) or not logmel.is_floating_point():
            raise ParameterError(
                f"logmel must be a floating-point tensor, got {type(logmel).__name__}"
            )
        want = (self.n_mels, self.n_frames)
        if logmel.ndim != 3 or tuple(logmel.shape[1:]) != want or logmel.shape[0] < 1:
            raise ParameterError(
                f"logmel shape={tuple(logmel.shape)} must be [B, {want[0]}, {want[1]}] with B >= 1"
            )
        if not bool(torch.isfinite(logmel).all()):
            raise ParameterError("logmel contains NaN or Inf values")

    def unpack(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logmel, label)`` from a training batch, checked; labels must lie in ``[-1, n_classes)``."""
        for key in ("logmel", "label"):
            if key not in batch:
                raise ParameterError(f"batch is missing key {key!r}; has {sorted(batch)}")
        x, y = batch["logmel"], batch["label"]
        self.check_input(x)
        if y.dtype != torch.int64 or y.shape != (x.shape[0],):
            raise ParameterError(
                f"label dtype={y.dtype} shape={tuple(y.shape)} must be int64 [{x.shape[0]}]"
            )
        if bool(((y < -1) | (y >= self.n_classes)).any()):
            raise ParameterError(f"labels must be -1 (unlabelled) or in [0, {self.n_classes})")
        return x, y

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def predict_proba(self, logmel: torch.Tensor) -> torch.Tensor:
        """Class probabilities in eval mode, without gradients.

        Parameters
        ----------
        logmel : torch.Tensor [shape=(B, n_mels, n_frames)]

        Returns
        -------
        torch.Tensor [shape=(B, n_classes)]
            Softmax probabilities of the logits divided by the config's ``temperature`` (1 when it has
            none); each row sums to 1. The module's train/eval mode is restored.
        """
        self.check_input(logmel)
        was_training = self.training
        self.eval()
        t = float(getattr(self.config, "temperature", 1.0))
        try:
            return torch.softmax(self(logmel) / t, dim=-1)
        finally:
            self.train(was_training)


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean()) if y.numel() else float("nan")


@register_config("emotion-vae")
@dataclass(frozen=True)
class EmotionVaeConfig(Config):
    """Seed 003's VAE plus a classifier head on μ (``class_weight`` = w, ``beta`` = β)."""

    n_mels: int = 80
    n_frames: int = 128
    n_classes: int = 8
    latent_dim: int = 8
    head_hidden: int = 64
    beta: float = 1.0
    class_weight: float = 1.0

    def __post_init__(self) -> None:
        depth = 2 ** len(_VAE_CHANNELS)
        if self.n_frames < depth or self.n_frames % depth:
            raise ParameterError(f"n_frames={self.n_frames} must be a positive multiple of {depth}")
        for name in ("n_mels", "n_classes", "latent_dim", "head_hidden"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name}={getattr(self, name)} must be >= 1")
        if self.beta < 0 or self.class_weight < 0:
            raise ParameterError(
                f"beta={self.beta}, class_weight={self.class_weight} must both be >= 0"
            )


@MODELS.register("emotion-vae")
class EmotionVae(EmotionClassifier):
    """1-D conv VAE over time (seed 003) with a classifier head on the latent mean."""

    name = "emotion-vae"
    config_class = EmotionVaeConfig
    config: EmotionVaeConfig

    def __init__(self, config: EmotionVaeConfig | None = None) -> None:
        super().__init__(config or EmotionVaeConfig())
        c = self.config
        self.n_mels, self.n_frames, self.n_classes = c.n_mels, c.n_frames, c.n_classes
        chans = (c.n_mels, *_VAE_CHANNELS)
        enc: list[nn.Module] = []
        for a, b in itertools.pairwise(chans):
            enc += [nn.Conv1d(a, b, 4, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*enc)
        self._t_lat = c.n_frames // 2 ** len(_VAE_CHANNELS)
        flat = chans[-1] * self._t_lat
        self.to_latent = nn.Linear(flat, 2 * c.latent_dim)
        self.from_latent = nn.Linear(c.latent_dim, flat)
        dec: list[nn.Module] = []
        rev = chans[::-1]
        for i, (a, b) in enumerate(itertools.pairwise(rev)):
            dec.append(nn.ConvTranspose1d(a, b, 4, stride=2, padding=1))
            if i < len(rev) - 2:
                dec.append(nn.ReLU())
        self.decoder = nn.Sequential(*dec)
        self.head = nn.Sequential(
            nn.Linear(c.latent_dim, c.head_hidden), nn.ReLU(), nn.Linear(c.head_hidden, c.n_classes)
        )

    def encode(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, logvar)``, each ``[B, latent_dim]``, of ``logmel [B, n_mels, n_frames]``."""
        self.check_input(logmel)
        h = self.encoder(logmel).flatten(1)
        mu, logvar = self.to_latent(h).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[B, n_mels, n_frames]`` of latent codes ``z [B, latent_dim]``."""
        h = F.relu(self.from_latent(z)).view(z.shape[0], -1, self._t_lat)
        return self.decoder(h)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """Emotion logits ``[B, n_classes]`` from the latent mean."""
        mu, _ = self.encode(logmel)
        return self.head(mu)

    def elbo_terms(
        self, logmel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-item ``(recon, kl, mu, logvar)``: ``½‖x − x̂‖²`` and ``KL(q‖N(0, I))``, each ``[B]``.

        z is sampled by the reparameterisation trick in training mode and equals μ in eval mode.
        """
        mu, logvar = self.encode(logmel)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        recon = 0.5 * (self.decode(z) - logmel).square().sum(dim=(1, 2))
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return recon, kl, mu, logvar

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-element negative ELBO plus ``class_weight`` × cross-entropy on labelled items."""
        x, y = self.unpack(batch)
        c = self.config
        recon, kl, mu, _ = self.elbo_terms(x)
        n_el = x.shape[1] * x.shape[2]
        elbo = (recon + c.beta * kl).mean() / n_el
        labelled = y >= 0
        logits = self.head(mu[labelled])
        ce = F.cross_entropy(logits, y[labelled]) if bool(labelled.any()) else x.new_zeros(())
        loss = elbo + c.class_weight * ce
        logs = {
            "loss": float(loss.detach()),
            "recon": float(recon.detach().mean() / n_el),
            "kl": float(kl.detach().mean()),
            "ce": float(ce.detach()),
            "acc": _accuracy(logits.detach(), y[labelled]),
            "n_labelled": float(labelled.sum()),
        }
        return loss, logs


@register_config("emotion-cnn")
@dataclass(frozen=True)
class EmotionCnnConfig(Config):
    """Small supervised CNN over log-mel, with train-time augmentation."""

    n_mels: int = 80
    n_frames: int = 128
    n_classes: int = 8
    channels: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.3
    freq_masks: int = 2
    freq_mask_width: int = 10
    time_masks: int = 2
    time_mask_width: int = 16
    noise_std: float = 0.0
    mixup_alpha: float = 0.2
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not self.channels or min(self.channels) < 1:
            raise ParameterError(f"channels={self.channels} must be a non-empty tuple of ints >= 1")
        depth = 2 ** len(self.channels)
        if self.n_mels < depth or self.n_frames < depth:
            raise ParameterError(
                f"n_mels={self.n_mels}, n_frames={self.n_frames} must be >= 2**len(channels)={depth}"
            )
        if self.n_classes < 2:
            raise ParameterError(f"n_classes={self.n_classes} must be >= 2")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ParameterError(
                f"dropout={self.dropout}, label_smoothing={self.label_smoothing} must be in [0, 1)"
            )
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            if getattr(self, name) < 0:
                raise ParameterError(f"{name}={getattr(self, name)} must be >= 0")
        if self.noise_std < 0 or self.mixup_alpha < 0:
            raise ParameterError(
                f"noise_std={self.noise_std}, mixup_alpha={self.mixup_alpha} must both be >= 0"
            )


def spec_augment(
    x: torch.Tensor, *, freq_masks: int, freq_width: int, time_masks: int, time_width: int
) -> torch.Tensor:
    """Zero random frequency bands and time spans of each item (SpecAugment without warping).

    Parameters
    ----------
    x : torch.Tensor [shape=(B, n_mels, n_frames)]
    freq_masks, time_masks : int
        Masks per item along each axis.
    freq_width, time_width : int
        Largest mask width; widths are drawn uniformly from ``[0, width]``.

    Returns
    -------
    torch.Tensor [same shape], a masked copy (masked values are 0, the mean of normalised input).
    """
    B, n_f, n_t = x.shape
    keep = torch.ones_like(x, dtype=torch.bool)
    for n_masks, width, size, axis in (
        (freq_masks, freq_width, n_f, 1),
        (time_masks, time_width, n_t, 2),
    ):
        pos = torch.arange(size, device=x.device)
        for _ in range(n_masks):
            w = torch.randint(0, min(width, size) + 1, (B, 1), device=x.device)
            start = (torch.rand(B, 1, device=x.device) * (size - w + 1)).floor().long()
            band = (pos >= start) & (pos < start + w)  # [B, size]
            keep &= ~(band.unsqueeze(2) if axis == 1 else band.unsqueeze(1))
    return x * keep


@MODELS.register("emotion-cnn")
class EmotionCnn(EmotionClassifier):
    """2-D CNN emotion classifier over log-mel, augmented in training (see the module docstring)."""

    name = "emotion-cnn"
    config_class = EmotionCnnConfig
    config: EmotionCnnConfig

    def __init__(self, config: EmotionCnnConfig | None = None) -> None:
        super().__init__(config or EmotionCnnConfig())
        c = self.config
        self.n_mels, self.n_frames, self.n_classes = c.n_mels, c.n_frames, c.n_classes
        blocks: list[nn.Module] = []
        for a, b in zip((1, *c.channels[:-1]), c.channels):
            blocks += [
                nn.Conv2d(a, b, 3, padding=1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(c.dropout)
        n_freq = c.n_mels // 2 ** len(c.channels)  # mel rows left after the max-pools
        self.classifier = nn.Linear(2 * c.channels[-1] * n_freq, c.n_classes)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """Emotion logits ``[B, n_classes]`` of ``logmel [B, n_mels, n_frames]``."""
        self.check_input(logmel)
        h = self.features(logmel.unsqueeze(1)).flatten(1, 2)  # [B, C·F', T']: keeps frequency
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return self.classifier(self.dropout(pooled))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Train-time masking and noise of a ``[B, n_mels, n_frames]`` batch (a new tensor)."""
        c = self.config
        x = spec_augment(
            x, freq_masks=c.freq_masks, freq_width=c.freq_mask_width,
            time_masks=c.time_masks, time_width=c.time_mask_width,
        )  # fmt: skip
        if c.noise_std > 0:
            x = x + c.noise_std * torch.randn_like(x)
        return x

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy on labelled items (mixup and augmentation in training mode only)."""
        x, y = self.unpack(batch)
        labelled = y >= 0
        if not bool(labelled.any()):  # nothing to learn from; keep the graph for the trainer
            zero = torch.stack([p.sum() for p in self.parameters()]).sum() * 0.0
            return zero, {"loss": 0.0, "ce": 0.0, "acc": float("nan"), "n_labelled": 0.0}
        x, y = x[labelled], y[labelled]
        c = self.config
        ls = c.label_smoothing
        if self.training:
            x = self.augment(x)
        if self.training and c.mixup_alpha > 0 and x.shape[0] > 1:
            lam = float(torch.distributions.Beta(c.mixup_alpha, c.mixup_alpha).sample())
            perm = torch.randperm(x.shape[0], device=x.device)
            logits = self(lam * x + (1.0 - lam) * x[perm])
            ce_a = F.cross_entropy(logits, y, label_smoothing=ls)
            ce = lam * ce_a + (1.0 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=ls)
        else:
            logits = self(x)
            ce = F.cross_entropy(logits, y, label_smoothing=ls)
        logs = {
            "loss": float(ce.detach()),
            "ce": float(ce.detach()),
            "acc": _accuracy(logits.detach(), y),
            "n_labelled": float(y.numel()),
        }
        return ce, logs
