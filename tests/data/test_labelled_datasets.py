"""Reading named layouts: the real SST-2 / ChnSentiCorp splits, class folders, aclImdb, files."""

import json
import time

import pytest

from keras_llm.data import text_directory
from keras_llm.data.label_vocabulary import LabelVocabulary
from keras_llm.data.labelled_datasets import read_dataset, split_validation
from keras_llm.data.labelled_texts import BadRow, DataError, LabelledTexts
from tests.conftest import shared_data_path

SST2_COLUMNS = dict(header=False, column_names=("label", "sentence"))


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


# --- The real files ------------------------------------------------------------------------------

def test_sst2_splits_have_the_published_sizes():
    splits = read_dataset("sst2", shared_data_path("sst2"))
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 6920, "validation": 872, "test": 1821}
    train = splits["train"]
    assert train.labels[:2] == ["1", "0"]  # first line: 1<TAB>a stirring , funny and finally ...
    assert train.texts[0].startswith("a stirring , funny and finally transporting")
    assert train.lines[:3] == [1, 2, 3] and train.lines[-1] == 6920
    assert set(train.labels) == {"0", "1"} and not train.skipped


def test_chnsenticorp_splits_have_the_published_sizes():
    splits = read_dataset("chnsenticorp", shared_data_path("chnsenticorp"))
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 9600, "validation": 1200, "test": 1200}
    # The header "label<TAB>text_a" is line 1, so the first example is on line 2.
    assert splits["train"].lines[0] == 2 and splits["train"].texts[0].startswith("选择珠江花园")
    # Quote characters in the reviews are text, not CSV quoting (the files hold 184 of them).
    assert sum(text.count('"') for split in splits.values() for text in split.texts) == 184


# --- Unseen labels -------------------------------------------------------------------------------

def test_unseen_label_in_dev_names_file_and_line(tmp_path):
    _write(tmp_path, "train.tsv", "1\tgood\n0\tbad\n")
    _write(tmp_path, "dev.tsv", "1\tnice\n2\tmeh\n0\tawful\n")
    splits = read_dataset("files", str(tmp_path), train_file="train.tsv",
                          validation_file="dev.tsv", **SST2_COLUMNS)
    vocabulary = LabelVocabulary.from_labels(splits["train"].labels)
    dev_path = str(tmp_path / "dev.tsv")
    with pytest.raises(DataError, match=rf"{dev_path}, line 2: unseen label: '2' never occurs "
                                        r"in the training data; expected one of \['0', '1'\]"):
        vocabulary.encode(splits["validation"])
    known = vocabulary.filter_known(splits["validation"])
    assert known.texts == ["nice", "awful"] and known.lines == [1, 3]
    assert known.skipped == [BadRow(dev_path, 2, known.skipped[0].reason)]
    assert known.skipped[0].kind == "unseen label"
    assert vocabulary.encode(known).tolist() == [1, 0]


# --- Layouts -------------------------------------------------------------------------------------

def _class_tree(root, splits):
    """splits: {split: {class: [texts]}} -> root/split/class/<i>.txt."""
    for split, classes in splits.items():
        for name, texts in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, text in enumerate(texts):
                (folder / f"{i}.txt").write_bytes(
                    text if isinstance(text, bytes) else text.encode("utf-8"))


def test_directory_layout_with_dev_folder(tmp_path):
    _class_tree(tmp_path, {"train": {"neg": ["bad", "awful"], "pos": ["good"]},
                           "dev": {"neg": ["meh"], "pos": ["fine"]},
                           "test": {"neg": ["dull"], "pos": ["great", "superb"]}})
    (tmp_path / "train" / "neg" / "notes.md").write_text("not a .txt file")
    splits = read_dataset("directory", str(tmp_path))
    assert list(splits) == ["train", "validation", "test"]
    assert splits["train"].texts == ["bad", "awful", "good"]
    assert splits["train"].labels == ["neg", "neg", "pos"]
    assert splits["validation"].labels == ["neg", "pos"]
    assert splits["test"].texts == ["dull", "great", "superb"]
    assert splits["train"].path == str(tmp_path / "train")


def test_directory_layout_carves_validation_with_a_fixed_seed(tmp_path):
    _class_tree(tmp_path, {"train": {"neg": [f"n{i}" for i in range(10)],
                                     "pos": [f"p{i}" for i in range(10)]},
                           "test": {"neg": ["x"], "pos": ["y"]}})
    first = read_dataset("directory", str(tmp_path), validation_split=0.25)
    again = read_dataset("directory", str(tmp_path), validation_split=0.25)
    assert len(first["train"]) == 15 and len(first["validation"]) == 5
    assert first["validation"].texts == again["validation"].texts
    assert sorted(first["train"].texts + first["validation"].texts) == sorted(
        [f"n{i}" for i in range(10)] + [f"p{i}" for i in range(10)])
    other_seed = read_dataset("directory", str(tmp_path), validation_split=0.25, seed=1)
    assert other_seed["validation"].texts != first["validation"].texts


