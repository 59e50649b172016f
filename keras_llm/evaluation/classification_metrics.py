"""Classification metrics from a confusion matrix: accuracy, precision, recall, F1.

Everything is computed from the confusion matrix (rows = true class, columns = predicted
class), so the numbers in results.json, the printed table and the TensorBoard image agree.

Conventions (those of scikit-learn's `precision_recall_fscore_support` with zero_division=0):
- precision_c = TP_c / (TP_c + FP_c) = M[c, c] / column sum c; 0.0 when class c is never
  predicted.
- recall_c = TP_c / (TP_c + FN_c) = M[c, c] / row sum c; 0.0 when class c never occurs.
- F1_c = 2 precision_c recall_c / (precision_c + recall_c); 0.0 when both are 0.
- Binary tasks (a `positive_index`): precision, recall and F1 are those of the positive class.
- Multi-class: macro averages, the unweighted mean over all classes (classes absent from the
  data count, with 0.0); macro F1 is the mean of per-class F1, not the F1 of macro P and R.
- accuracy = trace / total; 0.0 for an empty matrix.

Worked example (binary, positive class "1"):
    M = [[5, 1],     TP = 3, FP = 1, FN = 2, TN = 5
         [2, 3]]     accuracy 8/11, precision 3/4, recall 3/5, F1 = 2*(3/4)(3/5)/(3/4+3/5) = 2/3
"""

import numpy as np

