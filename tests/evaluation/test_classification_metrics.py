"""Classification metrics against hand-worked confusion matrices and an independent computation."""

import json

import numpy as np
import pytest

from keras_llm.evaluation.classification_metrics import (
    classification_report, confusion_matrix, confusion_matrix_image, format_report)

# Binary, positive class "1" (index 1):
#   true 0: predicted 0 five times, 1 once      M = [[5, 1],
#   true 1: predicted 0 twice, 1 three times         [2, 3]]
# TP = 3, FP = 1, FN = 2, TN = 5, 11 examples.
# accuracy = (5 + 3) / 11 = 8/11; precision = 3 / (3 + 1) = 3/4; recall = 3 / (3 + 2) = 3/5;
# F1 = 2 * (3/4) * (3/5) / (3/4 + 3/5) = (9/10) / (27/20) = 2/3.
# Class 0 as seen from its side: precision 5/7, recall 5/6, F1 = 2*(5/7)(5/6)/(5/7+5/6) = 10/13.
BINARY_TRUE = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
BINARY_PRED = [0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1]
BINARY_MATRIX = [[5, 1], [2, 3]]

# Three classes a, b, c:                 M = [[4, 1, 0],    row sums (support) 5, 6, 4
#                                             [2, 3, 1],    column sums (predicted) 6, 5, 4
#                                             [0, 1, 3]]    diagonal 4, 3, 3; total 15
# precision: a 4/6 = 2/3, b 3/5, c 3/4;  recall: a 4/5, b 3/6 = 1/2, c 3/4
# F1: a 2*(2/3)(4/5)/(2/3+4/5) = (16/15)/(22/15) = 8/11; b 2*(3/5)(1/2)/(3/5+1/2) = 6/11; c 3/4
# macro precision (2/3 + 3/5 + 3/4) / 3 = (40 + 36 + 45) / 180 = 121/180
# macro recall (4/5 + 1/2 + 3/4) / 3 = (16 + 10 + 15) / 60 = 41/60
# macro F1 (8/11 + 6/11 + 3/4) / 3 = (56 + 33) / 132 = 89/132;  accuracy 10/15 = 2/3
THREE_CLASS_MATRIX = [[4, 1, 0], [2, 3, 1], [0, 1, 3]]


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    matrix = confusion_matrix(np.array(BINARY_TRUE), np.array(BINARY_PRED), num_classes=2)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, BINARY_MATRIX)
    # Row = true class, column = predicted: one example of class 2 predicted as class 0.
    np.testing.assert_array_equal(confusion_matrix([2], [0], num_classes=3),
                                  [[0, 0, 0], [0, 0, 0], [1, 0, 0]])


def test_binary_report_matches_hand_worked_example():
    report = classification_report(BINARY_MATRIX, ["0", "1"], positive_index=1)
    assert report["accuracy"] == pytest.approx(8 / 11)
    assert report["precision"] == pytest.approx(3 / 4)
    assert report["recall"] == pytest.approx(3 / 5)
    assert report["f1"] == pytest.approx(2 / 3)
    assert report["average"] == "binary" and report["positive_class"] == "1"
    assert report["num_examples"] == 11
    assert report["confusion_matrix"] == BINARY_MATRIX
    assert report["per_class"]["0"] == pytest.approx(
        {"precision": 5 / 7, "recall": 5 / 6, "f1": 10 / 13, "support": 6})
    assert report["per_class"]["1"]["support"] == 5


def test_binary_report_with_positive_class_first():
    # Same data with class 0 declared positive: the headline numbers are class 0's.
    report = classification_report(BINARY_MATRIX, ["pos", "neg"], positive_index=0)
    assert (report["precision"], report["recall"], report["f1"]) == pytest.approx(
        (5 / 7, 5 / 6, 10 / 13))
    assert report["positive_class"] == "pos"


def test_three_class_report_matches_hand_worked_example():
    report = classification_report(THREE_CLASS_MATRIX, ["a", "b", "c"], positive_index=None)
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["precision"] == pytest.approx(121 / 180)
    assert report["recall"] == pytest.approx(41 / 60)
    assert report["f1"] == pytest.approx(89 / 132)
    assert report["average"] == "macro" and report["positive_class"] is None
    expected = {"a": (2 / 3, 4 / 5, 8 / 11, 5), "b": (3 / 5, 1 / 2, 6 / 11, 6),
                "c": (3 / 4, 3 / 4, 3 / 4, 4)}
    for name, (precision, recall, f1, support) in expected.items():
        assert report["per_class"][name] == pytest.approx(
            {"precision": precision, "recall": recall, "f1": f1, "support": support})


