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

import inspect
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from batchsep.errors import BatchsepError, ParameterError
from batchsep.training.state import (
    STATE_FORMAT,
    EpochRecord,
    TrainConfig,
    TrainerState,
    _clone_cpu,
)

if TYPE_CHECKING:
    from batchsep.models.base import BatchsepModel

Batch = Mapping[str, Any]
BatchSource = Callable[..., Iterable[Batch]]
__all__ = [
    "STATE_FORMAT",
    "Batch",
    "BatchSource",
    "Callback",
    "EpochRecord",
    "LossModule",
    "TrainConfig",
    "TrainResult",
    "TrainerState",
    "fit",
]


class LossModule(nn.Module):
    """``forward(batch) = model.training_loss(batch)``: the module a DDP-style ``wrap`` is applied to."""

    def __init__(self, model: BatchsepModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.training_loss(batch)


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
