"""Convolutional denoising autoencoder (DAE), the conv baseline of seed 004 (§4.1, after Mao et al.'s RED-Net).

The normalised √magnitude ``[B, 1, F, T]`` goes through ``n_layers`` 2-D convolutions (``channels``
filters of ``kernel×kernel``, ReLU) and ``n_layers`` mirrored transposed convolutions; the output of every
``skip_every``-th decoder layer is summed with the mirrored encoder feature map before its ReLU (symmetric
skip connections). The first convolution may stride by ``stride`` in time and frequency (the last
transposed convolution upsamples back): the input is zero-padded to a multiple of the stride and the
output cropped, so any ``T`` (and ``F``) works. The network is fully convolutional: it trains on the
fixed-length patches the data path crops and enhances whole utterances.

``output="mask"`` reads a sigmoid mask; ``output="magnitude"`` estimates the clean normalised
√magnitude with a global residual (``input + net``, RED-Net style, so an untrained net passes the mixture
through), which is squared and rescaled to ``|Ŝ|`` and turned into the mask ``min(|Ŝ| / |X|, 1)``; that
variant trains on ``(|Ŝ| − |S|)²`` (or the PSA target).

Padding: every layer's activations on padded frames are zeroed, so with ``lengths`` a batch gives the same
valid outputs as its items one by one (exactly the zero padding each layer would see alone).

Sizes. Seed 004: 15 + 15 layers of 128 5×5 filters, stride 1, skips every 2 layers
(:data:`PAPER_DAE`, 11 478 913 parameters, ~1.6·10¹² multiply-adds for 500 frames: GPU only). The default
here is a CPU-trainable reduction: 5 + 5 layers of 32 5×5 filters, stride 2 (206 689 parameters).

Example
-------
>>> model = DaeModel(DaeConfig(n_freq=9, n_layers=2, channels=4, kernel=3))
>>> model(torch.rand(2, 9, 7)).shape
torch.Size([2, 9, 7])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as tnf

from batchsep.config import Config, register_config
from batchsep.errors import ParameterError
from batchsep.models.base import MODELS, MaskModel
from batchsep.models.embedding import (
    EPS,
    InputNorm,
    _check_choice,
    _check_int,
    sqrt_features,
    valid_frames,
)
from batchsep.models.losses import loss_target, mask_loss, msa


@register_config("dae")
@dataclass(frozen=True)
class DaeConfig(Config):
    """Configuration of :class:`DaeModel`.

    Parameters
    ----------
    n_freq : int
        Frequency bins ``F``.
    n_layers : int
        Convolution layers (and as many transposed convolutions); seed 004: 15.
    channels : int
        Filters per layer; seed 004: 128.
    kernel : int
        Odd square kernel size; seed 004: 5.
    stride : int
        Stride of the first convolution (and upsampling of the last transposed one); 1 keeps the size.
    skip_every : int
        A skip connection every ``skip_every`` decoder layers; seed 004: 2.
    output : {"mask", "magnitude"}
        Sigmoid mask, or a clean-magnitude estimate turned into a mask.
    input_norm : {"rms", "max", "none", "utterance"}
        Normalisation of ``√|X|`` per utterance (see :func:`~batchsep.models.embedding.sqrt_features`);
        ``"utterance"`` (mean removal) is not invertible and only allowed with ``output="mask"``.
    loss : {"msa", "psa"}
    """

    n_freq: int = 257
    n_layers: int = 5
    channels: int = 32
    kernel: int = 5
    stride: int = 2
    skip_every: int = 2
    output: Literal["mask", "magnitude"] = "mask"
    input_norm: InputNorm = "rms"
    loss: Literal["msa", "psa"] = "msa"

    def __post_init__(self) -> None:
        _check_int(self, ("n_freq", "n_layers", "channels", "kernel", "stride", "skip_every"))
        if self.kernel % 2 == 0:
            raise ParameterError(f"kernel={self.kernel} must be odd")
        _check_choice("output", self.output, ("mask", "magnitude"))
        _check_choice("input_norm", self.input_norm, ("rms", "max", "none", "utterance"))
        _check_choice("loss", self.loss, ("msa", "psa"))
        if self.output == "magnitude" and self.input_norm == "utterance":
            raise ParameterError(
                "input_norm='utterance' must not be used with output='magnitude' "
                "(mean removal cannot be undone); use 'rms', 'max' or 'none'"
            )


PAPER_DAE = DaeConfig(n_layers=15, channels=128, kernel=5, stride=1, skip_every=2)
"""Seed 004's DAE size (15 + 15 layers, 128 filters of 5×5, skips every 2 layers)."""


