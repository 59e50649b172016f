"""The in-graph side of the classification metrics: sum a confusion matrix, then report it.

`confusion_metrics_fn` gives the `Trainer` a `metrics_fn` that sums the confusion matrix over
an evaluation set (all-reduced over replicas); `report_from_totals` turns the trainer's totals
into `classification_metrics.classification_report` figures plus the mean loss.
"""

import numpy as np
import tensorflow as tf

from keras_llm.evaluation.classification_metrics import classification_report


def confusion_metrics_fn(num_classes):
    """Returns a `Trainer` metrics_fn summing the confusion matrix (rows true, columns predicted).

    The metrics_fn takes labels int32 `(batch,)`, logits float32 `(batch, num_classes)` (or
    `(batch, 1)` for one sigmoid logit, predicted positive when > 0) and mask float32
    `(batch,)` (0 for padding rows, which count nowhere), and returns
    `{"confusion_matrix": float32 (num_classes, num_classes)}`.
    """

    def metrics(labels, logits, mask):
        if logits.shape[-1] == 1:
            predictions = tf.cast(logits[:, 0] > 0.0, tf.int32)  # sigmoid(logit) > 0.5
        else:
            predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
        matrix = tf.math.confusion_matrix(labels, predictions, num_classes=num_classes,
                                          weights=mask, dtype=tf.float32)
        return {"confusion_matrix": matrix}

    return metrics


def report_from_totals(totals, label_vocabulary):
    """The metrics report of `Trainer.evaluate` totals.

    Args:
        totals: dict with "confusion_matrix" (summed by `confusion_metrics_fn`) and "loss"
            (mean cross-entropy, nats per example).
        label_vocabulary: the run's `LabelVocabulary` (class names, positive class).

    Returns:
        (report, matrix): `classification_report(...)` plus "loss", and the int64 confusion
        matrix `(num_classes, num_classes)`.
    """
    matrix = np.rint(totals["confusion_matrix"]).astype(np.int64)
    report = classification_report(matrix, label_vocabulary.names,
                                   label_vocabulary.positive_index)
    report["loss"] = float(totals["loss"])
    return report, matrix