_CORNER = "true \\ pred"  # the confusion matrix's top-left cell


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts (true class, predicted class) pairs.

    Args:
        y_true: int array-like, shape (num_examples,), values in [0, num_classes).
        y_pred: int array-like, shape (num_examples,), values in [0, num_classes).
        num_classes: int >= 1.

    Returns:
        np.ndarray of int64, shape (num_classes, num_classes); [i, j] = number of examples of
        true class i predicted as class j.

    Raises:
        ValueError: mismatched or non-1-D shapes, non-integer values, or ids out of range.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: expected y_true and y_pred of the same shape "
                         f"(num_examples,), received {y_true.shape} and {y_pred.shape}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"confusion_matrix: expected num_classes >= 1, received {num_classes!r}")
    for name, ids in (("y_true", y_true), ("y_pred", y_pred)):
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"confusion_matrix: expected integer class ids in {name}, received "
                             f"dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(f"confusion_matrix: expected {name} in [0, {num_classes}), received "
                             f"values from {ids.min()} to {ids.max()}")
    flat = y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64)
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def classification_report(matrix, class_names, positive_index=None):
    """Accuracy, precision, recall, F1 (overall and per class) of a confusion matrix.

    Args:
        matrix: int array-like, shape (num_classes, num_classes), rows = true, columns =
            predicted (as from `confusion_matrix`).
        class_names: list of str, num_classes names in id order.
        positive_index: int, the positive class of a binary task (headline precision / recall /
            F1 are that class's); None for macro averages (any number of classes).

    Returns:
        dict of plain Python values (JSON-serialisable):
        {"accuracy", "precision", "recall", "f1": float in [0, 1],
         "average": "binary" or "macro", "positive_class": str or None,
         "num_examples": int, "confusion_matrix": nested list of int,
         "per_class": {name: {"precision", "recall", "f1": float, "support": int}}}.

    Raises:
        ValueError: a non-square or negative matrix, class_names of the wrong length, or a
            positive_index outside a two-class matrix.
    """
    matrix = np.asarray(matrix)
    num_classes = len(class_names)
    if matrix.shape != (num_classes, num_classes) or (matrix.size and matrix.min() < 0):
        raise ValueError(f"classification_report: expected a non-negative matrix of shape "
                         f"({num_classes}, {num_classes}) for class_names {list(class_names)}, "
                         f"received shape {matrix.shape}")
    if positive_index is not None and (num_classes != 2 or positive_index not in (0, 1)):
        raise ValueError(f"classification_report: positive_index applies to two classes and "
                         f"must be 0 or 1, received {positive_index!r} with {num_classes} classes")
    matrix = matrix.astype(np.int64)
    true_positives = np.diag(matrix)
    predicted = matrix.sum(axis=0)  # column sums: TP + FP
    support = matrix.sum(axis=1)  # row sums: TP + FN
    precision = _divide(true_positives, predicted)
    recall = _divide(true_positives, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    total = int(matrix.sum())
    if positive_index is not None:
        headline = (precision[positive_index], recall[positive_index], f1[positive_index])
    else:
        headline = (precision.mean(), recall.mean(), f1.mean())
    return {
        "accuracy": float(true_positives.sum() / total) if total else 0.0,
        "precision": float(headline[0]),
        "recall": float(headline[1]),
        "f1": float(headline[2]),
        "average": "binary" if positive_index is not None else "macro",
        "positive_class": None if positive_index is None else str(class_names[positive_index]),
        "num_examples": total,
        "confusion_matrix": matrix.tolist(),
        "per_class": {
            str(name): {"precision": float(precision[i]), "recall": float(recall[i]),
                        "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)},
    }


def _divide(numerator, denominator):
    """numerator / denominator elementwise as float64, 0.0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                     where=denominator != 0)


def format_report(report, class_names):
    """A fixed-width text table of a `classification_report`, with its confusion matrix.

    Example (binary, the module docstring's matrix):
        11 examples; binary, positive class '1'
        accuracy 0.7273   precision 0.7500   recall 0.6000   f1 0.6667

        class        precision  recall      f1  support
        0               0.7143  0.8333  0.7692        6
        1 (+)           0.7500  0.6000  0.6667        5

        confusion matrix (rows = true, columns = predicted)
        true \\ pred       0       1
        0                 5       1
        1                 2       3

    Args:
        report: dict from `classification_report`.
        class_names: list of str, the class names in id order (the report's per_class keys).

    Returns:
        str, several lines, no trailing newline.
    """
    names = [str(name) for name in class_names]
    positive = report.get("positive_class")
    shown = [name + (" (+)" if name == positive else "") for name in names]
    width = max(len(_CORNER), max(len(name) for name in shown))
    average = f"binary, positive class {positive!r}" if positive is not None else "macro average"
    lines = [f"{report['num_examples']} examples; {average}",
             f"accuracy {report['accuracy']:.4f}   precision {report['precision']:.4f}   "
             f"recall {report['recall']:.4f}   f1 {report['f1']:.4f}",
             "",
             f"{'class':<{width}}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}"]
    for name, label in zip(names, shown):
        row = report["per_class"][name]
        lines.append(f"{label:<{width}}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  "
                     f"{row['f1']:>6.4f}  {row['support']:>7d}")
    matrix = report["confusion_matrix"]
    cell = max([6] + [len(name) for name in names] + [len(str(v)) for row in matrix for v in row])
    lines += ["", "confusion matrix (rows = true, columns = predicted)",
              f"{_CORNER:<{width}}" + "".join(f"  {name:>{cell}}" for name in names)]
    for name, row in zip(names, matrix):
        lines.append(f"{name:<{width}}" + "".join(f"  {count:>{cell}d}" for count in row))
    return "\n".join(lines)


def confusion_matrix_image(matrix, class_names):
    """Renders a confusion matrix as a heatmap with counts, ready for `tf.summary.image`.

    The recipe of the TensorFlow "TensorBoard: image summaries" guide (plot with matplotlib,
    colour by row-normalised counts so rare classes stay readable, print the counts), drawn
    with the Agg canvas directly so it needs no display and touches no pyplot global state.

    Args:
        matrix: int array-like, shape (num_classes, num_classes), rows = true class.
        class_names: list of str, num_classes names.

    Returns:
        np.ndarray of uint8, shape (1, height, width, 4): one RGBA image.
    """
    # Imported here so that training runs that log no images do not pay for matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, dtype=np.int64)
    num_classes = len(class_names)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"confusion_matrix_image: expected shape ({num_classes}, {num_classes}) "
                         f"for class_names {list(class_names)}, received {matrix.shape}")
    normalized = _divide(matrix, matrix.sum(axis=1, keepdims=True))
    size = min(16.0, max(4.0, 0.6 * num_classes + 2.5))  # inches, at 100 dpi
    figure = Figure(figsize=(size, size), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = axes.imshow(normalized, interpolation="nearest", cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    ticks = np.arange(num_classes)
    axes.set_xticks(ticks, labels=[str(name) for name in class_names], rotation=45, ha="right")
    axes.set_yticks(ticks, labels=[str(name) for name in class_names])
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("confusion matrix")
    if num_classes <= 30:  # beyond that the numbers overlap
        for i in range(num_classes):
            for j in range(num_classes):
                colour = "white" if normalized[i, j] > 0.5 else "black"
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour)
    figure.tight_layout()
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba(), dtype=np.uint8)  # (height, width, 4)
    return image[np.newaxis].copy()  # (1, height, width, 4)
