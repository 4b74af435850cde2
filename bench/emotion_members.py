"""More members for ``bench/emotion.py``: linear and tree models over the 389 statistics, and their ensembles.

Issue 20, session 13: does a *diverse* ensemble over the same utterance statistics (speaker-independent,
file by file, no run or speaker normalisation) reach the issue's bar? Each member is a fixed recipe (no
hyper-parameter chosen on the test folds) trained, like ``stats-mlp``, on the training actors' clean files
**and** their augmented copies (speed ×0.9 / ×1.1, noisy):

stats-lr
    Standardised statistics, multinomial logistic regression, C = 0.01 (strong L2).
stats-lda
    Standardised statistics, linear discriminant analysis with Ledoit-Wolf shrinkage (``shrinkage="auto"``).
stats-hgb
    Gradient-boosted trees (``HistGradientBoostingClassifier``: 300 rounds, rate 0.05, 15 leaves,
    L2 1.0, no early stopping).

Ensembles (:data:`ENSEMBLES`) average the members' temperature-scaled (cross-fitted) probabilities with
equal weights, as ``stats-ens`` does; ``stats-div`` is every member above with ``stats-mlp`` and
``stats-svm``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MEMBERS = ("stats-lr", "stats-lda", "stats-hgb")
ENSEMBLES = {
    "stats-mlp-lr": ("stats-mlp", "stats-lr"),
    "stats-mlp-lda": ("stats-mlp", "stats-lda"),
    "stats-lin": ("stats-mlp", "stats-lr", "stats-lda"),
    "stats-div": ("stats-mlp", "stats-svm", "stats-lr", "stats-lda", "stats-hgb"),
}


def make_member(name: str, seed: int = 0) -> Any:
    """An unfitted scikit-learn classifier with ``predict_proba`` (module docstring)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "stats-lr":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    if name == "stats-lda":
        return make_pipeline(
            StandardScaler(), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        )
    if name == "stats-hgb":
        return HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
            early_stopping=False, random_state=seed,
        )  # fmt: skip
    raise ValueError(f"unknown member {name!r}; one of {MEMBERS}")


def fit_member(name: str, d: dict[str, np.ndarray], test_actors: tuple[int, ...],
               seed: int = 0) -> np.ndarray:  # fmt: skip
    """Log-probabilities ``[n_test, 8]`` of ``test_actors``' clean files by member ``name`` trained on the
    other actors' clean files and augmented copies (``d``: the bench's cached features)."""
    x, y, actors, aug_x, aug_of = d["stats"], d["labels"], d["actors"], d["aug_x"], d["aug_of"]
    te = np.isin(actors, test_actors)
    tr = ~te & (actors <= 16)
    atr = np.isin(aug_of, np.flatnonzero(tr))
    xs = np.concatenate([x[tr], aug_x[atr]])
    ys = np.concatenate([y[tr], y[aug_of[atr]]])
    clf = make_member(name, seed).fit(xs, ys)
    return np.log(clf.predict_proba(x[te]) + 1e-12)  # type: ignore[no-any-return]


def reuse_probs(
    path: str, names: list[str], labels: np.ndarray, actors: np.ndarray
) -> dict[str, np.ndarray]:
    """Calibrated out-of-fold probabilities of ``names`` from an earlier run's ``--out`` JSON.

    Only valid for the same features, folds and seed (checked: labels and actors must match); the
    figures are those the earlier run computed, to spare a ~10 min CPU refit of ``stats-mlp``.
    """
    import json
    from pathlib import Path

    dump = json.loads(Path(path).read_text())
    if dump["labels"] != labels.tolist() or dump["actors"] != actors.tolist():
        raise SystemExit(f"{path}: other files or order than this run's features")
    missing = [n for n in names if n not in dump["probs"]]
    if missing:
        raise SystemExit(f"{path} has no probabilities of {missing}")
    return {n: np.asarray(dump["probs"][n], np.float64) for n in names}
