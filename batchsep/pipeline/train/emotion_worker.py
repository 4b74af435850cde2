"""One emotion training worker, Ray-free: the job it runs, its epoch callbacks, :func:`run_emotion_worker`.

The callbacks set the learning rate (linear warm-up, cosine decay), average the weights of the last epochs
(SWA), keep the best epoch by validation UAR or loss, and (rank 0) write the outputs every epoch.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from batchsep.dsp.mel import EmotionFeatureConfig
from batchsep.errors import ParameterError
from batchsep.evaluation.emotion import confusion_matrix, emotion_summary
from batchsep.io import checkpoint, storage
from batchsep.models.base import BatchsepModel, build_model, serialize
from batchsep.models.emotion import EMOTION_MODELS, EMOTIONS, EmotionClassifier
from batchsep.pipeline.train.data import log_line
from batchsep.pipeline.train.outputs import (
    CURVES_JSON,
    CURVES_PNG,
    STATE_NAME,
    check_resumable,
    read_state,
)
from batchsep.training.curves import learning_curves, render_learning_curves
from batchsep.training.data.emotion import (
    DEFAULT_TEST_ACTORS,
    DEFAULT_VALID_ACTORS,
    EmotionCorpus,
    load_emotion_corpus,
)
from batchsep.training.data.emotion_batches import EmotionBatches
from batchsep.training.loop import EpochRecord, TrainerState, fit
from batchsep.training.state import TrainConfig


@dataclass(frozen=True)
class EmotionTrainJob:
    """Everything an emotion training worker needs (plain values: it travels to Ray Train workers)."""

    model: str
    data_uri: str
    out_uri: str
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    features: dict[str, Any]
    valid_actors: tuple[int, ...] = DEFAULT_VALID_ACTORS
    test_actors: tuple[int, ...] = DEFAULT_TEST_ACTORS
    batch_size: int = 32
    seed: int = 0
    max_mel_shift: int = 3
    warmup_epochs: int = 3
    swa_epochs: int = 0
    select: str = "uar"
    cache_uri: str | None = None
    device: str = "cpu"
    verbose: bool = True
    data_info: dict[str, Any] = field(default_factory=dict)


def lr_factor(epoch: int, *, max_epochs: int, warmup: int) -> float:
    """Learning-rate multiplier of epoch ``epoch`` (0-based).

    Linear warm-up ``1/(w+1) … w/(w+1)`` over the first ``warmup`` epochs, then a cosine from 1 towards 0
    over the remaining epochs, floored at 0.01.
    """
    e = epoch + 1
    if e <= warmup:
        return e / (warmup + 1)
    progress = (e - warmup - 1) / max(1, max_epochs - warmup)
    return max(0.01, 0.5 * (1.0 + math.cos(math.pi * progress)))


def evaluate(model: EmotionClassifier, corpus: EmotionCorpus) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1, per-actor spread and confusion matrix (rows: true) on ``corpus``."""
    if len(corpus) == 0:
        return {"n": 0}
    x = torch.from_numpy(corpus.features()).to(next(model.parameters()).device)
    pred = np.concatenate([model.predict_proba(b).argmax(1).cpu().numpy() for b in x.split(128)])
    out: dict[str, Any] = dict(emotion_summary(corpus.labels, pred, speakers=corpus.actors))
    out["actors"] = sorted({int(a) for a in corpus.actors})
    out["confusion"] = confusion_matrix(corpus.labels, pred).tolist()
    out["labels"] = list(EMOTIONS)
    return out


class _Schedule:
    """Sets the learning rate for the next epoch (every rank, so that DDP replicas stay equal)."""

    def __init__(self, config: TrainConfig, warmup: int) -> None:
        self.config, self.warmup = config, warmup

    def set(self, state: TrainerState, epoch: int) -> None:
        f = lr_factor(epoch, max_epochs=self.config.max_epochs, warmup=self.warmup)
        for group in state.optimizer.param_groups:
            group["lr"] = self.config.lr * f

    def on_epoch_end(self, epoch: int, record: EpochRecord, state: TrainerState) -> bool:
        self.set(state, epoch + 1)
        return False