def test_zero_division_gives_zero():
    # Class c never occurs and is never predicted; class b is never predicted.
    #   M = [[2, 0, 0],   precision: a 2/3, b 0/0 -> 0, c 0/0 -> 0
    #        [1, 0, 0],   recall:    a 1,   b 0/1 = 0, c 0/0 -> 0
    #        [0, 0, 0]]   F1: a 2*(2/3)*1/(5/3) = 4/5, b 0, c 0; macro F1 4/15
    report = classification_report([[2, 0, 0], [1, 0, 0], [0, 0, 0]], ["a", "b", "c"])
    assert report["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["precision"] == pytest.approx(2 / 9)
    assert report["recall"] == pytest.approx(1 / 3)
    assert report["f1"] == pytest.approx(4 / 15)
    # A classifier that never predicts the positive class: precision 0/0 -> 0.
    never = classification_report([[3, 0], [2, 0]], ["0", "1"], positive_index=1)
    assert (never["precision"], never["recall"], never["f1"]) == (0.0, 0.0, 0.0)
    assert never["accuracy"] == pytest.approx(3 / 5)
    empty = classification_report(np.zeros((2, 2), np.int64), ["0", "1"], positive_index=1)
    assert (empty["accuracy"], empty["f1"], empty["num_examples"]) == (0.0, 0.0, 0)


def _reference_metrics(y_true, y_pred, num_classes):
    """Per-class precision, recall, F1 by counting examples one at a time (no matrix)."""
    out = []
    for c in range(num_classes):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == c and p != c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0  # = harmonic mean of P and R
        out.append((precision, recall, f1))
    return out


@pytest.mark.parametrize("num_classes", [2, 5])
def test_cross_check_against_example_by_example_counting(num_classes):
    rng = np.random.default_rng(num_classes)
    y_true = rng.integers(0, num_classes, size=500)
    # A noisy classifier: right 60 % of the time, otherwise uniform.
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, num_classes, size=500))
    names = [f"class_{i}" for i in range(num_classes)]
    positive = 1 if num_classes == 2 else None
    report = classification_report(confusion_matrix(y_true, y_pred, num_classes), names, positive)
    reference = _reference_metrics(y_true.tolist(), y_pred.tolist(), num_classes)
    for name, (precision, recall, f1) in zip(names, reference):
        row = report["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx(
            (precision, recall, f1))
    assert report["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    if positive is None:
        assert report["f1"] == pytest.approx(np.mean([r[2] for r in reference]))
    else:
        assert report["f1"] == pytest.approx(reference[1][2])
    assert report["num_examples"] == 500


def test_report_is_plain_json():
    report = classification_report(np.array(THREE_CLASS_MATRIX, np.int32), ["a", "b", "c"])
    assert json.loads(json.dumps(report)) == report
    assert type(report["accuracy"]) is float and type(report["num_examples"]) is int
    assert all(type(v) is int for row in report["confusion_matrix"] for v in row)


def test_format_report_table():
    report = classification_report(BINARY_MATRIX, ["0", "1"], positive_index=1)
    table = format_report(report, ["0", "1"]).splitlines()
    assert table[0] == "11 examples; binary, positive class '1'"
    assert table[1] == "accuracy 0.7273   precision 0.7500   recall 0.6000   f1 0.6667"
    assert table[3].split() == ["class", "precision", "recall", "f1", "support"]
    assert table[4].split() == ["0", "0.7143", "0.8333", "0.7692", "6"]
    assert table[5].split() == ["1", "(+)", "0.7500", "0.6000", "0.6667", "5"]
    assert table[-2].split() == ["0", "5", "1"] and table[-1].split() == ["1", "2", "3"]
    # Fixed width: the matrix rows line up.
    assert len(table[-1]) == len(table[-2]) == len(table[-3])


def test_invalid_inputs_raise_with_what_was_received():
    with pytest.raises(ValueError, match=r"\[0, 2\).*from 0 to 2"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix([0, 1], [0], num_classes=2)
    with pytest.raises(ValueError, match="integer class ids"):
        confusion_matrix([0.0, 1.0], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        classification_report(BINARY_MATRIX, ["a", "b", "c"])
    with pytest.raises(ValueError, match="positive_index"):
        classification_report(THREE_CLASS_MATRIX, ["a", "b", "c"], positive_index=1)


def test_confusion_matrix_image_is_an_rgba_heatmap():
    image = confusion_matrix_image(np.array([[90, 10], [0, 100]]), ["neg", "pos"])
    assert image.dtype == np.uint8 and image.ndim == 4 and image.shape[0] == 1
    assert image.shape[3] == 4 and image.shape[1] >= 200 and image.shape[2] >= 200
    assert len(np.unique(image[0].reshape(-1, 4), axis=0)) > 50, "expected cells, text, colour bar"


def _darkness(image, rows, columns):
    """Mean darkness (255 - mean RGB) of a region given as fractions of the image's size."""
    height, width = image.shape[1:3]
    region = image[0, int(rows[0] * height):int(rows[1] * height),
                   int(columns[0] * width):int(columns[1] * width), :3]
    return 255 - region.astype(float).mean()


def test_confusion_matrix_image_puts_true_rows_down_and_predictions_across():
    # Same labels, so the same layout: only the cell colours differ. With all examples on the
    # diagonal, the top-left cell (true neg, predicted neg) is dark and the bottom-left light;
    # with all off the diagonal it is the other way round.
    diagonal = confusion_matrix_image(np.array([[50, 0], [0, 50]]), ["neg", "pos"])
    off_diagonal = confusion_matrix_image(np.array([[0, 50], [50, 0]]), ["neg", "pos"])
    top_left, bottom_left = ((0.15, 0.45), (0.25, 0.45)), ((0.45, 0.7), (0.25, 0.45))
    assert _darkness(diagonal, *top_left) > _darkness(off_diagonal, *top_left) + 50
    assert _darkness(off_diagonal, *bottom_left) > _darkness(diagonal, *bottom_left) + 50


def test_confusion_matrix_image_goes_into_tf_summary(tmp_path):
    tf = pytest.importorskip("tensorflow")
    image = confusion_matrix_image(np.array(THREE_CLASS_MATRIX), ["a", "b", "c"])
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        assert tf.summary.image("validation/confusion_matrix", image, step=3)
    writer.close()
    events = list(tmp_path.glob("events.out.tfevents.*"))
    tags = [value.tag for event in tf.compat.v1.train.summary_iterator(str(events[0]))
            for value in event.summary.value]
    assert tags == ["validation/confusion_matrix"]
