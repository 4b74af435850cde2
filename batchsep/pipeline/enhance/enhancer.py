"""A mask model applied in the STFT domain to 16-kHz windows, at the level it was trained at (model side of
the enhance stage; no I/O but reading the model)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from batchsep.dsp.level import (
    INPUT_LEVEL_DB,
    MAX_LEVEL_GAIN_DB,
    MODEL_LEVEL,
    InputLevel,
    check_input_level,
    resolve_input_level,
)
from batchsep.dsp.stft import StftConfig, istft, stft
from batchsep.errors import ParameterError
from batchsep.io import checkpoint
from batchsep.models.base import MaskModel, deserialize


def level_gain(x: torch.Tensor, level_db: float) -> torch.Tensor:
    """Per-row gain ``[B]`` that brings the RMS of ``x`` ``[B, n]`` to ``level_db`` dBFS, within
    ±``MAX_LEVEL_GAIN_DB`` (digital silence gets the largest gain, harmlessly)."""
    rms = x.pow(2).mean(dim=-1).sqrt()
    limit = 10.0 ** (MAX_LEVEL_GAIN_DB / 20.0)
    return (10.0 ** (level_db / 20.0) / rms.clamp_min(1e-12)).clamp(1.0 / limit, limit)


class MaskEnhancer:
    """A mask model applied in the STFT domain: windows ``[B, n]`` at 16 kHz → enhanced ``[B, n]``.

    The model estimates each window's mask from its magnitudes brought to ``input_level_db`` (see
    :data:`INPUT_LEVEL_DB`; ``None``: as they are); the mask multiplies the window's own STFT.
    """

    def __init__(
        self,
        model: MaskModel,
        *,
        stft_config: StftConfig | None = None,
        device: str = "cpu",
        input_level_db: float | None = INPUT_LEVEL_DB,
    ) -> None:
        if input_level_db == MODEL_LEVEL:
            raise ParameterError(
                "MaskEnhancer needs input_level_db in dBFS or None ('model' is resolved by load_enhancer)"
            )
        check_input_level(input_level_db)
        self.model = model.to(device).eval()
        self.stft_config = stft_config or StftConfig()
        self.device = device
        self.input_level_db = input_level_db

    def _mask(self, windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.stft_config
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        X = stft(x, n_fft=c.n_fft, hop_length=c.hop_length, window=c.window)
        mag = X.abs()
        if self.input_level_db is not None:
            mag = mag * level_gain(x, self.input_level_db)[:, None, None]
        return X, self.model(mag)

    @torch.inference_mode()
    def masks(self, windows: np.ndarray) -> np.ndarray:
        """The model's speech masks ``[B, F, T]`` of windows ``[B, n]`` (in the STFT of ``stft_config``;
        what mask-based beamforming estimates its spatial statistics from)."""
        _, mask = self._mask(windows)
        return mask.cpu().numpy()

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray) -> np.ndarray:
        c = self.stft_config
        X, mask = self._mask(windows)
        y = istft(
            mask * X, length=np.shape(windows)[-1], n_fft=c.n_fft,
            hop_length=c.hop_length, window=c.window,
        )  # fmt: skip
        return y.cpu().numpy()


def load_enhancer(
    model_uri: str,
    *,
    device: str = "cpu",
    input_level_db: InputLevel = MODEL_LEVEL,
    num_threads: int | None = None,
) -> tuple[MaskEnhancer | Any, str, str]:
    """Load a model folder (or ``default``, or a zoo model) → (enhancer, model name, weights sha256).

    ``input_level_db``: ``"model"`` (default) normalises to the level the model records (its training
    mixtures' median), else to :data:`INPUT_LEVEL_DB`; a number in dBFS; ``None`` for the raw level.
    Zoo models (:mod:`batchsep.pipeline.enhance.zoo`) stream at their own rate and level, on ``num_threads``
    threads; they return a :class:`~batchsep.pipeline.enhance.zoo_runtime.StreamingEnhancer`.
    """
    from batchsep.pipeline.enhance import zoo

    if zoo.is_zoo_name(model_uri):
        return zoo.load_zoo_enhancer(model_uri, device=device, num_threads=num_threads or 1)
    payload = checkpoint.read_checkpoint(model_uri)
    level = resolve_input_level(input_level_db, payload)
    model = deserialize(payload)
    if not isinstance(model, MaskModel):
        raise ParameterError(
            f"{model_uri}: model {payload['model_name']!r} is not an enhancement model"
        )
    stft_cfg = (
        StftConfig.from_dict(payload.get("stft", {})) if payload.get("stft") else StftConfig()
    )
    return (
        MaskEnhancer(model, stft_config=stft_cfg, device=device, input_level_db=level),
        payload["model_name"],
        payload["sha256"],
    )
