"""A device-agnostic training loop shared by every batchsep model (no I/O: outputs go through callbacks).

:func:`fit` trains any :class:`~batchsep.models.base.BatchsepModel` through its ``training_loss(batch)``
with Adam, optional gradient clipping, early stopping on the validation loss, best-weights tracking and
exact resumption. The model is wrapped in a :class:`LossModule` whose ``forward(batch)`` returns the loss,
so a ``wrap`` such as ``ray.train.torch.prepare_model`` (DistributedDataParallel, which synchronises
gradients only inside ``forward``) can be applied to it.

Batches come from two callables, ``train_batches`` and ``valid_batches``, each returning a fresh iterable
of batch dicts per epoch. A callable that takes a positional argument is called with the epoch index
(``train_batches(epoch)``), which lets a data path shuffle per epoch and still resume exactly.

Example
-------
>>> result = fit(model, lambda: train, lambda: valid, config=TrainConfig(max_epochs=3))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from batchsep.config import Config, register_config
from batchsep.errors import BatchsepError, ConfigError, ParameterError

if TYPE_CHECKING:
    from batchsep.models.base import BatchsepModel

Batch = Mapping[str, Any]
BatchSource = Callable[..., Iterable[Batch]]
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


class LossModule(nn.Module):
    """``forward(batch) = model.training_loss(batch)``: the module a DDP-style ``wrap`` is applied to."""

    def __init__(self, model: BatchsepModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.training_loss(batch)


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


class Callback(Protocol):
    """Called after every epoch; return True (or call ``state.request_stop()``) to stop training."""

    def on_epoch_end(self, epoch: int, record: EpochRecord, state: TrainerState) -> bool | None: ...


@dataclass
class TrainResult:
    """Outcome of :func:`fit`.

    ``stop_reason`` is ``"max_epochs"``, ``"patience"`` or ``"callback"``. The model holds the best
    weights when ``config.restore_best`` (the default); :meth:`state_dict` is the snapshot *before*
    that restore, so ``fit(..., resume=result.state_dict())`` with a larger ``max_epochs`` continues.
    """

    model: BatchsepModel
    history: list[EpochRecord]
    best_epoch: int
    best_loss: float
    best_state: dict[str, torch.Tensor] | None
    stop_reason: str
    final_state: dict[str, Any]

    def state_dict(self) -> dict[str, Any]:
        return self.final_state

    def summary(self) -> dict[str, Any]:
        """JSON-able metrics: best epoch/loss, stop reason, per-epoch history."""
        return {
            "best_epoch": self.best_epoch,
            "best_loss": self.best_loss,
            "stop_reason": self.stop_reason,
            "epochs": len(self.history),
            "history": [r.to_dict() for r in self.history],
        }


_POSITIONAL = {inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD}


def _open(source: BatchSource, epoch: int) -> Iterable[Batch]:
    """Call a batch source, passing the epoch when it takes a positional argument."""
    try:
        kinds = {p.kind for p in inspect.signature(source).parameters.values()}
    except (TypeError, ValueError):  # no introspectable signature
        kinds = set()
    return source(epoch) if kinds & (_POSITIONAL | {inspect.Parameter.VAR_POSITIONAL}) else source()


def _to_device(batch: Batch, device: torch.device) -> dict[str, Any]:
    if not isinstance(batch, Mapping):
        raise ParameterError(f"a batch must be a dict of tensors, got {type(batch).__name__}")
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def _means(rows: list[Mapping[str, float]], prefix: str) -> dict[str, float]:
    """``{prefix + "loss": mean, prefix + "/" + key: mean}`` over the rows where each key occurs."""
    sums: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            sums.setdefault(k, []).append(float(v))
    return {
        (f"{prefix}_loss" if k == "" else f"{prefix}/{k}"): sum(v) / len(v) for k, v in sums.items()
    }


def _train_epoch(
    runner: nn.Module, state: TrainerState, batches: Iterable[Batch]
) -> dict[str, float]:
    config, optimizer = state.config, state.optimizer
    params = [p for p in state.model.parameters() if p.requires_grad]
    runner.train()
    rows: list[Mapping[str, float]] = []
    for step, batch in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        loss, logs = runner(_to_device(batch, state.device))
        value = float(loss.detach())
        if not math.isfinite(value):
            raise BatchsepError(
                f"training loss={value} at epoch {state.epoch} step {step} is not finite; "
                "lower lr or set grad_clip"
            )
        loss.backward()
        if config.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            logs = {**logs, "grad_norm": float(norm)}
        optimizer.step()
        rows.append({"": value, **logs})
        if config.max_steps_per_epoch is not None and len(rows) >= config.max_steps_per_epoch:
            break
    if not rows:
        raise ParameterError(f"train_batches yielded no batch at epoch {state.epoch}")
    return {**_means(rows, "train"), "steps": float(len(rows))}


@torch.no_grad()
def _evaluate(runner: nn.Module, state: TrainerState, batches: Iterable[Batch]) -> dict[str, float]:
    runner.eval()
    rows: list[Mapping[str, float]] = []
    for batch in batches:
        loss, logs = runner(_to_device(batch, state.device))
        rows.append({"": float(loss), **logs})
    if not rows:
        raise ParameterError(f"valid_batches yielded no batch at epoch {state.epoch}")
    return _means(rows, "valid")


def _record(epoch: int, metrics: Mapping[str, float], seconds: float) -> EpochRecord:
    def logs(prefix: str) -> dict[str, float]:
        return {k[len(prefix) :]: float(v) for k, v in metrics.items() if k.startswith(prefix)}

    valid = metrics.get("valid_loss")
    return EpochRecord(
        epoch=epoch,
        train_loss=float(metrics["train_loss"]),
        valid_loss=None if valid is None else float(valid),
        train_logs=logs("train/"),
        valid_logs=logs("valid/"),
        seconds=seconds,
        steps=int(metrics["steps"]),
    )


def _stop_reason(state: TrainerState) -> str | None:
    if state.stop_requested:
        return "callback"
    if state.config.patience is not None and state.bad_epochs >= state.config.patience:
        return "patience"
    if state.epoch >= state.config.max_epochs:
        return "max_epochs"
    return None


def fit(
    model: BatchsepModel,
    train_batches: BatchSource,
    valid_batches: BatchSource | None,
    *,
    config: TrainConfig,
    device: torch.device | str = "cpu",
    callbacks: Sequence[Callback] = (),
    resume: Mapping[str, Any] | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    reduce_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``model`` through ``model.training_loss`` with Adam and early stopping.

    Parameters
    ----------
    model : BatchsepModel
        Moved to ``device``; trained in place.
    train_batches, valid_batches : callable
        Return a fresh iterable of batch dicts (tensors are moved to ``device``) for an epoch; called
        with the epoch index when they take a positional argument. ``valid_batches=None`` monitors the
        training loss instead.
    config : TrainConfig
    device : torch.device or str
    callbacks : sequence of Callback
        ``on_epoch_end(epoch, record, state)`` after each epoch (e.g. checkpointing via
        ``state.state_dict()``, logging); returning True requests a stop.
    resume : mapping, optional
        A :meth:`TrainerState.state_dict` / :meth:`TrainResult.state_dict` snapshot; training continues
        exactly where it was taken (weights, Adam moments, RNG, history, early-stopping counters).
    wrap : callable, optional
        Applied to the :class:`LossModule` (e.g. ``ray.train.torch.prepare_model``).
    reduce_metrics : callable, optional
        Maps the epoch's floats ``{"train_loss", "valid_loss", "train/<log>", "valid/<log>", "steps"}``
        to their values over all workers (e.g. an all-reduce mean), so that every rank takes the same
        early-stopping decision under data parallelism.

    Returns
    -------
    TrainResult

    Raises
    ------
    ParameterError
        If the config is not a TrainConfig, the model has no trainable parameter, a source yields no
        batch, or ``resume`` is not a snapshot.
    BatchsepError
        If the training loss becomes NaN or infinite.
    """
    if not isinstance(config, TrainConfig):
        raise ParameterError(f"config must be a TrainConfig, got {type(config).__name__}")
    device = torch.device(device)
    model.to(device)
    runner: nn.Module = LossModule(model)
    if wrap is not None:
        runner = wrap(runner)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ParameterError(f"model {type(model).__name__} has no trainable parameter")
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    state = TrainerState(model=model, optimizer=optimizer, config=config, device=device)
    if resume is not None:
        state.load_state_dict(resume)
    else:
        torch.manual_seed(config.seed)

    while (reason := _stop_reason(state)) is None:
        epoch, start = state.epoch, time.perf_counter()
        metrics = _train_epoch(runner, state, _open(train_batches, epoch))
        if valid_batches is not None:
            metrics.update(_evaluate(runner, state, _open(valid_batches, epoch)))
        if reduce_metrics is not None:
            metrics = reduce_metrics(metrics)
        record = _record(epoch, metrics, time.perf_counter() - start)
        monitored = record.train_loss if record.valid_loss is None else record.valid_loss
        record.improved = monitored < state.best_loss - config.min_delta
        if record.improved:
            state.best_loss, state.best_epoch, state.bad_epochs = monitored, epoch, 0
            state.best_state = _clone_cpu(model.state_dict())
        else:
            state.bad_epochs += 1
        state.history.append(record)
        state.epoch = epoch + 1
        for callback in callbacks:
            if callback.on_epoch_end(epoch, record, state):
                state.request_stop()

    final_state = state.state_dict()
    if config.restore_best and state.best_state is not None:
        model.load_state_dict(state.best_state)
    return TrainResult(
        model=model,
        history=list(state.history),
        best_epoch=state.best_epoch,
        best_loss=state.best_loss,
        best_state=state.best_state,
        stop_reason=reason,
        final_state=final_state,
    )