@MODELS.register("dae")
class DaeModel(MaskModel):
    """Convolutional denoising autoencoder with symmetric skip connections.

    Parameters
    ----------
    config : DaeConfig
    """

    name: ClassVar[str] = "dae"
    config_class: ClassVar[type[Config]] = DaeConfig
    config: DaeConfig

    def __init__(self, config: DaeConfig) -> None:
        if not isinstance(config, DaeConfig):
            raise ParameterError(f"DaeModel needs a DaeConfig, got {type(config).__name__}")
        super().__init__(config)
        c, k, s, n = config.channels, config.kernel, config.stride, config.n_layers
        self.encoder = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else c, c, k, stride=s if i == 0 else 1, padding=k // 2)
            for i in range(n)
        )
        self.decoder = nn.ModuleList(
            nn.ConvTranspose2d(c, c, k, padding=k // 2) for _ in range(n - 1)
        )
        self.out = nn.ConvTranspose2d(c, 1, k, stride=s, padding=k // 2, output_padding=s - 1)

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _scale(self, mag: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``σ`` [B, 1, 1] with ``features = √|X| / σ`` (scale-only normalisations)."""
        x = mag.clamp_min(0.0).sqrt()
        w = valid[:, None, :].to(x.dtype)
        if self.config.input_norm == "rms":
            n = (w.sum(dim=(1, 2)) * x.shape[1]).clamp_min(1.0)[:, None, None]
            return torch.sqrt((x**2 * w).sum(dim=(1, 2), keepdim=True) / n + EPS)
        if self.config.input_norm == "max":
            return (x * w).amax(dim=(1, 2), keepdim=True) + EPS
        return torch.ones_like(x[:, :1, :1])

    def estimate(
        self, mag: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw network output and valid frames.

        Parameters
        ----------
        mag : torch.Tensor [shape=(B, F, T)]
            Mixture magnitude.
        lengths : torch.Tensor [shape=(B,)], optional
            Valid frames per item.

        Returns
        -------
        out : torch.Tensor [shape=(B, F, T)]
            The mask (``output="mask"``) or the clean magnitude estimate ``|Ŝ|``, 0 on padded frames.
        valid : torch.Tensor [shape=(B, T)], bool

        Raises
        ------
        ParameterError
            If ``mag`` is not ``[B, F, T]`` with ``F = n_freq`` or ``lengths`` is invalid.
        """
        cfg = self.config
        if mag.ndim != 3 or mag.shape[1] != cfg.n_freq:
            raise ParameterError(f"mag shape={tuple(mag.shape)} must be [B, F={cfg.n_freq}, T]")
        n_freq, n_frames, s = mag.shape[1], mag.shape[2], cfg.stride
        valid = valid_frames(lengths, mag)
        feats = sqrt_features(mag, valid, norm=cfg.input_norm)
        pad_f, pad_t = (-n_freq) % s, (-n_frames) % s
        x = tnf.pad(feats, (0, pad_t, 0, pad_f))[:, None]  # [B, 1, F', T']
        valid_full = tnf.pad(valid, (0, pad_t))
        n_valid = valid.sum(dim=1)
        t_low = torch.arange(x.shape[-1] // s, device=mag.device)
        valid_low = t_low[None, :] < ((n_valid + s - 1) // s)[:, None]
        keep_low = valid_low[:, None, None, :].to(x.dtype)

        h, skips = x, []
        for conv in self.encoder:
            h = torch.relu(conv(h)) * keep_low
            skips.append(h)
        for j, deconv in zip(range(cfg.n_layers - 1, 0, -1), self.decoder):
            h = deconv(h)
            if j % cfg.skip_every == 0:
                h = h + skips[j - 1]
            h = torch.relu(h) * keep_low
        y = self.out(h) * valid_full[:, None, None, :].to(x.dtype)
        y = y[:, 0, :n_freq, :n_frames]
        keep = valid[:, None, :].to(y.dtype)
        if cfg.output == "mask":
            return torch.sigmoid(y) * keep, valid
        root = (feats + y) * self._scale(mag, valid)  # ≈ √|Ŝ|; squaring keeps |Ŝ| >= 0
        return root**2 * keep, valid

    def forward(self, mag: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mask in [0, 1] ``[B, F, T]`` for a batch of mixture magnitudes (0 on padded frames)."""
        out, valid = self.estimate(mag, lengths)
        if self.config.output == "mask":
            return out
        return (out / (mag + EPS)).clamp(0.0, 1.0) * valid[:, None, :].to(out.dtype)

    def training_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """``config.loss`` on the mask (``output="mask"``) or on the magnitude estimate.

        Parameters
        ----------
        batch : dict
            ``noisy_mag``, ``clean_mag`` [B, F, T], ``lengths`` [B] (optional), and for PSA
            ``noisy_stft`` and ``clean_stft``.

        Returns
        -------
        (loss, logs)
        """
        if "noisy_mag" not in batch:
            raise ParameterError(f"batch keys {sorted(batch)} must include 'noisy_mag'")
        lengths = batch.get("lengths")
        out, _ = self.estimate(batch["noisy_mag"], lengths)
        if self.config.output == "mask":
            loss = mask_loss(self.config.loss, out, batch)
        else:
            target = loss_target(self.config.loss, batch)
            loss = msa(torch.ones_like(out), out, target, lengths)  # mean (|Ŝ| − target)²
        return loss, {self.config.loss: float(loss.detach())}