def test_directory_layout_errors_and_skips(tmp_path):
    _class_tree(tmp_path, {"train": {"neg": ["bad", b"caf\xe9"], "pos": ["good", " "],
                                     "unsup": ["?"]},
                           "test": {"neg": ["x"], "pos": ["y"]}})
    with pytest.raises(DataError, match=r"test: has class folders \['neg', 'pos'\], train/ has "
                                        r"\['neg', 'pos', 'unsup'\]"):
        read_dataset("directory", str(tmp_path))
    bad_file = str(tmp_path / "train" / "neg" / "1.txt")
    with pytest.raises(DataError, match=rf"{bad_file}, line 1: undecodable bytes"):
        read_dataset("directory", str(tmp_path), class_names=["neg", "pos"])
    splits = read_dataset("directory", str(tmp_path), class_names=["neg", "pos"],
                          skip_bad_rows=True, validation_split=0.5)
    train = splits["train"]
    assert [(row.path, row.kind) for row in train.skipped] == [
        (bad_file, "undecodable bytes"), (str(tmp_path / "train" / "pos" / "1.txt"),
                                          "empty text")]
    assert sorted(train.texts + splits["validation"].texts) == ["bad", "good"]
    cp1252 = read_dataset("directory", str(tmp_path), class_names=["neg", "pos"],
                          encoding="cp1252", skip_bad_rows=True, validation_split=0.5)
    assert "café" in cp1252["train"].texts + cp1252["validation"].texts


def test_imdb_uses_a_local_aclimdb_and_ignores_unsup(tmp_path):
    _class_tree(tmp_path / "aclImdb", {
        "train": {"neg": ["bad"] * 5, "pos": ["good"] * 5, "unsup": ["?"] * 3},
        "test": {"neg": ["dull"], "pos": ["great"]}})
    (tmp_path / "aclImdb" / "train" / "urls_pos.txt").write_text("http://example.com\n")
    splits = read_dataset("imdb", str(tmp_path))  # the parent of aclImdb
    assert len(splits["train"]) == 8 and len(splits["validation"]) == 2  # 20 % of 10
    assert set(splits["train"].labels) <= {"neg", "pos"}
    assert splits["test"].labels == ["neg", "pos"]
    assert read_dataset("imdb", str(tmp_path / "aclImdb"))["test"].texts == ["dull", "great"]


def test_imdb_offline_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    # Hermetic: pretend the server is unreachable rather than depend on this machine's network.
    monkeypatch.setattr(text_directory, "_reachable", lambda host, port, timeout: False)
    start = time.monotonic()
    with pytest.raises(DataError, match=r"not in the Keras cache .*cannot be reached.*"
                                        r"aclImdb_v1\.tar\.gz.*--data_dir"):
        read_dataset("imdb")
    assert time.monotonic() - start < 5
    with pytest.raises(DataError, match="expected the aclImdb folder"):
        read_dataset("imdb", str(tmp_path))


def test_reachable_gives_up_within_its_timeout():
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never routed, so the probe must time out (or fail).
    start = time.monotonic()
    assert text_directory._reachable("192.0.2.1", 443, 0.5) is False
    assert time.monotonic() - start < 2


def test_files_layout_and_reader_options(tmp_path):
    _write(tmp_path, "train.jsonl", "\n".join(json.dumps({"text": t, "y": y}) for t, y in
                                              [("a", "x"), ("b", "y"), ("c", "x")]) + "\n")
    _write(tmp_path, "test.jsonl", json.dumps({"text": "d", "y": "y"}) + "\n")
    splits = read_dataset("files", str(tmp_path), train_file="train.jsonl",
                          test_file="test.jsonl", text_column="text", label_column="y")
    assert list(splits) == ["train", "test"]
    assert splits["train"].labels == ["x", "y", "x"] and splits["test"].texts == ["d"]


def test_read_dataset_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"expected dataset in \('sst2', 'chnsenticorp', "
                                         r"'directory', 'imdb', 'files'\), received 'mnist'"):
        read_dataset("mnist", str(tmp_path))
    with pytest.raises(ValueError, match="train_file"):
        read_dataset("sst2", str(tmp_path), train_file="x.tsv")
    with pytest.raises(ValueError, match=r"expected only encoding.*\['text_column'\]"):
        read_dataset("directory", str(tmp_path), text_column="text")
    with pytest.raises(DataError, match=r"train\.tsv: no such file"):
        read_dataset("sst2", str(tmp_path))


def test_split_validation_keeps_order_and_rejects_empty_halves():
    data = LabelledTexts(texts=list("abcdefghij"), labels=["0", "1"] * 5, path="x.tsv",
                         skipped=[BadRow("x.tsv", 11, "blank line")], lines=list(range(1, 11)))
    train, validation = split_validation(data, validation_split=0.3, seed=0)
    assert len(train) == 7 and len(validation) == 3
    assert train.lines == sorted(train.lines) and validation.lines == sorted(validation.lines)
    assert sorted(train.texts + validation.texts) == list("abcdefghij")
    assert [validation.labels[i] for i in range(3)] == [
        data.labels[line - 1] for line in validation.lines]
    assert train.skipped == data.skipped and validation.skipped == []
    with pytest.raises(ValueError, match="leaving both halves non-empty"):
        split_validation(data, validation_split=0.05)
