"""(B)LSTM mask estimators, the deep-learning baseline of seeds 001 and 002.

``K`` stacked (B)LSTM layers read a transformed mixture magnitude frame by frame; a linear layer and a
sigmoid give a mask in [0, 1] per time-frequency bin. Trained with the MSA or PSA loss. Padded batches are
run as packed sequences, so padding never changes the output on valid frames (in either direction).

Sizes are matched to DR-NMF parameter counts (seed 001, table 1): DR-NMF with K untied layers and R bases
has about ``K·F·R`` weights; hidden 54 / 244 (K = 2) and 70 / 250 (K = 5) match R = 200 / 2000 to within
5 %. :func:`lstm_hidden_for_params` solves for the nearest hidden size (53 / 243 and 68 / 249 with torch's
two bias vectors per gate).

Example
-------
>>> model = LstmMaskModel(LstmMaskConfig(n_layers=1, hidden=8, n_freq=5))
>>> model(torch.rand(2, 5, 7)).shape
torch.Size([2, 5, 7])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from batchsep.config import Config, register_config
from batchsep.errors import ParameterError
from batchsep.models.base import MODELS, MaskModel
from batchsep.models.losses import mask_loss, msa, psa

InputTransform = Literal["log1p", "sqrt", "magnitude"]
LossName = Literal["msa", "psa"]


@register_config("lstm")
@dataclass(frozen=True)
class LstmMaskConfig(Config):
    """Configuration of :class:`LstmMaskModel`.

    Parameters
    ----------
    n_layers : int
        Number of stacked (B)LSTM layers ``K`` (seed 001: 2 or 5).
    hidden : int
        Hidden units per layer and direction (seed 001: 54/244 for K=2, 70/250 for K=5).
    bidirectional : bool
        BLSTM instead of LSTM.
    n_freq : int
        Frequency bins ``F`` of the input magnitude (257 for the 512-point reference STFT).
    input_transform : {"log1p", "sqrt", "magnitude"}
        Applied to ``|X|`` before the first layer: ``log(1 + |X|)``, ``√|X|`` or none.
    loss : {"msa", "psa"}
        Training loss (:mod:`batchsep.models.losses`).
    loss_power : float
        Compress both magnitudes of the loss to this power, in (0, 1] (:func:`~batchsep.models.losses.
        mask_loss`; 0.3 weighs quiet bins as perceptual metrics do); 1 is the seeds' loss.
    dropout : float
        Dropout between LSTM layers (torch semantics; 0 disables).
    """

    n_layers: int = 2
    hidden: int = 244
    bidirectional: bool = False
    n_freq: int = 257
    input_transform: InputTransform = "log1p"
    loss: LossName = "msa"
    loss_power: float = 1.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_layers", "hidden", "n_freq"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name}={value!r} must be an integer >= 1")
        if self.input_transform not in ("log1p", "sqrt", "magnitude"):
            raise ParameterError(
                f"input_transform={self.input_transform!r} must be one of "
                "['log1p', 'sqrt', 'magnitude']"
            )
        if self.loss not in ("msa", "psa"):
            raise ParameterError(f"loss={self.loss!r} must be one of ['msa', 'psa']")
        if not 0.0 < self.loss_power <= 1.0:
            raise ParameterError(f"loss_power={self.loss_power!r} must be in (0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise ParameterError(f"dropout={self.dropout!r} must be in [0, 1)")


@register_config("blstm")
@dataclass(frozen=True)
class BlstmMaskConfig(LstmMaskConfig):
    """:class:`LstmMaskConfig` whose ``bidirectional`` defaults to True."""

    bidirectional: bool = True


def lstm_param_count(
    hidden: int, n_layers: int, bidirectional: bool = False, n_freq: int = 257
) -> int:
    """Trainable parameters of :class:`LstmMaskModel` (torch LSTM: two bias vectors per gate).

    Per layer and direction ``4·H·(I + H) + 8·H`` with ``I = F`` for the first layer and ``D·H`` above
    (``D`` = 2 for BLSTM); the output layer has ``D·H·F + F``.

    Examples
    --------
    >>> lstm_param_count(54, 2)
    105503
    """
    d = 2 if bidirectional else 1
    total = 0
    for layer in range(n_layers):
        n_in = n_freq if layer == 0 else d * hidden
        total += d * (4 * hidden * (n_in + hidden) + 8 * hidden)
    return total + d * hidden * n_freq + n_freq


def lstm_hidden_for_params(
    target: int, n_layers: int, bidirectional: bool = False, n_freq: int = 257
) -> int:
    """Hidden size whose :func:`lstm_param_count` is nearest ``target`` (ties: the smaller).

    Parameters
    ----------
    target : int
        Parameter budget, e.g. a DR-NMF count ``K·F·R`` (≈ 102 800 for K=2, R=200).
    n_layers : int
    bidirectional : bool
    n_freq : int

    Returns
    -------
    int
        A hidden size >= 1.

    Raises
    ------
    ParameterError
        If ``target`` or ``n_layers`` is not positive.

    Examples
    --------
    >>> lstm_hidden_for_params(2 * 257 * 2000, 2)  # seed 001 used 244 (Keras: one bias per gate)
    243
    """
    if target < 1 or n_layers < 1 or n_freq < 1:
        raise ParameterError(
            f"target={target}, n_layers={n_layers}, n_freq={n_freq} must all be >= 1"
        )
    lo, hi = 1, 1
    while lstm_param_count(hi, n_layers, bidirectional, n_freq) < target:
        hi *= 2
    while hi - lo > 1:  # count is increasing in hidden: find the first hidden with count >= target
        mid = (lo + hi) // 2
        if lstm_param_count(mid, n_layers, bidirectional, n_freq) < target:
            lo = mid
        else:
            hi = mid
    candidates = {lo, hi}
    return min(
        candidates,
        key=lambda h: (abs(lstm_param_count(h, n_layers, bidirectional, n_freq) - target), h),
    )


@MODELS.register("lstm")
class LstmMaskModel(MaskModel):
    """Stacked (B)LSTM → linear → sigmoid mask estimator.

    Parameters
    ----------
    config : LstmMaskConfig
    """

    name: ClassVar[str] = "lstm"
    config_class: ClassVar[type[Config]] = LstmMaskConfig
    config: LstmMaskConfig

    def __init__(self, config: LstmMaskConfig) -> None:
        if not isinstance(config, LstmMaskConfig):
            raise ParameterError(
                f"{type(self).__name__} needs an LstmMaskConfig, got {type(config).__name__}"
            )
        super().__init__(config)
        self.lstm = nn.LSTM(
            input_size=config.n_freq,
            hidden_size=config.hidden,
            num_layers=config.n_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        d = 2 if config.bidirectional else 1
        self.out = nn.Linear(d * config.hidden, config.n_freq)

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _features(self, mag: torch.Tensor) -> torch.Tensor:
        transform = self.config.input_transform
        if transform == "log1p":
            return torch.log1p(mag)
        if transform == "sqrt":
            return mag.clamp_min(0.0).sqrt()
        return mag

    def forward(self, mag: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mask for a batch of mixture magnitudes.

        Parameters
        ----------
        mag : torch.Tensor [shape=(B, F, T)]
            Mixture STFT magnitude, ``F = config.n_freq``.
        lengths : torch.Tensor [shape=(B,)], optional
            Valid frames per item (``1 <= lengths[b] <= T``); padded frames do not influence valid
            outputs and get mask 0.

        Returns
        -------
        torch.Tensor [shape=(B, F, T)]
            Mask in [0, 1].

        Raises
        ------
        ParameterError
            If ``mag`` is not ``[B, F, T]`` with ``F = n_freq`` or ``lengths`` is invalid.
        """
        if mag.ndim != 3 or mag.shape[1] != self.config.n_freq:
            raise ParameterError(
                f"mag shape={tuple(mag.shape)} must be [B, F={self.config.n_freq}, T]"
            )
        n_frames = mag.shape[-1]
        x = self._features(mag).transpose(1, 2)  # [B, T, F]
        if lengths is None:
            h, _ = self.lstm(x)
            return torch.sigmoid(self.out(h)).transpose(1, 2)
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (mag.shape[0],):
            raise ParameterError(
                f"lengths shape={tuple(lengths.shape)} must be (B,)=({mag.shape[0]},)"
            )
        lengths_cpu = lengths.detach().to("cpu", torch.int64)
        if int(lengths_cpu.min()) < 1 or int(lengths_cpu.max()) > n_frames:
            raise ParameterError(f"lengths={lengths_cpu.tolist()} must lie in [1, T={n_frames}]")
        packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
        h_packed, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(h_packed, batch_first=True, total_length=n_frames)
        mask = torch.sigmoid(self.out(h))  # [B, T, F]
        valid = (
            torch.arange(n_frames, device=mask.device)[None, :]
            < lengths_cpu.to(mask.device)[:, None]
        )
        return (mask * valid[:, :, None].to(mask.dtype)).transpose(1, 2)

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss ``config.loss`` on a batch.

        Parameters
        ----------
        batch : dict
            ``noisy_mag`` and ``clean_mag`` [B, F, T], ``lengths`` [B] (optional), and for PSA
            ``noisy_stft`` and ``clean_stft`` [B, F, T] complex.

        Returns
        -------
        (loss, logs)
            The scalar loss and ``{"msa": …}`` (plus ``"psa"`` when the STFTs are present; with
            ``loss_power`` c ≠ 1 the compressed loss is logged as ``"psa^c"`` next to the plain one).
        """
        if "noisy_mag" not in batch:
            raise ParameterError(f"batch keys {sorted(batch)} must include 'noisy_mag'")
        lengths = batch.get("lengths")
        mask = self(batch["noisy_mag"], lengths)
        power = self.config.loss_power
        loss = mask_loss(self.config.loss, mask, batch, power=power)
        name = self.config.loss if power == 1.0 else f"{self.config.loss}^{power:g}"
        logs: dict[str, float] = {name: float(loss.detach())}
        with torch.no_grad():
            m = mask.detach()
            if power != 1.0:  # the uncompressed loss too, comparable with power-1 runs
                logs[self.config.loss] = float(mask_loss(self.config.loss, m, batch))
            if "msa" not in logs and "clean_mag" in batch:
                logs["msa"] = float(msa(m, batch["noisy_mag"], batch["clean_mag"], lengths))
            if "psa" not in logs and "noisy_stft" in batch and "clean_stft" in batch:
                logs["psa"] = float(psa(m, batch["noisy_stft"], batch["clean_stft"], lengths))
        return loss, logs


@MODELS.register("blstm")
class BlstmMaskModel(LstmMaskModel):
    """:class:`LstmMaskModel` built from a :class:`BlstmMaskConfig` (bidirectional by default)."""

    name: ClassVar[str] = "blstm"
    config_class: ClassVar[type[Config]] = BlstmMaskConfig
