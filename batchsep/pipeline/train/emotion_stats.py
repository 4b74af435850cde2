"""Training ``emotion-stats`` (MLP ensemble over utterance statistics) with leave-actors-out CV, Ray-free.

:func:`train_emotion_stats` reads a RAVDESS-named audio folder (any rate; converted to 16 kHz mono),
computes :func:`batchsep.dsp.emotion_stats.emotion_stats` of every file and of augmented copies
(:func:`augmented_copies`: speed ×0.9 and ×1.1, and additive real noise at 5-20 dB SNR with a random gain
when a noise folder is given), then

1. **cross-validates** over actors: the actors are cut into ``n_folds`` groups of consecutive actors; each
   fold trains on the others (their clean and augmented copies) and predicts its own actors' clean files.
   The out-of-fold predictions give the reported accuracy / UAR / macro-F1 per fold and the
   **temperature** (one scalar minimising their NLL) — figures on actors the scoring model never heard;
2. trains the **final model on every actor** with that temperature, written as ``config.json`` /
   ``weights.safetensors``; ``metrics.json`` holds the CV figures (``cv``), the ECE before and after
   temperature scaling and the training settings. A few seconds of CPU per fold once the features exist.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from batchsep.dsp.emotion_stats import STATS_SR, emotion_stats
from batchsep.dsp.resample import to_rate_mono
from batchsep.errors import ParameterError, StorageError
from batchsep.evaluation.emotion import emotion_summary
from batchsep.io import audio, checkpoint, storage
from batchsep.models.base import serialize
from batchsep.models.emotion import EMOTIONS
from batchsep.models.emotion_stats import EmotionStats, EmotionStatsConfig
from batchsep.pipeline.train.data import log_line
from batchsep.pipeline.train.types import TrainSummary
from batchsep.training.data.emotion import _labelled, _locate

SPEEDS = (0.9, 1.1)
"""Speed-perturbation factors of the augmented copies (tempo and pitch together, as Kaldi's)."""


def _decode(uri: str) -> np.ndarray:
    d = audio.decode(storage.read_bytes(uri))
    return np.asarray(to_rate_mono(d.samples, d.sample_rate, STATS_SR), np.float32)


def augmented_copies(
    x: np.ndarray, rng: np.random.Generator, noises: Sequence[np.ndarray] = ()
) -> list[np.ndarray]:
    """Speed-perturbed copies of a 16 kHz utterance, and one noisy copy when ``noises`` are given.

    The noisy copy adds a random excerpt of a random noise at an SNR drawn in [5, 20] dB and scales the
    sum by a gain drawn in [-10, 0] dB.
    """
    import librosa

    out = [
        librosa.resample(x, orig_sr=STATS_SR, target_sr=round(STATS_SR / s), res_type="soxr_hq")
        for s in SPEEDS
    ]
    if noises:
        n = noises[int(rng.integers(len(noises)))]
        if n.size < x.size:
            n = np.tile(n, x.size // max(n.size, 1) + 1)
        o = int(rng.integers(0, n.size - x.size + 1))
        n = n[o : o + x.size]
        snr = rng.uniform(5.0, 20.0)
        g = np.sqrt(np.mean(x**2) / max(float(np.mean(n**2)), 1e-12) / 10 ** (snr / 10))
        out.append(((x + g * n) * 10 ** (rng.uniform(-10.0, 0.0) / 20)).astype(np.float32))
    return [np.asarray(c, np.float32) for c in out]


def stats_corpus(
    data_uri: str, *, noise_uri: str | None = None, seed: int = 0, augment: bool = True,
    actors: Sequence[int] | None = None, verbose: bool = False,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Features of every RAVDESS-named file under ``data_uri`` and of its augmented copies.

    Returns
    -------
    dict
        ``x`` [n, N_STATS], ``y``, ``actor`` [n] of the clean files; ``aug_x`` [m, N_STATS], ``aug_of`` [m]
        (the clean item each copy comes from).
    """
    _, entries = _locate(storage.normalize(data_uri))
    if not entries:
        raise StorageError(f"no audio under {data_uri} (emotion-stats trains on audio files)")
    keep, labels, actor_of = _labelled([rel for _, rel in entries])
    if actors is not None:  # only these actors
        sel = [k for k, a in enumerate(actor_of) if a in set(actors)]
        keep, labels, actor_of = ([v[k] for k in sel] for v in (keep, labels, actor_of))
        if not keep:
            raise StorageError(f"no file of actors {sorted(actors)} under {data_uri}")
    noises = []
    if noise_uri is not None and augment:
        noises = [_decode(e.uri) for e in storage.list_files(noise_uri)
                  if audio.is_audio_name(e.rel_path)]  # fmt: skip
        if not noises:
            raise StorageError(f"no noise audio under {noise_uri}")
    rng = np.random.default_rng(seed)
    xs, aug, aug_of = [], [], []
    t0 = time.perf_counter()
    for k, i in enumerate(keep):
        x = _decode(entries[i][0])
        xs.append(emotion_stats(x))
        if augment:
            for c in augmented_copies(x, rng, noises):
                aug.append(emotion_stats(c))
                aug_of.append(k)
        if (k + 1) % 120 == 0:
            log_line(verbose, f"[emotion-stats] features {k + 1}/{len(keep)} "
                              f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return {
        "x": np.array(xs), "y": np.array(labels, np.int64), "actor": np.array(actor_of, np.int64),
        "aug_x": np.array(aug).reshape(-1, len(xs[0])), "aug_of": np.array(aug_of, np.int64),
    }  # fmt: skip


def speaker_standardise(
    x: np.ndarray, groups: np.ndarray, ref_x: np.ndarray | None = None,
    ref_groups: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Z-score every row of ``x`` with the mean and std of its group (speaker) in ``ref_x``.

    Per-speaker normalisation, a known large gain in speech emotion recognition: it removes the speaker's
    own voice (pitch, timbre, level habits) and keeps how each utterance departs from that speaker's
    average. It needs several unlabelled utterances of the same speaker at scoring time (RAVDESS: the 60
    files of the actor, all eight emotions) — ``batchsep tag`` does not do it; the bench reports it as
    separate rows (docs/emotion.md).

    Parameters
    ----------
    x : np.ndarray [shape=(n, d)]
    groups : np.ndarray [shape=(n,)]
        Speaker of each row.
    ref_x, ref_groups : np.ndarray, optional
        Rows whose per-group mean and std are used (default: ``x`` and ``groups`` themselves; the
        augmented copies of an actor use the actor's clean files). Every group of ``groups`` must occur.

    Returns
    -------
    np.ndarray [shape=(n, d)], float64
    """
    ref_x = x if ref_x is None else ref_x
    ref_groups = groups if ref_groups is None else ref_groups
    out = np.empty(x.shape, np.float64)
    for g in np.unique(groups):
        ref = ref_x[ref_groups == g]
        if ref.shape[0] < 2:
            raise ParameterError(f"speaker {g!r} has {ref.shape[0]} reference rows: need >= 2")
        sel = groups == g
        out[sel] = (x[sel] - ref.mean(0)) / (ref.std(0) + 1e-6)
    return out


def fit_stats_model(
    x: np.ndarray, y: np.ndarray, config: EmotionStatsConfig, *, seed: int = 0, epochs: int = 60,
    lr: float = 1e-3, weight_decay: float = 1e-3, batch_size: int = 64,
) -> EmotionStats:  # fmt: skip
    """Train an :class:`EmotionStats` on features ``x [n, n_features]`` and labels ``y [n]`` (Adam)."""
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ParameterError(f"x shape={x.shape}, y shape={y.shape}: need [n, d] and [n], n >= 2")
    torch.manual_seed(seed)
    model = EmotionStats(config)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    model.set_standardizer(xt)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(xt.shape[0], generator=gen)
        for b in order.split(batch_size):
            loss, _ = model.training_loss({"stats": xt[b], "label": yt[b]})
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def actor_folds(actors: Sequence[int], n_folds: int) -> list[tuple[int, ...]]:
    """The sorted distinct actors cut into ``n_folds`` groups of consecutive actors."""
    distinct = sorted({int(a) for a in actors})
    if not 2 <= n_folds <= len(distinct):
        raise ParameterError(f"n_folds={n_folds} must be in [2, {len(distinct)} actors]")
    return [tuple(int(a) for a in g) for g in np.array_split(np.array(distinct), n_folds)]


def cross_validate(
    data: Mapping[str, np.ndarray], config: EmotionStatsConfig, folds: Sequence[Sequence[int]],
    **fit: Any,
) -> np.ndarray:  # fmt: skip
    """Out-of-fold log-probabilities ``[n, n_classes]`` (temperature 1) of the clean files.

    Fold k's model trains on the clean and augmented features of every actor outside ``folds[k]``.
    """
    x, y, actor = data["x"], data["y"], data["actor"]
    aug_actor = actor[data["aug_of"]] if data["aug_of"].size else np.zeros(0, np.int64)
    out = np.zeros((x.shape[0], config.n_classes))
    for test in folds:
        te, ate = np.isin(actor, test), np.isin(aug_actor, test)
        xs = np.concatenate([x[~te], data["aug_x"][~ate]]) if ate.size else x[~te]
        ys = np.concatenate([y[~te], y[data["aug_of"][~ate]]]) if ate.size else y[~te]
        model = fit_stats_model(xs, ys, config, **fit)
        with torch.no_grad():
            out[te] = model(torch.from_numpy(x[te].astype(np.float32))).numpy()
    return out


def softmax_t(logp: np.ndarray, t: float) -> np.ndarray:
    """``softmax(logp / t)`` row-wise."""
    z = logp / t
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logp: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [0.25, 8] (121 log-spaced values) minimising the NLL of ``softmax(logp / T)``."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))
    nll = [-np.log(softmax_t(logp, t)[np.arange(y.size), y] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def ece(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top probability (``bins`` equal-width bins)."""
    conf, hit = p.max(1), (p.argmax(1) == y).astype(float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(hit[idx == b].mean() - conf[idx == b].mean()) * (idx == b).mean()
                     for b in range(bins) if (idx == b).any()))  # fmt: skip


def train_emotion_stats(
    data_uri: str, out_uri: str, *, overrides: Mapping[str, Any] | None = None,
    noise_uri: str | None = None, n_folds: int = 4, seed: int = 0, epochs: int = 60,
    lr: float = 1e-3, weight_decay: float = 1e-3, augment: bool = True,
    actors: Sequence[int] | None = None, verbose: bool = True,
    features: Mapping[str, np.ndarray] | None = None,
) -> TrainSummary:  # fmt: skip
    """Cross-validate, calibrate and train ``emotion-stats`` on all actors of ``data_uri`` (module docstring).

    Parameters
    ----------
    data_uri : str
        Audio folder (or scan run) with RAVDESS file names.
    out_uri : str
        Model folder.
    overrides : mapping, optional
        :class:`EmotionStatsConfig` fields (``hidden``, ``n_members``, ``dropout`` …).
    noise_uri : str, optional
        Folder of noise recordings for the noisy augmented copies (none: speed copies only).
    n_folds, seed, epochs, lr, weight_decay
        Actor folds of the cross-validation; randomness; epochs, AdamW rate and weight decay of each fit.
    augment : bool
        Add the augmented copies (:func:`augmented_copies`) to the training sets.
    actors : sequence of int, optional
        Train (and cross-validate) on these actors only (default: every RAVDESS-named file).
    features : mapping, optional
        :func:`stats_corpus`'s output for ``data_uri`` with the same ``noise_uri``, ``seed``, ``augment``
        and ``actors``, computed before (e.g. cached by ``bench/emotion.py``): skips the feature pass. The
        caller vouches that it matches; only its shapes are checked.
    """
    t0 = time.perf_counter()
    out_uri = storage.normalize(out_uri)
    storage.check_writable(out_uri)
    config = EmotionStatsConfig.from_dict(dict(overrides or {}))
    if features is None:
        data = stats_corpus(data_uri, noise_uri=noise_uri, seed=seed, augment=augment, actors=actors,
                            verbose=verbose)  # fmt: skip
    else:
        data = {k: np.asarray(features[k]) for k in ("x", "y", "actor", "aug_x", "aug_of")}
        if data["x"].shape[1:] != (config.n_features,) or data["y"].shape != data["actor"].shape:
            raise ParameterError(f"features x shape={data['x'].shape} do not match the model's "
                                 f"{config.n_features} statistics")  # fmt: skip
    folds = actor_folds(data["actor"].tolist(), n_folds)
    fit = {"seed": seed, "epochs": epochs, "lr": lr, "weight_decay": weight_decay}
    logp = cross_validate(data, config, folds, **fit)
    y, actor = data["y"], data["actor"]
    t = fit_temperature(logp, y)
    p_cal = softmax_t(logp, t)
    per_fold = []
    for f in folds:
        sel = np.isin(actor, f)
        per_fold.append({"actors": list(f), **emotion_summary(y[sel], p_cal[sel].argmax(1))})
    pooled = emotion_summary(y, p_cal.argmax(1), speakers=actor)
    summary = {m: {"mean": float(np.mean([f[m] for f in per_fold])),
                   "std": float(np.std([f[m] for f in per_fold]))}
               for m in ("accuracy", "uar", "macro_f1")}  # fmt: skip
    log_line(verbose, f"[emotion-stats] {n_folds}-fold leave-actors-out CV: accuracy "
             f"{summary['accuracy']['mean']:.3f} ± {summary['accuracy']['std']:.3f}, UAR "
             f"{summary['uar']['mean']:.3f} ± {summary['uar']['std']:.3f}; temperature {t:.2f}")  # fmt: skip
    final_cfg = EmotionStatsConfig.from_dict({**config.to_dict(), "temperature": t})
    x_all = np.concatenate([data["x"], data["aug_x"]]) if data["aug_x"].size else data["x"]
    y_all = np.concatenate([y, y[data["aug_of"]]]) if data["aug_of"].size else y
    model = fit_stats_model(x_all, y_all, final_cfg, **fit)  # type: ignore[arg-type]
    metrics = {
        "model": "emotion-stats",
        "param_count": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "epochs": epochs, "best_epoch": epochs - 1, "stop_reason": "max_epochs",
        "selected_by": "a fixed recipe; figures from leave-actors-out CV",
        # what `batchsep train` prints as held-out figures: every file scored by a fold model that never
        # heard its actor (pooled out-of-fold predictions)
        "test": {**pooled, "actors": sorted({int(a) for a in actor}), "out_of_fold": True},
        "trained_on_actors": sorted({int(a) for a in actor}),
        "n_train": int(x_all.shape[0]), "n_clean": int(y.size),
        "cv": {"folds": per_fold, "summary": summary, "pooled": pooled,
               "ece_raw": ece(softmax_t(logp, 1.0), y), "ece_calibrated": ece(p_cal, y),
               "temperature": t, "labels": list(EMOTIONS)},
        "data": {"data_uri": storage.normalize(data_uri), "noise_uri": noise_uri, "seed": seed,
                 "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "speeds": list(SPEEDS),
                 "n_folds": n_folds, "augment": augment},
        "wall_s": time.perf_counter() - t0,
    }  # fmt: skip
    payload = {**serialize(model), "features": {"type": "emotion_stats", "sample_rate": STATS_SR}}
    checkpoint.write_checkpoint(out_uri, payload, metrics=metrics)
    return TrainSummary.from_metrics(out_uri, metrics)
