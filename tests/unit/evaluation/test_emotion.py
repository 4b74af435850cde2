"""Emotion metrics on a hand-computed example (8 items, 5 true classes, 6 predicted)."""

from __future__ import annotations

import numpy as np
import pytest

from batchsep.errors import ParameterError
from batchsep.evaluation.emotion import (
    EMOTIONS,
    accuracy,
    confusion_matrix,
    emotion_summary,
    encode_labels,
    macro_f1,
    per_class_recall,
    per_speaker_accuracy,
    uar,
)

Y_TRUE = ["neutral", "neutral", "calm", "happy", "happy", "happy", "sad", "angry"]
Y_PRED = ["neutral", "calm", "calm", "happy", "sad", "happy", "sad", "fearful"]
SPEAKERS = ["A", "A", "A", "B", "B", "B", "C", "C"]


def test_emotion_order_is_ravdess() -> None:
    assert EMOTIONS == (
        "neutral",
        "calm",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "surprised",
    )


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    expected = np.zeros((8, 8), dtype=np.int64)
    expected[0, 0] = 1  # neutral -> neutral
    expected[0, 1] = 1  # neutral -> calm
    expected[1, 1] = 1  # calm -> calm
    expected[2, 2] = 2  # happy -> happy
    expected[2, 3] = 1  # happy -> sad
    expected[3, 3] = 1  # sad -> sad
    expected[4, 5] = 1  # angry -> fearful
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64


def test_scores_by_hand() -> None:
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 8)
    # recalls of the 5 classes present in y_true: 1/2, 1, 2/3, 1, 0
    assert uar(Y_TRUE, Y_PRED) == pytest.approx((0.5 + 1 + 2 / 3 + 1 + 0) / 5)
    # F1 over the 6 classes in y_true ∪ y_pred: neutral 2/3, calm 2/3, happy 4/5, sad 2/3,
    # angry 0, fearful 0 (disgust and surprised appear nowhere and are left out)
    assert macro_f1(Y_TRUE, Y_PRED) == pytest.approx((3 * 2 / 3 + 0.8) / 6)
    recall = per_class_recall(confusion_matrix(Y_TRUE, Y_PRED))
    np.testing.assert_allclose(recall[:5], [0.5, 1.0, 2 / 3, 1.0, 0.0])
    assert np.isnan(recall[5:]).all()


def test_int_labels_are_positions() -> None:
    t = [EMOTIONS.index(v) for v in Y_TRUE]
    p = np.array([EMOTIONS.index(v) for v in Y_PRED], dtype=np.int32)
    assert accuracy(t, p) == accuracy(Y_TRUE, Y_PRED)
    assert uar(t, p) == uar(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(confusion_matrix(t, p), confusion_matrix(Y_TRUE, Y_PRED))


def test_per_speaker_and_summary() -> None:
    assert per_speaker_accuracy(Y_TRUE, Y_PRED, SPEAKERS) == {"A": 2 / 3, "B": 2 / 3, "C": 0.5}
    summary = emotion_summary(Y_TRUE, Y_PRED, speakers=SPEAKERS)
    assert summary["n"] == 8 and summary["n_speakers"] == 3
    assert summary["accuracy"] == pytest.approx(0.625)
    assert summary["speaker_acc_min"] == pytest.approx(0.5)
    assert summary["speaker_acc_max"] == pytest.approx(2 / 3)
    assert summary["speaker_acc_std"] == pytest.approx(np.std([2 / 3, 2 / 3, 0.5]))
    assert "n_speakers" not in emotion_summary(Y_TRUE, Y_PRED)


def test_custom_labels_and_perfect_prediction() -> None:
    labels = ["yes", "no"]
    assert uar(["yes", "no", "no"], ["yes", "no", "no"], labels=labels) == 1.0
    assert macro_f1(["yes", "yes"], ["no", "no"], labels=labels) == 0.0


def test_random_consistency() -> None:
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 8, 200), rng.integers(0, 8, 200)
    cm = confusion_matrix(t, p)
    assert cm.sum() == 200
    assert accuracy(t, p) == pytest.approx(np.trace(cm) / 200)
    assert cm[3].sum() == np.sum(t == 3) and cm[:, 3].sum() == np.sum(p == 3)


@pytest.mark.parametrize(
    ("t", "p", "match"),
    [
        (["happy"], ["joyful"], "label 'joyful', which is not one of"),
        ([0, 8], [0, 1], "int label 8; ints must be in \\[0, 8\\)"),
        ([0.0, 1.0], [0, 1], "dtype=float64 must hold str or int"),
        (["happy", "sad"], ["happy"], "y_true has 2 labels, y_pred 1"),
        ([], [], "y_true is empty"),
        ([["happy"]], [["happy"]], "ndim=2"),
    ],
)
def test_invalid_labels(t: object, p: object, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        accuracy(t, p)


def test_invalid_label_set() -> None:
    with pytest.raises(ParameterError, match="duplicates"):
        encode_labels(["a"], labels=["a", "a"])
    with pytest.raises(ParameterError, match="non-empty sequence"):
        encode_labels(["a"], labels="ab")
    with pytest.raises(ParameterError, match="speakers has shape"):
        per_speaker_accuracy(Y_TRUE, Y_PRED, ["A"])
