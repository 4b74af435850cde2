"""Emotion-classification metrics: accuracy, UAR, macro-F1, confusion matrix, per-speaker accuracy.

Labels are strings from ``labels`` (default: the 8 RAVDESS emotions, in their fixed order) or ints,
read as 0-based positions in ``labels`` (so ``0`` is ``"neutral"``; RAVDESS file codes are 1-based:
subtract 1). Definitions follow scikit-learn: UAR (``balanced_accuracy_score``) averages the recall
of the classes present in ``y_true``; macro-F1 (``f1_score(average="macro")`` without ``labels``)
averages F1 over the classes present in ``y_true`` or ``y_pred``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from batchsep.errors import ParameterError

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
"""The 8 RAVDESS emotions, in RAVDESS code order (code 01 → index 0)."""


def encode_labels(y: object, *, labels: Sequence[str] = EMOTIONS, name: str = "y") -> np.ndarray:
    """Map string or int labels to 0-based indices into ``labels``.

    Parameters
    ----------
    y : array-like [shape=(n,)] of str, or of int in ``[0, len(labels))``
    labels : sequence of str
        Class names in display order, no duplicates.
    name : str
        Name used in error messages.

    Returns
    -------
    np.ndarray [shape=(n,)], int64

    Raises
    ------
    ParameterError
        On unknown names, out-of-range ints, booleans/floats, or a non-1-D input.

    Examples
    --------
    >>> encode_labels(["calm", "neutral"]).tolist()
    [1, 0]
    """
    _check_labels(labels)
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ParameterError(f"{name} has ndim={arr.ndim}; expected a 1-D array of labels")
    if arr.dtype.kind in "iu":
        bad = arr[(arr < 0) | (arr >= len(labels))]
        if bad.size:
            raise ParameterError(
                f"{name} holds int label {bad[0]}; ints must be in [0, {len(labels)}) "
                "(0-based positions in labels)"
            )
        return arr.astype(np.int64)
    if arr.dtype.kind in "UO" or arr.size == 0:
        index = {lab: i for i, lab in enumerate(labels)}
        out = np.empty(arr.size, dtype=np.int64)
        for k, v in enumerate(arr.tolist()):
            if not isinstance(v, str) or v not in index:
                raise ParameterError(
                    f"{name} holds label {v!r}, which is not one of {list(labels)}"
                )
            out[k] = index[v]
        return out
    raise ParameterError(f"{name} dtype={arr.dtype} must hold str or int labels")


def _check_labels(labels: Sequence[str]) -> None:
    if isinstance(labels, str) or len(labels) == 0:
        raise ParameterError(f"labels={labels!r} must be a non-empty sequence of names")
    if len(set(labels)) != len(labels):
        raise ParameterError(f"labels={list(labels)} has duplicates")


def _encode_pair(
    y_true: object, y_pred: object, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    t = encode_labels(y_true, labels=labels, name="y_true")
    p = encode_labels(y_pred, labels=labels, name="y_pred")
    if t.shape != p.shape:
        raise ParameterError(f"y_true has {t.size} labels, y_pred {p.size}; they must be equal")
    if t.size == 0:
        raise ParameterError("y_true is empty; metrics need at least one label")
    return t, p


def confusion_matrix(
    y_true: object, y_pred: object, *, labels: Sequence[str] = EMOTIONS
) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    Parameters
    ----------
    y_true, y_pred : array-like [shape=(n,)] of str or int labels

    Returns
    -------
    np.ndarray [shape=(len(labels), len(labels))], int64
        Rows: true class; columns: predicted class; in the order of ``labels``.

    Examples
    --------
    >>> confusion_matrix(["a", "b", "b"], ["a", "a", "b"], labels=["a", "b"]).tolist()
    [[1, 0], [1, 1]]
    """
    t, p = _encode_pair(y_true, y_pred, labels)
    k = len(labels)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def accuracy(y_true: object, y_pred: object, *, labels: Sequence[str] = EMOTIONS) -> float:
    """Fraction of labels predicted correctly."""
    t, p = _encode_pair(y_true, y_pred, labels)
    return float(np.mean(t == p))


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix; NaN for classes absent from ``y_true``.

    Parameters
    ----------
    cm : np.ndarray [shape=(k, k)]
        Rows true, columns predicted.

    Returns
    -------
    np.ndarray [shape=(k,)], float64
    """
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def uar(y_true: object, y_pred: object, *, labels: Sequence[str] = EMOTIONS) -> float:
    """Unweighted average recall: the mean recall over the classes present in ``y_true``.

    Examples
    --------
    >>> uar(["a", "a", "a", "b"], ["a", "a", "a", "a"], labels=["a", "b"])
    0.5
    """
    return float(np.nanmean(per_class_recall(confusion_matrix(y_true, y_pred, labels=labels))))


def macro_f1(y_true: object, y_pred: object, *, labels: Sequence[str] = EMOTIONS) -> float:
    """Mean F1 = 2·TP / (2·TP + FP + FN) over classes present in ``y_true`` or ``y_pred``.

    Examples
    --------
    >>> round(macro_f1(["a", "a", "b"], ["a", "b", "b"], labels=["a", "b", "c"]), 4)
    0.6667
    """
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    tp = np.diag(cm).astype(np.float64)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    present = (cm.sum(axis=1) + cm.sum(axis=0)) > 0
    f1 = 2.0 * tp[present] / (2.0 * tp[present] + fp[present] + fn[present])
    return float(np.mean(f1))


def per_speaker_accuracy(
    y_true: object, y_pred: object, speakers: object, *, labels: Sequence[str] = EMOTIONS
) -> dict[str, float]:
    """Accuracy per speaker.

    Parameters
    ----------
    y_true, y_pred : array-like [shape=(n,)] of labels
    speakers : array-like [shape=(n,)]
        Speaker id of each item (converted to str).

    Returns
    -------
    dict of str to float
        Sorted by speaker id.

    Examples
    --------
    >>> per_speaker_accuracy(["a", "b", "a"], ["a", "a", "a"], [1, 1, 2], labels=["a", "b"])
    {'1': 0.5, '2': 1.0}
    """
    t, p = _encode_pair(y_true, y_pred, labels)
    spk = np.asarray(speakers)
    if spk.shape != t.shape:
        raise ParameterError(f"speakers has shape {spk.shape}; y_true has {t.shape}")
    spk_str = np.array([str(s) for s in spk.tolist()])
    return {
        str(s): float(np.mean(t[spk_str == s] == p[spk_str == s])) for s in sorted(set(spk_str))
    }


def emotion_summary(
    y_true: object,
    y_pred: object,
    *,
    labels: Sequence[str] = EMOTIONS,
    speakers: object | None = None,
) -> dict[str, float | int]:
    """``n``, ``accuracy``, ``uar``, ``macro_f1``; with ``speakers`` also the per-speaker spread.

    Returns
    -------
    dict
        Also ``n_speakers``, ``speaker_acc_min``, ``speaker_acc_max``, ``speaker_acc_std``
        (population std) when ``speakers`` is given.
    """
    t, p = _encode_pair(y_true, y_pred, labels)
    out: dict[str, float | int] = {
        "n": int(t.size),
        "accuracy": accuracy(t, p, labels=labels),
        "uar": uar(t, p, labels=labels),
        "macro_f1": macro_f1(t, p, labels=labels),
    }
    if speakers is not None:
        accs = np.array(list(per_speaker_accuracy(t, p, speakers, labels=labels).values()))
        out.update(
            n_speakers=int(accs.size),
            speaker_acc_min=float(accs.min()),
            speaker_acc_max=float(accs.max()),
            speaker_acc_std=float(accs.std()),
        )
    return out
