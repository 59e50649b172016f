"""The trainer-side confusion matrix and the report built from its totals."""

import numpy as np
import tensorflow as tf

from keras_llm.data.label_vocabulary import LabelVocabulary
from keras_llm.evaluation.confusion_metrics import confusion_metrics_fn, report_from_totals


def test_softmax_and_sigmoid_logits_count_real_examples_only():
    labels = tf.constant([0, 1, 1, 0])
    mask = tf.constant([1.0, 1.0, 1.0, 0.0])  # The last row is padding.
    softmax = tf.constant([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5], [0.0, 9.0]])
    matrix = confusion_metrics_fn(2)(labels, softmax, mask)["confusion_matrix"]
    np.testing.assert_array_equal(matrix, [[1, 0], [1, 1]])  # Rows true, columns predicted.
    sigmoid = tf.constant([[-1.0], [2.0], [-0.5], [4.0]])  # Positive when the logit > 0.
    matrix = confusion_metrics_fn(2)(labels, sigmoid, mask)["confusion_matrix"]
    np.testing.assert_array_equal(matrix, [[1, 0], [1, 1]])


def test_report_from_totals_matches_the_hand_computed_figures():
    labels = LabelVocabulary.from_labels(["0", "1"])
    totals = {"confusion_matrix": np.array([[5.0, 1.0], [2.0, 3.0]]), "loss": 0.25}
    report, matrix = report_from_totals(totals, labels)
    assert matrix.dtype == np.int64 and matrix.tolist() == [[5, 1], [2, 3]]
    # TP 3, FP 1, FN 2: accuracy 8/11, precision 3/4, recall 3/5, F1 2/3.
    assert np.isclose(report["accuracy"], 8 / 11) and np.isclose(report["precision"], 0.75)
    assert np.isclose(report["recall"], 0.6) and np.isclose(report["f1"], 2 / 3)
    assert report["loss"] == 0.25
