"""The model registry and the contracts every batchsep model follows.

A model is a ``torch.nn.Module`` built from a frozen, registered config. It is registered by name:

>>> @MODELS.register("my-model")          # doctest: +SKIP
... class MyModel(BatchsepModel): ...

Contracts
---------
``BatchsepModel``
    ``config`` (a :class:`~batchsep.config.Config`), ``name`` (registry name, class attribute),
    ``training_loss(batch) -> (loss, logs)`` where ``batch`` is a dict of tensors produced by the training
    data path and ``logs`` a dict of floats; the trainer only ever calls this method, so enhancement and
    emotion models train through the same loop.
``MaskModel(BatchsepModel)``
    ``forward(mag) -> mask`` with ``mag`` the mixture STFT magnitude ``[B, F, T]`` and the mask in [0, 1]
    of the same shape; ``causal_context`` frames of look-back (for chunked inference).
``Checkpoint`` payload
    ``{"model_name", "config", "state", "versions"}`` built by :func:`serialize` and rebuilt by
    :func:`deserialize`; ``batchsep.io.checkpoint`` stores it (safetensors + JSON) on any URI.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from batchsep.config import Config, Registry, config_from_dict

MODELS: Registry[type[BatchsepModel]] = Registry("model")


class BatchsepModel(nn.Module):
    """Base class: a module built from one frozen config, trainable through ``training_loss``."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[Config]]

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def training_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class MaskModel(BatchsepModel):
    """An enhancement model that maps a mixture magnitude ``[B, F, T]`` to a mask in [0, 1]."""

    def forward(self, mag: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def build_model(name: str, config: Config | dict[str, Any] | None = None) -> BatchsepModel:
    """Instantiate registered model ``name`` from a config object, its dict form, or defaults."""
    cls = MODELS.get(name)
    if config is None:
        config = cls.config_class()
    elif isinstance(config, dict):
        config = (
            config_from_dict(config) if "type" in config else cls.config_class.from_dict(config)
        )
    return cls(config)


def serialize(model: BatchsepModel) -> dict[str, Any]:
    """Self-describing checkpoint payload of ``model`` (tensors on CPU)."""
    from batchsep._version import __version__

    return {
        "model_name": model.name,
        "config": model.config.to_dict(),
        "state": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "versions": {"batchsep": __version__, "torch": torch.__version__},
    }


def deserialize(payload: dict[str, Any]) -> BatchsepModel:
    """Rebuild a model from :func:`serialize`'s payload; raises on a config/state mismatch."""
    model = build_model(payload["model_name"], payload["config"])
    model.load_state_dict(payload["state"])
    model.eval()
    return model
