"""The mapping between string labels and class ids, learned from the training split.

Labels are sorted so the mapping does not depend on row order; labels that all look like
numbers sort by value ("2" < "10"), so for 0/1 data id 1 is "1", the positive class. The mapping
is saved as JSON beside the model so evaluation and serving decode ids the same way.

Worked example:
    LabelVocabulary.from_labels(["pos", "neg", "pos"])  ->  names ["neg", "pos"], positive_index 1
    encode(labels ["neg", "pos", "neg"])                ->  [0, 1, 0] (int32)
"""

import json
import math
import os

import numpy as np

from keras_llm.data.labelled_texts import SKIP_HINT, BadRow, DataError
from keras_llm.training import atomic_files

# Binary tasks report precision / recall / F1 of the positive class: the first of these names
# (compared case-insensitively) that is a label, else the last label in sorted order.
POSITIVE_NAMES = ("1", "pos", "positive", "true")
_FORMAT = "keras_llm.LabelVocabulary"


class LabelVocabulary:
    """Maps string labels to class ids 0..num_classes-1 and back.

    Args:
        names: list of str, the class names in id order (distinct, non-empty).

    Attributes:
        names: list of str, the class names in id order.
        num_classes: int.
        positive_index: int or None; binary vocabularies only: the id of the positive class
            (see `POSITIVE_NAMES`).

    Raises:
        ValueError: fewer than two names, duplicates, or names that are not non-empty strings.
    """

    def __init__(self, names):
        names = list(names)
        if len(names) < 2 or len(set(names)) != len(names) or \
                not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"LabelVocabulary: expected at least 2 distinct non-empty string "
                             f"labels, received {names!r}")
        self.names = names
        self._ids = {name: index for index, name in enumerate(names)}

    @classmethod
    def from_labels(cls, labels):
        """The vocabulary of the distinct `labels`, sorted (numerically if all are numbers).

        Args:
            labels: iterable of str, e.g. `LabelledTexts.labels` of the training split.
        """
        distinct = set(labels)
        if all(_as_number(label) is not None for label in distinct):
            return cls(sorted(distinct, key=lambda label: (_as_number(label), label)))
        return cls(sorted(distinct))

    @property
    def num_classes(self):
        return len(self.names)

    @property
    def positive_index(self):
        if self.num_classes != 2:
            return None
        lowered = [name.lower() for name in self.names]
        for name in POSITIVE_NAMES:
            if name in lowered:
                return lowered.index(name)
        return 1

    def encode(self, data):
        """The class ids of `data`'s labels.

        Args:
            data: `LabelledTexts` (or any object with `labels` and `location(index)`).

        Returns:
            np.ndarray of int32, shape (len(data),).

        Raises:
            DataError: a label never seen in training; names the file and line of the first one
                and lists the known labels.
        """
        ids = np.empty(len(data.labels), dtype=np.int32)
        for index, label in enumerate(data.labels):
            if label not in self._ids:
                line = data.lines[index] if data.lines else None
                # A header row read as data: its label cell is the column's name.
                looks_like_header = line == 1 and _as_number(label) is None and label.isidentifier()
                header_hint = " Line 1 looks like a header: pass --header=true." \
                    if looks_like_header else ""
                raise DataError(
                    f"{data.location(index)}: unseen label: {label!r} never occurs in the "
                    f"training data; expected one of {self.names} (fix the label, or "
                    f"{SKIP_HINT}).{header_hint}", path=data.path, line=line)
            ids[index] = self._ids[label]
        return ids

    def filter_known(self, data):
        """`data` without the rows whose label is not in the vocabulary, each kept as a `BadRow`.

        Args:
            data: `LabelledTexts`.

        Returns:
            `LabelledTexts` whose `skipped` lists the earlier skipped rows and then the dropped
            ones, reason "unseen label: ...".
        """
        keep, dropped = [], []
        for index, label in enumerate(data.labels):
            if label in self._ids:
                keep.append(index)
            else:
                line = data.lines[index] if data.lines else index + 1
                dropped.append(BadRow(data.path, line, f"unseen label: {label!r} never occurs "
                                                       f"in the training data; expected one of "
                                                       f"{self.names}"))
        return data.select(keep, skipped=list(data.skipped) + dropped)

    def decode(self, ids):
        """The class names of `ids` (ints in [0, num_classes)), as a list of str."""
        return [self.names[int(i)] for i in np.asarray(ids).reshape(-1)]

    def get_config(self):
        return {"format": _FORMAT, "names": list(self.names),
                "positive_index": self.positive_index}

    def save(self, path):
        """Writes the vocabulary as JSON, atomically and with the mode `open` would give.

        The file: {"format": "keras_llm.LabelVocabulary", "names": [...], "positive_index": ...};
        `positive_index` is informative for readers without this class.
        """
        atomic_files.write_json(path, self.get_config())

    @classmethod
    def load(cls, path):
        """Reads a vocabulary written by `save`.

        Raises:
            DataError: the file is not a saved `LabelVocabulary`.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            vocabulary = cls(config["names"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"{path}: expected a label vocabulary saved by LabelVocabulary.save "
                            f"({{\"format\": {_FORMAT!r}, \"names\": [...]}}), could not read it: "
                            f"{error}", path=path) from None
        if config.get("positive_index", vocabulary.positive_index) != vocabulary.positive_index:
            raise DataError(f"{path}: positive_index {config['positive_index']} does not match "
                            f"the names {vocabulary.names} (expected "
                            f"{vocabulary.positive_index})", path=path)
        return vocabulary

    def __eq__(self, other):
        return isinstance(other, LabelVocabulary) and self.names == other.names

    def __repr__(self):
        return f"LabelVocabulary({self.names!r})"


def _as_number(label):
    """float(label) for finite numeric labels such as "0", "-1", "2.5"; otherwise None."""
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
