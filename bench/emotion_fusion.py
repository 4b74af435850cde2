"""The log-mel CNN member of ``bench/emotion.py`` and its late fusion with the statistics models.

Issue 20, session 14: does a CNN over log-mel spectrograms, whose evidence differs from the 389
utterance statistics, make errors less correlated with theirs than the statistics models make with each
other, so that averaging it in lifts the speaker-independent ensemble to the issue's bar (accuracy
≥ 0.60, UAR ≥ 0.58, ≥ 8 points above ``mfcc-svm`` in the same run)?

**Pre-registered before the run** (session 14; no other new rows, no weights tuned after the results):

stats-div+cnn
    Mean of the temperature-scaled (cross-fitted) probabilities of ``stats-div`` and ``cnn``, weight 1/2
    each. ``stats-div``'s probabilities are the equal-weight mean of its five members' temperature-
    scaled probabilities (``bench/emotion_members.py``) and are not re-scaled, so each statistics member
    weighs 1/10 and the CNN 1/2.
stats-6
    Equal-weight mean (1/6 each) of the temperature-scaled probabilities of the six members: the five
    of ``stats-div`` (``stats-mlp``, ``stats-svm``, ``stats-lr``, ``stats-lda``, ``stats-hgb``) and ``cnn``.

``cnn`` is the fixed ``emotion-cnn`` recipe of :func:`fit_cnn` (60 epochs, no validation choice) on the
trimmed log-mels of the same files, folds and seed as the statistics members. Ensembles may contain
ensembles (:func:`expand`, :func:`ensemble_order`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from emotion_members import ENSEMBLES as MEMBER_ENSEMBLES

from batchsep.corpus.ravdess import parse_ravdess_name
from batchsep.dsp.mel import EmotionFeatureConfig
from batchsep.models.emotion import EmotionCnn, EmotionCnnConfig
from batchsep.pipeline.train.emotion_worker import _WeightAverage, lr_factor
from batchsep.training.data.emotion import EmotionCorpus, utterance_log_mel
from batchsep.training.data.emotion_batches import EmotionBatches

FUSIONS = {
    "stats-div+cnn": ("stats-div", "cnn"),
    "stats-6": (*MEMBER_ENSEMBLES["stats-div"], "cnn"),
}
"""The pre-registered fusions (module docstring): ensemble name -> what it averages with equal weights."""


def expand(models: Iterable[str], ensembles: Mapping[str, tuple[str, ...]]) -> set[str]:
    """Every model needed for ``models``: themselves and, recursively, the parts of their ensembles."""
    out: set[str] = set()
    todo = list(models)
    while todo:
        m = todo.pop()
        if m not in out:
            out.add(m)
            todo.extend(ensembles.get(m, ()))
    return out


def ensemble_order(models: Iterable[str], ensembles: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The ensembles needed for ``models`` (nested ones included), each after the ensembles it averages."""
    order: list[str] = []

    def visit(m: str) -> None:
        if m in ensembles and m not in order:
            for part in ensembles[m]:
                visit(part)
            order.append(m)

    for m in models:
        visit(m)
    return order


def load_mels(root: Path, cfg: EmotionFeatureConfig, labels: np.ndarray,
              actors: np.ndarray) -> list[np.ndarray]:  # fmt: skip
    """Trimmed log-mels of the files of ``root`` in the bench's order (sorted, actors ≤ 16), checked
    against the cached features' ``labels`` and ``actors`` (for ``--features``, which holds no mels)."""
    files = sorted(f for f in root.rglob("*.flac") if parse_ravdess_name(f.name).actor <= 16)
    names = [parse_ravdess_name(f.name) for f in files]
    if [n.actor for n in names] != actors.tolist() or [n.label for n in names] != labels.tolist():
        raise SystemExit(f"{root}: other files or order than the cached features")
    return [utterance_log_mel(sf.read(f, dtype="float32")[0], cfg) for f in files]


def fit_cnn(mels: list[np.ndarray], y: np.ndarray, a: np.ndarray, args: argparse.Namespace,
            cfg: EmotionFeatureConfig) -> EmotionCnn:  # fmt: skip
    """The shipped recipe on the given training utterances (fixed epochs, SWA, no validation choice)."""
    torch.manual_seed(args.seed)
    model = EmotionCnn(EmotionCnnConfig(label_smoothing=0.1))
    corpus = EmotionCorpus(mels, y, a, [""] * len(mels), cfg)
    batches = EmotionBatches(corpus, batch_size=32, max_mel_shift=4, seed=args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    swa = _WeightAverage(model, args.cnn_epochs - args.swa_epochs, None)
    for epoch in range(args.cnn_epochs):
        for g in opt.param_groups:
            g["lr"] = 2e-3 * lr_factor(epoch, max_epochs=args.cnn_epochs, warmup=3)
        model.train()
        for batch in batches.batches(epoch):
            loss, _ = model.training_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        swa.on_epoch_end(epoch, None, None)  # type: ignore[arg-type]
    clean = EmotionBatches(corpus, batch_size=64, shuffle=False, augment=False)
    avg = swa.averaged(clean)
    return (avg or model).eval()  # type: ignore[return-value]


def cnn_logp(model: EmotionCnn, mels: list[np.ndarray], y: np.ndarray, a: np.ndarray,
             cfg: EmotionFeatureConfig) -> np.ndarray:  # fmt: skip
    """Log-probabilities ``[n, 8]`` of ``model`` on whole trimmed utterances (crop and normalisation of
    :class:`EmotionCorpus`)."""
    test = EmotionCorpus(mels, y, a, [""] * len(mels), cfg)
    with torch.no_grad():
        return torch.log_softmax(model(torch.from_numpy(test.features())), 1).numpy()  # type: ignore[no-any-return]