class _WeightAverage:
    """Running sum of the model's floating-point state over epochs ``>= start`` (SWA), resumable."""

    def __init__(self, model: BatchsepModel, start: int, saved: Mapping[str, Any] | None) -> None:
        self.model, self.start = model, start
        self.count = int(saved["count"]) if saved else 0
        self.sum: dict[str, torch.Tensor] = dict(saved["sum"]) if saved else {}

    def on_epoch_end(self, epoch: int, record: EpochRecord, state: TrainerState) -> bool:
        if epoch >= self.start:
            for k, v in self.model.state_dict().items():
                if v.is_floating_point():
                    v = v.detach().to("cpu", torch.float64)
                    self.sum[k] = self.sum[k] + v if k in self.sum else v.clone()
            self.count += 1
        return False

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum}

    def averaged(self, batches: EmotionBatches) -> BatchsepModel | None:
        """A copy of the model with the mean weights and batch-norm statistics recomputed on ``batches``."""
        if self.count == 0:
            return None
        avg = copy.deepcopy(self.model)
        state = avg.state_dict()
        for k, v in self.sum.items():
            state[k] = (v / self.count).to(state[k].dtype)
        avg.load_state_dict(state)
        norms = [m for m in avg.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if norms:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the pass
            avg.train()
            device = next(avg.parameters()).device
            with torch.no_grad():
                for batch in batches.batches(0):
                    avg(batch["logmel"].to(device))
        return avg.eval()


class _Selector:
    """Rank 0: after each epoch, the validation UAR; keeps the weights of the best epoch by ``by``.

    ``by="uar"``: highest validation UAR (the reported metric; robust to over-confident models whose
    validation loss rises while their accuracy still improves); ``by="loss"``: lowest validation loss.
    """

    def __init__(
        self,
        model: EmotionClassifier,
        valid: EmotionCorpus,
        by: str,
        saved: Mapping[str, Any] | None,
    ) -> None:
        self.model, self.valid, self.by, self.improved = model, valid, by, False
        self.best: dict[str, Any] = dict(saved) if saved else {"score": -math.inf, "epoch": -1}
        self.best.setdefault("uar", [])

    def score(self, model: EmotionClassifier, loss: float) -> tuple[float, float]:
        uar = float(evaluate(model, self.valid)["uar"])
        return (uar if self.by == "uar" else -loss), uar

    def on_epoch_end(self, epoch: int, record: EpochRecord, state: TrainerState) -> bool:
        score, uar = self.score(self.model, float(record.valid_loss or 0.0))
        self.best["uar"].append(uar)
        self.improved = score > self.best["score"]
        if self.improved:
            weights = {
                k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
            }
            self.best.update(score=score, epoch=epoch, state=weights)
        return False


@torch.no_grad()
def valid_loss(model: BatchsepModel, batches: EmotionBatches) -> float:
    """Mean of ``training_loss`` over ``batches`` in eval mode (what early stopping monitors)."""
    model.eval()
    device = next(model.parameters()).device
    losses = [
        float(model.training_loss({k: v.to(device) for k, v in b.items()})[0])
        for b in batches.batches(0)
    ]
    return float(np.mean(losses))


def _payload(model: BatchsepModel, features: Mapping[str, Any]) -> dict[str, Any]:
    return {**serialize(model), "features": dict(features)}


class _Writer:
    """Rank 0: ``state.pt`` every epoch, the model when it improved, learning curves."""

    def __init__(
        self, job: EmotionTrainJob, model: BatchsepModel, swa: _WeightAverage, sel: _Selector
    ) -> None:
        self.job, self.model, self.swa, self.sel = job, model, swa, sel
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, record: EpochRecord, state: TrainerState) -> bool:
        job = self.job
        buf = io.BytesIO()
        snapshot = {**state.state_dict(), "job": asdict(job), "swa": self.swa.state()}
        torch.save({**snapshot, "select": self.sel.best}, buf)
        storage.write_bytes(storage.join(job.out_uri, STATE_NAME), buf.getvalue())
        if self.sel.improved:
            checkpoint.write_checkpoint(
                job.out_uri, _payload(self.model, job.features), metrics=self.metrics(state)
            )
        curves = learning_curves(state.history)
        storage.write_text(storage.join(job.out_uri, CURVES_JSON), json.dumps(curves, indent=2))
        png = render_learning_curves({job.model: curves}, title=f"{job.model} learning curves")
        storage.write_bytes(storage.join(job.out_uri, CURVES_PNG), png)
        log_line(
            job.verbose,
            f"[train {job.model}] epoch {epoch}: train {record.train_loss:.4f} valid "
            f"{record.valid_loss:.4f} UAR {self.sel.best['uar'][-1]:.3f}"
            f"{' *' if self.sel.improved else ''} "
            f"({record.seconds:.1f} s)",
        )
        return False

    def metrics(self, state: TrainerState, stop_reason: str | None = None) -> dict[str, Any]:
        best = self.sel.best["epoch"]
        return {
            "model": self.job.model,
            "param_count": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            "best_epoch": best,
            "best_valid_loss": state.history[best].valid_loss if best >= 0 else None,
            "selected_by": f"valid {self.sel.by}",
            "valid_uar_history": list(self.sel.best["uar"]),
            "epochs": len(state.history),
            "stop_reason": stop_reason,
            "wall_s": time.perf_counter() - self.t0,
            "train_config": state.config.to_dict(),
            "data": self.job.data_info,
            "history": [r.to_dict() for r in state.history],
        }


