"""Emotion tagger yardstick: leave-actors-out cross-validation of a naive MFCC + SVM baseline and our models.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/emotion.py [--quick] [--models ...] [--out J]

RAVDESS speech, actors 01-16 (``--data``), 4 folds of 4 actors ({1-4}, {5-8}, {9-12}, {13-16}: two male and
two female voices each); every model is trained on the other 12 actors of a fold and scored on its 4, so
no actor is in train and test of one fold. Per model: accuracy, UAR and macro-F1 as mean ± std over the
4 folds (and the min fold), the accuracy ratio to the baseline measured in the same run, and for models with
probabilities the expected calibration error (ECE, 15 equal-width bins of the top probability) raw and
after temperature scaling, the temperature cross-fitted: fold k's T minimises the NLL of the other three
folds' held-out predictions, so no test item chooses its own T.

Models (``--models``):

mfcc-svm
    The naive peer: mean and std over time of 40 MFCCs (librosa defaults) of the whole file, standardised,
    RBF SVM (C chosen in {1, 10, 100} by inner leave-actors-out CV on the training actors; Platt
    probabilities).
stats-svm
    Utterance statistics of spectral, energy and prosody tracks (:func:`emotion_stats`, 389 values:
    MFCC and delta-MFCC, spectral shape, frame energy, F0 by YIN in semitones, voicing ratio, durations,
    log-mel bands, spectral slopes, LPC formants, shimmer, rhythm) of the voice-trimmed utterance,
    standardised, RBF SVM (C by inner CV as above).
stats-mlp
    Ours, the shipped ``emotion-stats`` (:mod:`batchsep.models.emotion_stats`) trained as
    :func:`batchsep.pipeline.train.emotion_stats.train_emotion_stats` trains it: the same 389 statistics,
    an average of 5 MLPs (256 hidden, dropout 0.2, input noise), 60 epochs of AdamW, on the training actors'
    files and their augmented copies (speed ×0.9 / ×1.1, and real noise from ``--noise`` at 5-20 dB with
    a random gain). ``stats-mlp-noaug``: the same without the copies.
stats-ens
    Mean of the temperature-scaled probabilities of ``stats-svm`` and ``stats-mlp``.
mfcc-svm+spk, stats-svm+spk, stats-mlp+spk, stats-ens+spk
    The same models on **speaker-normalised** features: every actor's vectors (and its augmented copies)
    z-scored with the mean and std of that actor's clean files
    (:func:`batchsep.pipeline.train.emotion_stats.speaker_standardise`). The test actors are normalised
    with their own 60 files (unlabelled, but all eight emotions in RAVDESS's proportions): a test-time
    adaptation that needs a batch of files known to come from one speaker, which ``batchsep tag`` does
    not do. These rows say what that information is worth; they are not the shipped tagger's figures.
mfcc-svm+run, stats-svm+run, stats-mlp+run, stats-ens+run
    **Per-run normalisation**: the features of every *run* z-scored with that run's own mean and std,
    what ``batchsep tag`` could do over a folder in two passes. A run is one fold of 4 actors (240
    files, unlabelled): the test fold is normalised with its own files, each training fold with its
    own (an augmented kind of copy — speed ×0.9, ×1.1, noisy — as a run of its own, as a noisy folder
    would be). The ``+run`` models are also scored on smaller or unbalanced runs cut from the test fold
    (:data:`SUBRUNS`), normalised by their own statistics, beside the plain model on the same files.
cnn
    The shipped recipe (``emotion-cnn``, jobs/train_default_emotion.yaml): 60 epochs of Adam (lr 2e-3,
    3 warm-up epochs, cosine), label smoothing 0.1, mixup, SpecAugment masks, mel shift ±4, SWA over the last
    15 epochs; trained on all 12 training actors of the fold (no validation choice: fixed recipe).
cnn+stats
    Mean of the temperature-scaled probabilities of ``cnn`` and ``stats-svm``.
stats-div+cnn, stats-6
    Session 14, **pre-registered before the run** (``bench/emotion_fusion.py``): ``stats-div+cnn`` is the
    mean of the temperature-scaled probabilities of ``stats-div`` and ``cnn``, weight 1/2 each;
    ``stats-6`` the equal-weight mean of the six members (the five of ``stats-div`` and ``cnn``). Fixed
    weights, not tuned on these folds. With ``--features`` the CNN's log-mels are computed from ``--data``.
stats-lr, stats-lda, stats-hgb; stats-mlp-lr, stats-mlp-lda, stats-lin, stats-div
    Session 13: logistic regression, shrinkage LDA and gradient-boosted trees over the same statistics
    (with the augmented copies), and equal-weight ensembles of them with ``stats-mlp`` / ``stats-svm``
    (``bench/emotion_members.py``). ``--reuse PATH``: take ``stats-mlp``'s (and any other listed model's)
    calibrated out-of-fold probabilities from an earlier run's ``--out`` JSON on the same features
    instead of refitting it (checked: same files and order; its figures are that run's).

Features are cached under ``--cache`` (key: file list and feature settings). ``--quick``: 2 folds and 8 CNN
epochs, a smoke test of the whole path (its figures mean nothing). Scores are of whole trimmed utterances
(the classifier); the product path (voiced segments) is ``bench/emotion_noise.py`` / ``batchsep tag``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile as sf
import torch

import batchsep.dsp.emotion_stats as emotion_stats_mod
from batchsep.corpus.ravdess import parse_ravdess_name
from batchsep.dsp.emotion_stats import N_STATS
from batchsep.dsp.mel import EmotionFeatureConfig
from batchsep.evaluation.emotion import emotion_summary
from batchsep.models.emotion_stats import EmotionStatsConfig
from batchsep.pipeline.enhance.tag import MIN_CONFIDENCE
from batchsep.pipeline.train.emotion_stats import (
    SPEEDS,
    augmented_copies,
    cross_validate,
    ece,
    fit_stats_model,
    fit_temperature,
    softmax_t,
    speaker_standardise,
    stats_corpus,
)  # fmt: skip
from batchsep.training.data.emotion import utterance_log_mel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/emotion_{members,fusion}.py
import emotion_fusion
import emotion_members

SR = 16000
FOLDS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16))
SPK = ("mfcc-svm+spk", "stats-svm+spk", "stats-mlp+spk", "stats-ens+spk")
RUN = ("mfcc-svm+run", "stats-svm+run", "stats-mlp+run", "stats-ens+run")
ALL_MODELS = ("mfcc-svm", "stats-svm", "stats-mlp", "stats-mlp-noaug", "stats-ens", "cnn", "cnn+stats",
              *SPK, *RUN, *emotion_members.MEMBERS, *emotion_members.ENSEMBLES, *emotion_fusion.FUSIONS)  # fmt: skip
DEFAULT_MODELS = ("mfcc-svm", "stats-svm", "stats-mlp-noaug", "stats-mlp", "stats-ens", *SPK)
ENSEMBLES = {"stats-ens": ("stats-svm", "stats-mlp"), "stats-ens+spk": ("stats-svm+spk", "stats-mlp+spk"),
             "stats-ens+run": ("stats-svm+run", "stats-mlp+run"), "cnn+stats": ("cnn", "stats-svm"),
             **emotion_members.ENSEMBLES, **emotion_fusion.FUSIONS}  # fmt: skip
SUBRUNS = {"one actor (60 files, all emotions)": None, "20 random files of the fold": 20,
           "low arousal only (neutral, calm, sad)": (0, 1, 3),
           "high arousal only (happy, angry, fearful, surprised)": (2, 4, 5, 7)}  # fmt: skip
"""Runs (subsets of a test fold) the ``+run`` models are also scored on, each normalised by its own
statistics: how the gain holds when a run is small or not balanced over the emotions."""
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "emotion" / "ravdess"
NOISE = DATA.parents[1] / "noise"


# ----------------------------------------------------------------------------------------- features
def mfcc_baseline(x: np.ndarray) -> np.ndarray:
    """The peer's features: mean and std of 40 MFCCs (librosa defaults) over the whole file."""
    m = librosa.feature.mfcc(y=x, sr=SR, n_mfcc=40)
    return np.concatenate([m.mean(1), m.std(1)])


