"""LabelVocabulary: ordering, the positive class, encoding, and the saved JSON."""

import json
import os

import numpy as np
import pytest

from keras_llm.data.label_vocabulary import LabelVocabulary
from keras_llm.data.labelled_texts import DataError, LabelledTexts


def test_numeric_labels_sort_by_value():
    # As strings "10" < "2"; by value 2 < 10. Negative labels come first.
    assert LabelVocabulary.from_labels(["10", "2", "2", "-1"]).names == ["-1", "2", "10"]
    assert LabelVocabulary.from_labels(["1", "0", "1"]).names == ["0", "1"]
    # Mixed labels sort as strings.
    assert LabelVocabulary.from_labels(["b", "10", "a", "2"]).names == ["10", "2", "a", "b"]


@pytest.mark.parametrize("labels,names,positive", [
    (["1", "0"], ["0", "1"], 1),
    (["-1", "1"], ["-1", "1"], 1),
    (["pos", "neg"], ["neg", "pos"], 1),
    (["Positive", "Negative"], ["Negative", "Positive"], 1),
    (["true", "false"], ["false", "true"], 1),
    (["1", "2"], ["1", "2"], 0),  # "1" is a positive-class name, even first
    (["good", "bad"], ["bad", "good"], 1),  # no known name: the last
])
def test_positive_index(labels, names, positive):
    vocabulary = LabelVocabulary.from_labels(labels)
    assert vocabulary.names == names and vocabulary.num_classes == 2
    assert vocabulary.positive_index == positive


def test_multi_class_has_no_positive_index():
    vocabulary = LabelVocabulary.from_labels(["a", "b", "c", "1"])
    assert vocabulary.num_classes == 4 and vocabulary.positive_index is None


def test_encode_and_decode():
    vocabulary = LabelVocabulary.from_labels(["neg", "pos", "neutral"])
    data = LabelledTexts(texts=["x", "y", "z", "w"], labels=["pos", "neg", "neutral", "pos"],
                         path="train.tsv", lines=[2, 3, 5, 6])
    ids = vocabulary.encode(data)
    assert ids.dtype == np.int32 and ids.tolist() == [2, 0, 1, 2]  # neg < neutral < pos
    assert vocabulary.decode(np.array([[2], [0]])) == ["pos", "neg"]


def test_encode_without_line_numbers_names_the_row():
    vocabulary = LabelVocabulary(["0", "1"])
    data = LabelledTexts(texts=["a", "b"], labels=["1", "7"], path="test.tsv")
    with pytest.raises(DataError, match=r"test\.tsv, row 2: unseen label: '7'"):
        vocabulary.encode(data)


def test_save_load_round_trip(tmp_path):
    vocabulary = LabelVocabulary.from_labels(["猫", "狗", "猫"])
    path = tmp_path / "model" / "labels.json"
    vocabulary.save(path)
    assert LabelVocabulary.load(path) == vocabulary
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved == {"format": "keras_llm.LabelVocabulary", "names": sorted(["猫", "狗"]),
                     "positive_index": 1}
    assert os.listdir(tmp_path / "model") == ["labels.json"]  # no temporary file left behind
    # Saving again replaces the file in one step.
    LabelVocabulary(["0", "1"]).save(path)
    assert LabelVocabulary.load(path).names == ["0", "1"]


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"names": ["only one"]}')
    with pytest.raises(DataError, match="expected a label vocabulary saved by"):
        LabelVocabulary.load(path)
    path.write_text('{"names": ["neg", "pos"], "positive_index": 0}')
    with pytest.raises(DataError, match=r"positive_index 0 does not match .* \(expected 1\)"):
        LabelVocabulary.load(path)


def test_invalid_names():
    with pytest.raises(ValueError, match="at least 2 distinct"):
        LabelVocabulary.from_labels(["1", "1"])
    with pytest.raises(ValueError, match="at least 2 distinct"):
        LabelVocabulary(["a", "a", "b"])


def test_a_header_read_as_data_suggests_header_true(tmp_path):
    from keras_llm.data.labelled_files import read_labelled_file
    path = tmp_path / "reviews.tsv"
    path.write_text("label\ttext_a\n1\tgood\n0\tbad\n", encoding="utf-8")
    data = read_labelled_file(str(path), text_column=1, label_column=0, header=False)
    with pytest.raises(DataError, match=r"line 1: unseen label: 'label'.*pass --header=true"):
        LabelVocabulary(["0", "1"]).encode(data)
    rows = read_labelled_file(str(path), text_column=1, label_column=0, header=True)
    assert LabelVocabulary(["0", "1"]).encode(rows).tolist() == [1, 0]
