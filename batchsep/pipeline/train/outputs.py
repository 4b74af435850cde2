"""What a train run writes under ``out_uri`` and reads back: checkpoints, resumable state, curves."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch

from batchsep.config import config_from_dict
from batchsep.errors import BatchsepError, ConfigError
from batchsep.io import checkpoint, storage
from batchsep.models.base import BatchsepModel, serialize
from batchsep.pipeline.train.data import log_line
from batchsep.training.curves import learning_curves, render_learning_curves
from batchsep.training.loop import EpochRecord, TrainerState

if TYPE_CHECKING:
    from batchsep.pipeline.train.types import TrainJob

STATE_NAME = "state.pt"
CURVES_JSON, CURVES_PNG = "curves.json", "curves.png"


def param_count(model: torch.nn.Module) -> int:
    """Trainable parameters of ``model``; for one without any (SNMF), the entries of its ``W*`` buffers."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad) or sum(
        b.numel() for n, b in model.named_buffers() if n.startswith("W")
    )


def write_model(
    uri: str,
    model: BatchsepModel,
    stft: Mapping[str, Any],
    metrics: Any = None,
    *,
    input_level_db: float | None = None,
) -> str:
    """Write a checkpoint folder whose ``config.json`` also records the STFT config (``stft``) and the
    level of the training mixtures (``input_level_db``, see
    :func:`~batchsep.pipeline.train.data.training_level_db`) when known."""
    extra: dict[str, Any] = {"stft": dict(stft)}
    if input_level_db is not None:
        extra[checkpoint.INPUT_LEVEL_KEY] = input_level_db
    return checkpoint.write_checkpoint(uri, serialize(model), metrics=metrics, extra=extra)


def check_resumable(
    out_uri: str, model_config: Mapping[str, Any], state: Mapping[str, Any] | None
) -> None:
    """A run resumes from ``state`` (``out_uri/state.pt``) only with the same model config."""
    if state is None:
        return
    before, now = with_defaults(state.get("job", {}).get("model_config") or {}), dict(model_config)
    if before != with_defaults(now):
        diff = "; ".join(
            f"{k}: {before.get(k)!r} -> {now.get(k)!r}"
            for k in sorted(before.keys() | now.keys())
            if before.get(k) != now.get(k)
        )
        raise ConfigError(
            f"{out_uri} holds a {state['job'].get('model')} run with another model config ({diff}); "
            "use another --out or delete its state.pt"
        )


def with_defaults(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """``model_config`` with the fields its config class has gained since it was written, at their
    defaults (a state or checkpoint written before a new field, e.g. ``loss_power``, still matches)."""
    try:
        return config_from_dict(dict(model_config)).to_dict()
    except BatchsepError:  # unknown type or field: compare as written
        return dict(model_config)


def read_state(out_uri: str) -> dict[str, Any] | None:
    """The resumable state stored at ``out_uri/state.pt`` (None when there is none)."""
    uri = storage.join(out_uri, STATE_NAME)
    if not storage.exists(uri):
        return None
    return torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=False)


class ArtifactWriter:
    """Rank 0's callback: ``state.pt`` and ``curves.json`` every epoch, the model when it improved."""

    def __init__(self, job: TrainJob, model: BatchsepModel) -> None:
        self.job, self.model, self.t0 = job, model, time.perf_counter()

    def on_epoch_end(self, epoch: int, record: EpochRecord, state: TrainerState) -> bool:
        job = self.job
        snapshot = {**state.state_dict(), "job": asdict(job)}
        buf = io.BytesIO()
        torch.save(snapshot, buf)
        storage.write_bytes(storage.join(job.out_uri, STATE_NAME), buf.getvalue())
        if record.improved:
            write_model(
                job.out_uri, self.model, job.stft, metrics=self.metrics(state, None),
                input_level_db=job.input_level_db,
            )  # fmt: skip
        curves = learning_curves(state.history)
        storage.write_text(storage.join(job.out_uri, CURVES_JSON), json.dumps(curves, indent=2))
        valid = "n/a" if record.valid_loss is None else f"{record.valid_loss:.5f}"
        log_line(
            job.verbose,
            f"[train {job.model}] epoch {epoch}: train {record.train_loss:.5f} valid {valid}"
            f"{' *' if record.improved else ''} ({record.seconds:.1f} s)",
        )
        return False

    def write_png(self, history: list[EpochRecord]) -> None:
        """``curves.png`` (once, at the end: rendering costs more than a tiny model's epoch)."""
        png = render_learning_curves(
            {self.job.model: learning_curves(history)}, title=f"{self.job.model} learning curves"
        )
        storage.write_bytes(storage.join(self.job.out_uri, CURVES_PNG), png)

    def metrics(self, state: TrainerState, stop_reason: str | None) -> dict[str, Any]:
        best = state.best_epoch
        return {
            "model": self.job.model,
            "param_count": param_count(self.model),
            "best_epoch": best,
            "best_valid_loss": state.best_loss if best >= 0 else None,
            "epochs": len(state.history),
            "stop_reason": stop_reason,
            "wall_s": time.perf_counter() - self.t0,  # this session (a resumed run: since resuming)
            "epochs_s": sum(r.seconds for r in state.history),  # all epochs, across sessions
            "train_config": state.config.to_dict(),
            "data": self.job.data_info,
            "history": [r.to_dict() for r in state.history],
        }