def run_emotion_worker(
    job: EmotionTrainJob,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    reduce_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> dict[str, Any] | None:
    """Train ``job`` on one (DDP) worker; rank 0 writes the outputs and returns ``metrics.json``'s content."""
    config = TrainConfig.from_dict(job.train_config)
    torch.manual_seed(config.seed)
    model = build_model(job.model, job.model_config)
    if not isinstance(model, EmotionClassifier):
        raise ParameterError(f"model={job.model!r} is not an emotion model ({EMOTION_MODELS})")
    resume = read_state(job.out_uri)
    check_resumable(job.out_uri, job.model_config, resume)
    features = EmotionFeatureConfig.from_dict(job.features)
    splits = load_emotion_corpus(job.data_uri, features, cache_uri=job.cache_uri).split(
        valid_actors=job.valid_actors, test_actors=job.test_actors
    )
    if len(splits["valid"]) == 0:
        raise ParameterError(f"valid_actors={job.valid_actors} have no utterance in {job.data_uri}")
    train_src = EmotionBatches(
        splits["train"], batch_size=job.batch_size, max_mel_shift=job.max_mel_shift,
        seed=job.seed, rank=rank, world_size=world_size,
    )  # fmt: skip
    valid_src = EmotionBatches(
        splits["valid"], batch_size=64, shuffle=False, augment=False, rank=rank,
        world_size=world_size,
    )  # fmt: skip
    schedule = _Schedule(config, job.warmup_epochs)
    swa = _WeightAverage(model, config.max_epochs - job.swa_epochs, (resume or {}).get("swa"))
    sel = _Selector(model, splits["valid"], job.select, (resume or {}).get("select"))
    writer = _Writer(job, model, swa, sel) if rank == 0 else None
    # the first epoch's rate (fit starts Adam at config.lr; a resumed run continues the schedule)
    first = TrainConfig.from_dict(
        {**config.to_dict(), "lr": config.lr * lr_factor(
            0 if resume is None else int(resume["epoch"]), max_epochs=config.max_epochs,
            warmup=job.warmup_epochs)}
    )  # fmt: skip
    result = fit(
        model, train_src, lambda: valid_src.batches(0), config=first, device=device,
        callbacks=[schedule, swa, *([sel, writer] if writer else [])], resume=resume, wrap=wrap,  # type: ignore[list-item]
        reduce_metrics=reduce_metrics,
    )  # fmt: skip
    if writer is None:
        return None
    state = TrainerState(model, torch.optim.Adam([torch.zeros(1)]), config, torch.device("cpu"))
    state.history, state.best_epoch, state.best_loss = (
        result.history,
        result.best_epoch,
        result.best_loss,
    )
    metrics = writer.metrics(state, result.stop_reason)
    if sel.best.get("state") is not None:
        model.load_state_dict(sel.best["state"])
    if (
        job.swa_epochs
    ):  # the weight average replaces the selected epoch if it scores at least as well
        clean = EmotionBatches(splits["train"], batch_size=64, shuffle=False, augment=False)
        avg = swa.averaged(clean)
        score = sel.score(avg, valid_loss(avg, valid_src))[0] if avg is not None else None  # type: ignore[arg-type]
        chosen = avg is not None and score is not None and score >= sel.best["score"]
        metrics["swa"] = {"epochs": swa.count, "valid_score": score, "chosen": chosen}
        if chosen and avg is not None:
            model.load_state_dict(avg.state_dict())
    model.eval()
    metrics["valid"] = evaluate(model, splits["valid"])
    metrics["test"] = evaluate(model, splits["test"])
    checkpoint.write_checkpoint(job.out_uri, _payload(model, job.features), metrics=metrics)
    t = metrics["test"]
    log_line(
        job.verbose,
        f"[train {job.model}] done: {result.stop_reason}, selected epoch {metrics['best_epoch']}"
        f"{' + SWA' if metrics.get('swa', {}).get('chosen') else ''}; "
        f"test actors {t.get('actors')}: accuracy {t.get('accuracy', float('nan')):.3f}, "
        f"UAR {t.get('uar', float('nan')):.3f}; wall {metrics['wall_s']:.1f} s",
    )
    return metrics
