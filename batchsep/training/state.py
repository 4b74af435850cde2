"""Training state shared by :func:`batchsep.training.loop.fit` and its callbacks (no I/O).

:class:`TrainConfig` (the optimisation settings), :class:`EpochRecord` (one epoch's losses and logs) and
:class:`TrainerState` (the live, resumable state whose :meth:`~TrainerState.state_dict` is what a
checkpoint callback stores and ``fit(..., resume=...)`` continues from). Everything is re-exported by
:mod:`batchsep.training.loop` and :mod:`batchsep.training`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from batchsep.config import Config, register_config
from batchsep.errors import ConfigError, ParameterError

if TYPE_CHECKING:
    from batchsep.models.base import BatchsepModel

STATE_FORMAT = 1


@register_config("train")
@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation settings of :func:`fit` (Adam).

    Parameters
    ----------
    lr : float
        Adam learning rate (seed 001: 1e-4 for LSTMs, 1e-3 for DR-NMF).
    max_epochs : int
        Upper bound on the number of epochs.
    patience : int or None
        Stop after this many consecutive epochs without a validation-loss improvement (seed 001: 50);
        None disables early stopping.
    grad_clip : float or None
        Clip the global gradient norm to this value (seed 001: 1 for LSTMs); None = off.
    weight_decay : float
        Adam weight decay (L2).
    seed : int
        Seeds torch's global RNG at the start of a fresh run.
    max_steps_per_epoch : int or None
        Stop an epoch's training pass after this many batches.
    min_delta : float
        An epoch improves only if its loss is below ``best - min_delta``.
    restore_best : bool
        Load the best weights into the model when training ends.
    """

    lr: float = 1e-3
    max_epochs: int = 100
    patience: int | None = 10
    grad_clip: float | None = None
    weight_decay: float = 0.0
    seed: int = 0
    max_steps_per_epoch: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        mse, clip, wd = self.max_steps_per_epoch, self.grad_clip, self.weight_decay
        rules = [
            ("lr", self.lr, math.isfinite(self.lr) and self.lr > 0, "a finite number > 0"),
            ("max_epochs", self.max_epochs, self.max_epochs >= 0, ">= 0"),
            (
                "patience",
                self.patience,
                self.patience is None or self.patience >= 1,
                ">= 1 or None",
            ),
            ("grad_clip", clip, clip is None or clip > 0, "> 0 or None"),
            ("weight_decay", wd, math.isfinite(wd) and wd >= 0, "a finite number >= 0"),
            ("max_steps_per_epoch", mse, mse is None or mse >= 1, ">= 1 or None"),
            ("min_delta", self.min_delta, self.min_delta >= 0, ">= 0"),
        ]
        for name, value, ok, rule in rules:
            if not ok:
                raise ConfigError(f"{name}={value!r} must be {rule}")


@dataclass
class EpochRecord:
    """What happened in one epoch (JSON-able through :meth:`to_dict`)."""

    epoch: int
    train_loss: float
    valid_loss: float | None
    train_logs: dict[str, float] = field(default_factory=dict)
    valid_logs: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    improved: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochRecord:
        return cls(**copy.deepcopy(dict(data)))


def _clone_cpu(obj: Any) -> Any:
    """Deep copy with every tensor detached, cloned and moved to CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, Mapping):
        return {k: _clone_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_clone_cpu(v) for v in obj)
    return copy.deepcopy(obj)


@dataclass
class TrainerState:
    """The live state of :func:`fit`, handed to callbacks.

    ``epoch`` counts completed epochs; :meth:`state_dict` is the resumable snapshot a checkpoint
    callback stores; :meth:`request_stop` ends training after the current epoch.
    """

    model: BatchsepModel
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    device: torch.device
    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    stop_requested: bool = False

    def request_stop(self) -> None:
        """Stop training once the current epoch's callbacks have run."""
        self.stop_requested = True

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (tensors on CPU, copied) from which ``fit(..., resume=...)`` continues exactly."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "model": _clone_cpu(self.model.state_dict()),
            "optimizer": _clone_cpu(self.optimizer.state_dict()),
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "best_state": _clone_cpu(self.best_state),
            "bad_epochs": self.bad_epochs,
            "history": [r.to_dict() for r in self.history],
            "rng": rng,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot (lr and weight decay follow the current config)."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ParameterError(
                f"resume state must be a mapping with format={STATE_FORMAT} from state_dict()"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
            group["weight_decay"] = self.config.weight_decay
        self.epoch = int(state["epoch"])
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.best_state = _clone_cpu(state["best_state"])
        self.bad_epochs = int(state["bad_epochs"])
        self.history = [EpochRecord.from_dict(r) for r in state["history"]]
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
