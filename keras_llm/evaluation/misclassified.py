"""The validation examples a classifier gets most confidently wrong, as a Markdown table.

Users read these in TensorBoard's Text dashboard to see what the model gets wrong (sarcasm,
negation, label noise) rather than only how often.
"""

import numpy as np


def class_probabilities(logits):
    """Class probabilities from a `TextClassifier`'s logits.

    Args:
        logits: float array `(num_examples, 1)` (two classes: one sigmoid logit for class 1)
            or `(num_examples, num_classes)` (softmax).

    Returns:
        float64 array `(num_examples, num_classes)`, rows summing to 1.
    """
    logits = np.asarray(logits, np.float64)
    if logits.shape[-1] == 1:
        positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - positive, positive], axis=-1)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def most_confident_mistakes(probabilities, labels, count):
    """Indices of the misclassified examples, highest predicted-class probability first.

    Args:
        probabilities: float array `(num_examples, num_classes)`.
        labels: int array `(num_examples,)`, the true class ids.
        count: int, the most indices returned.

    Returns:
        int64 array of at most `count` indices; ties keep the examples' order.
    """
    predicted = np.argmax(probabilities, axis=-1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def mistakes_markdown(texts, labels, probabilities, class_names, count=10):
    """The `count` most confident mistakes as a Markdown table for `tf.summary.text`.

    Columns: the text, its true label, the predicted label and one probability per class
    (4 decimals). "|" in texts is escaped so the table stays a table.

    Args:
        texts: list of str, the validation texts.
        labels: int array `(num_examples,)`, true class ids.
        probabilities: float array `(num_examples, num_classes)`.
        class_names: list of str, class id -> name.
        count: int, the most rows.

    Returns:
        str; "No misclassified validation examples." when there are none.
    """
    indices = most_confident_mistakes(probabilities, labels, count)
    if not len(indices):
        return "No misclassified validation examples."
    header = ["text", "true", "predicted"] + [f"p({name})" for name in class_names]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index in indices:
        text = " ".join(texts[index].split()).replace("|", "\\|")
        predicted = int(np.argmax(probabilities[index]))
        cells = [text, class_names[int(labels[index])], class_names[predicted]]
        cells += [f"{p:.4f}" for p in probabilities[index]]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