def load_features(root: Path, cache: Path, mel_cfg: EmotionFeatureConfig, noise: str | None,
                  seed: int, mels: bool) -> dict[str, Any]:  # fmt: skip
    """Labels, actors, baseline features, ``emotion_stats`` of each file and of its augmented copies
    (:func:`batchsep.pipeline.train.emotion_stats.stats_corpus`), and (``mels``) trimmed log-mels; cached."""
    files = sorted(f for f in root.rglob("*.flac") if parse_ravdess_name(f.name).actor <= 16)
    code = hashlib.sha1(
        (
            Path(str(emotion_stats_mod.__file__)).read_text()  # features follow code
            + inspect.getsource(augmented_copies)
        ).encode()
    ).hexdigest()
    key = hashlib.sha1(json.dumps([[f.name for f in files], mel_cfg.to_dict(), noise, seed,
                                   N_STATS, SPEEDS, code]).encode()).hexdigest()[:12]  # fmt: skip
    path = cache / f"emotion_bench_{key}.npz"
    if path.exists():
        z = np.load(path)
        out = {k: z[k] for k in z.files}
    else:
        base = np.array([mfcc_baseline(sf.read(f, dtype="float32")[0]) for f in files])
        st = stats_corpus(str(root), noise_uri=noise, seed=seed, verbose=True)
        names = [parse_ravdess_name(f.name) for f in files]
        assert [n.actor for n in names] == st["actor"].tolist(), "file order differs"
        out = {"labels": st["y"], "actors": st["actor"], "base": base, "stats": st["x"],
               "aug_x": st["aug_x"], "aug_of": st["aug_of"]}  # fmt: skip
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)
    if mels:
        out["mels"] = [utterance_log_mel(sf.read(f, dtype="float32")[0], mel_cfg) for f in files]
    return out


# --------------------------------------------------------------------------------------------- models
def fit_svm(X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """A fitted pipeline's ``predict_proba`` after choosing C by inner leave-actors-out CV."""
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    pipe = make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale", random_state=seed))
    search = GridSearchCV(pipe, {"svc__C": [1.0, 10.0, 100.0]}, cv=GroupKFold(3), n_jobs=1)
    search.fit(X, y, groups=groups)
    best = search.best_params_["svc__C"]
    final = make_pipeline(
        StandardScaler(), SVC(C=best, gamma="scale", probability=True, random_state=seed)
    )
    return final.fit(X, y), best  # type: ignore[return-value]


SUBRUN_SIZE = {"one actor (60 files, all emotions)": "60", "20 random files of the fold": "20",
               "low arousal only (neutral, calm, sad)": "80",
               "high arousal only (happy, angry, fearful, surprised)": "128"}  # fmt: skip


def _subruns(te: np.ndarray, actors: np.ndarray, y: np.ndarray,
             rng: np.random.Generator) -> dict[str, list[np.ndarray]]:  # fmt: skip
    """The :data:`SUBRUNS` of one test fold (indices ``te``): a list of runs (file indices) each."""
    out: dict[str, list[np.ndarray]] = {}
    for sub, how in SUBRUNS.items():
        if how is None:  # every actor of the fold on its own
            out[sub] = [te[actors[te] == a] for a in np.unique(actors[te])]
        elif isinstance(how, int):  # disjoint random draws covering the fold
            perm = rng.permutation(te)
            out[sub] = [perm[i : i + how] for i in range(0, perm.size - how + 1, how)]
        else:
            out[sub] = [te[np.isin(y[te], how)]]
    return out


def _score_subruns(res: dict[str, list[float]], subs: dict[str, list[np.ndarray]], raw: np.ndarray,
                   y: np.ndarray, predict: Any) -> None:  # fmt: skip
    """Append to ``res[sub]`` the accuracy over ``subs[sub]``'s runs, each run's raw features z-scored
    with its own mean and std before ``predict``."""
    for sub, runs in subs.items():
        z = [speaker_standardise(raw[i], np.zeros(i.size, np.int64)) for i in runs]
        hit = [predict(x) == y[i] for x, i in zip(z, runs, strict=True)]
        res.setdefault(sub, []).append(float(np.concatenate(hit).mean()))


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA), help="RAVDESS folder with Actor_01..Actor_16")
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=ALL_MODELS)
    ap.add_argument("--quick", action="store_true", help="2 folds, 8 CNN epochs: a smoke test")
    ap.add_argument("--cnn-epochs", type=int, default=60)
    ap.add_argument("--swa-epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=60, help="training epochs of stats-mlp")
    ap.add_argument("--noise", default=str(NOISE), help="noise folder of stats-mlp's augmentation")
    ap.add_argument("--cache", default="/tmp/batchsep-emotion-bench", help="feature cache folder")
    ap.add_argument("--features", default=None,
                    help="a cached feature file (npz) to use as is, whatever the code's key (e.g. features "
                         "made before a refactor of emotion_stats that keeps its outputs)")  # fmt: skip
    ap.add_argument("--out", default=None, help="write per-fold figures and predictions (JSON)")
    ap.add_argument("--reuse", default=None, metavar="JSON",
                    help="an earlier run's --out on the same features: its calibrated probabilities of "
                         "--reuse-models are used instead of refitting them")  # fmt: skip
    ap.add_argument("--reuse-models", nargs="+", default=["stats-mlp"], choices=ALL_MODELS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    folds = FOLDS[:2] if args.quick else FOLDS
    if args.quick:
        args.cnn_epochs, args.swa_epochs = 8, 3
    t0 = time.time()
    cfg = EmotionFeatureConfig()
    wanted = emotion_fusion.expand(args.models, ENSEMBLES)  # ensembles of ensembles too
    want_mels = "cnn" in wanted
    d: dict[str, Any]
    if args.features:
        z = np.load(args.features)
        d = {k: z[k] for k in z.files}
        if want_mels:
            d["mels"] = emotion_fusion.load_mels(Path(args.data), cfg, d["labels"], d["actors"])
    else:
        d = load_features(Path(args.data), Path(args.cache), cfg, args.noise, args.seed, want_mels)
    y, actors = d["labels"], d["actors"]
    reused = emotion_members.reuse_probs(args.reuse, [m for m in args.reuse_models if m in wanted],
                                         y, actors) if args.reuse else {}  # fmt: skip
    wanted -= set(reused)
    # "+spk": every actor's features z-scored with its own clean files (test actors too: unlabelled)
    spk = {
        "base": speaker_standardise(d["base"], actors),
        "stats": speaker_standardise(d["stats"], actors),
    }
    spk["aug_x"] = speaker_standardise(d["aug_x"], actors[d["aug_of"]], d["stats"], actors)
    # "+run": every fold of 4 actors z-scored with its own files (each kind of augmented copy on its own)
    group = np.searchsorted(np.array([f[-1] for f in FOLDS]), actors)
    kind = np.arange(d["aug_of"].size) - np.searchsorted(d["aug_of"], d["aug_of"])
    run = {"base": speaker_standardise(d["base"], group), "stats": speaker_standardise(d["stats"], group),
           "aug_x": speaker_standardise(d["aug_x"], group[d["aug_of"]] * 16 + kind)}  # fmt: skip
    subruns: dict[str, dict[str, list[float]]] = {}  # +run model -> sub-run -> accuracy per fold
    subrun_idx: dict[str, list[np.ndarray]] = {}  # sub-run -> its files per fold (for plain rows)
    rng = np.random.default_rng(args.seed)
    print(f"{y.size} files, actors {sorted(set(actors.tolist()))}; features {time.time() - t0:.0f} s",
          flush=True)  # fmt: skip
    logp: dict[str, np.ndarray] = {}  # model -> out-of-fold log-probabilities [n, 8]
    info: dict[str, list[Any]] = {m: [] for m in args.models}
    tested = np.zeros(y.size, bool)
    for k, test_actors in enumerate(folds):
        te = np.isin(actors, test_actors)
        tr = np.isin(actors, sum(FOLDS, ())) & ~te  # every other actor of 01-16 trains
        assert not set(actors[tr].tolist()) & set(actors[te].tolist())
        tested |= te
        subs = _subruns(np.flatnonzero(te), actors, y, rng)
        for sub, sub_runs in subs.items():
            subrun_idx.setdefault(sub, []).append(np.concatenate(sub_runs))
        for name, feats in (("mfcc-svm", d["base"]), ("stats-svm", d["stats"]),
                            ("mfcc-svm+spk", spk["base"]), ("stats-svm+spk", spk["stats"]),
                            ("mfcc-svm+run", run["base"]), ("stats-svm+run", run["stats"])):  # fmt: skip
            if name in wanted:
                t = time.time()
                with warnings.catch_warnings():  # SVC(probability=True) is deprecated in 1.9
                    warnings.simplefilter("ignore", FutureWarning)
                    clf, c = fit_svm(feats[tr], y[tr], actors[tr], args.seed)
                logp.setdefault(name, np.zeros((y.size, 8)))[te] = np.log(
                    clf.predict_proba(feats[te]) + 1e-12
                )
                info.setdefault(name, []).append({"C": c, "s": round(time.time() - t, 1)})
                if name.endswith("+run"):
                    raw = d["base"] if name.startswith("mfcc") else d["stats"]
                    _score_subruns(subruns.setdefault(name, {}), subs, raw, y, clf.predict)
        for name, aug, src in (("stats-mlp", True, d), ("stats-mlp-noaug", False, d),
                               ("stats-mlp+spk", True, spk)):  # fmt: skip
            if name in wanted:
                t = time.time()
                data = {"x": src["stats"], "y": y, "actor": actors, "aug_x": src["aug_x"],
                        "aug_of": d["aug_of"]} if aug else {
                        "x": src["stats"], "y": y, "actor": actors,
                        "aug_x": np.zeros((0, N_STATS)), "aug_of": np.zeros(0, np.int64)}  # fmt: skip
                # train on every actor but this fold's (the other folds' test actors included)
                lp = cross_validate(data, EmotionStatsConfig(), [test_actors], seed=args.seed,
                                    epochs=args.epochs)  # fmt: skip
                logp.setdefault(name, np.zeros((y.size, 8)))[te] = lp[te]
                info.setdefault(name, []).append({"s": round(time.time() - t, 1)})
        for name in [m for m in emotion_members.MEMBERS if m in wanted]:
            t = time.time()
            logp.setdefault(name, np.zeros((y.size, 8)))[te] = emotion_members.fit_member(
                name, d, test_actors, args.seed
            )
            info.setdefault(name, []).append({"s": round(time.time() - t, 1)})
        if "stats-mlp+run" in wanted:  # as cross_validate, keeping the model for the sub-runs
            t = time.time()
            ate = np.isin(actors[d["aug_of"]], test_actors)
            mlp = fit_stats_model(np.concatenate([run["stats"][tr], run["aug_x"][~ate]]),
                                  np.concatenate([y[tr], y[d["aug_of"]][~ate]]), EmotionStatsConfig(),
                                  seed=args.seed, epochs=args.epochs)  # fmt: skip

            def mlp_logp(x: np.ndarray, m: Any = mlp) -> np.ndarray:
                with torch.no_grad():
                    return m(torch.from_numpy(x.astype(np.float32))).numpy()  # type: ignore[no-any-return]

            logp.setdefault("stats-mlp+run", np.zeros((y.size, 8)))[te] = mlp_logp(run["stats"][te])
            info.setdefault("stats-mlp+run", []).append({"s": round(time.time() - t, 1)})
            _score_subruns(subruns.setdefault("stats-mlp+run", {}), subs, d["stats"], y,
                           lambda x: mlp_logp(x).argmax(1))  # fmt: skip
        if "cnn" in wanted:
            t = time.time()
            idx = np.flatnonzero(tr)
            mels = [d["mels"][i] for i in idx]
            model = emotion_fusion.fit_cnn(mels, y[tr], actors[tr], args, cfg)
            logp.setdefault("cnn", np.zeros((y.size, 8)))[te] = emotion_fusion.cnn_logp(
                model, [d["mels"][i] for i in np.flatnonzero(te)], y[te], actors[te], cfg
            )
            info.setdefault("cnn", []).append({"s": round(time.time() - t, 1)})
        print(f"fold {k} (test actors {test_actors}) done at {time.time() - t0:.0f} s", flush=True)
    fold_of = np.full(y.size, -1)
    for k, f in enumerate(folds):
        fold_of[np.isin(actors, f)] = k
    # cross-fitted temperatures and calibrated probabilities
    probs: dict[str, np.ndarray] = {}
    temps: dict[str, list[float]] = {}
    for name, lp in logp.items():
        p = np.zeros_like(lp)
        for k in range(len(folds)):
            others = tested & (fold_of != k)
            t = fit_temperature(lp[others], y[others])
            temps.setdefault(name, []).append(t)
            p[fold_of == k] = softmax_t(lp[fold_of == k], t)
        probs[name] = p
    for name, p in reused.items():  # an earlier run's calibrated probabilities (raw ECE not known)
        probs[name], logp[name] = p, np.log(p + 1e-12)
        info[name] = [{"reused": args.reuse}]
    for ens in emotion_fusion.ensemble_order(args.models, ENSEMBLES):  # mean of calibrated probs
        probs[ens] = np.mean([probs[m] for m in ENSEMBLES[ens]], axis=0)
        logp[ens] = np.log(probs[ens] + 1e-12)
    rows: dict[str, dict[str, Any]] = {}
    for name in [m for m in args.models if m in probs]:
        per = [emotion_summary(y[fold_of == k], probs[name][fold_of == k].argmax(1))
               for k in range(len(folds))]  # fmt: skip
        raw = softmax_t(logp[name], 1.0)
        rows[name] = {
            **{m: [float(f[m]) for f in per] for m in ("accuracy", "uar", "macro_f1")},
            "ece_raw": ece(raw[tested], y[tested]),
            "ece_cal": ece(probs[name][tested], y[tested]),
            "temperature": temps.get(name),
            "fit": info.get(name),
        }
    base = np.mean(rows["mfcc-svm"]["accuracy"]) if "mfcc-svm" in rows else None
    print(f"\nlow confidence (file top probability < {MIN_CONFIDENCE}, calibrated):")
    for name in rows:
        top, hit = probs[name][tested].max(1), probs[name][tested].argmax(1) == y[tested]
        lo = top < MIN_CONFIDENCE
        rows[name]["uncertain"] = {"share": float(lo.mean()), "acc_below": float(hit[lo].mean()),
                                   "acc_above": float(hit[~lo].mean())}  # fmt: skip
        print(
            f"  {name}: {lo.mean():.0%} of files flagged; accuracy {hit[lo].mean():.2f} flagged, "
            f"{hit[~lo].mean():.2f} not flagged"
        )
    print(f"\nleave-actors-out CV, {len(folds)} folds of 4 actors ({int(tested.sum())} files); "
          f"mean ± std over folds (min fold); {time.time() - t0:.0f} s\n")  # fmt: skip
    print(
        "| model | accuracy | UAR | macro-F1 | acc ratio vs mfcc-svm | ECE raw | ECE calibrated |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        cell = {m: f"{np.mean(r[m]):.3f} ± {np.std(r[m]):.3f} ({min(r[m]):.3f})"
                for m in ("accuracy", "uar", "macro_f1")}  # fmt: skip
        ratio = f"{np.mean(r['accuracy']) / base:.2f}" if base else "-"
        print(f"| {name} | {cell['accuracy']} | {cell['uar']} | {cell['macro_f1']} | {ratio} | "
              f"{r['ece_raw']:.3f} | {r['ece_cal']:.3f} |")  # fmt: skip
    for name, r in rows.items():
        print(
            f"{name}: per-fold accuracy {[round(v, 3) for v in r['accuracy']]}, "
            f"temperatures {[round(t, 2) for t in r['temperature'] or []]}, fit {r['fit']}"
        )
    if subruns:
        print("\nper-run normalisation on smaller or unbalanced runs cut from the test folds (each run "
              "z-scored with its own files); accuracy, mean ± std over folds; plain: the model without "
              "normalisation on the same files\n")  # fmt: skip
        print("| run | files | " + " | ".join(f"{m.removesuffix('+run')} plain | {m}" for m in subruns)
              + " |")  # fmt: skip
        print("|---|---|" + "---|---|" * len(subruns))
        for sub, per_fold in subrun_idx.items():
            cells = []
            for m, res in subruns.items():
                plain = probs.get(m.removesuffix("+run"))
                acc = ([float((plain[i].argmax(1) == y[i]).mean()) for i in per_fold]
                       if plain is not None else None)  # fmt: skip
                cells += [f"{np.mean(acc):.3f} ± {np.std(acc):.3f}" if acc else "-",
                          f"{np.mean(res[sub]):.3f} ± {np.std(res[sub]):.3f}"]  # fmt: skip
            print(f"| {sub} | {SUBRUN_SIZE[sub]} | " + " | ".join(cells) + " |")
    if args.out:
        dump = {"rows": rows, "subruns": subruns, "folds": [list(f) for f in folds], "args": vars(args),
                "labels": y.tolist(), "actors": actors.tolist(),
                "probs": {k: v.round(5).tolist() for k, v in probs.items()}}  # fmt: skip
        Path(args.out).write_text(json.dumps(dump))
    return 0


if __name__ == "__main__":
    sys.exit(main())
