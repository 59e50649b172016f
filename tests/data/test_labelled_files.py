"""Reading labelled files and layouts: the real SST-2 / ChnSentiCorp files and every bad input."""

import json
import time

import pytest

from keras_llm.data import labelled_files, text_directory
from keras_llm.data.labelled_files import (BadRow, DataError, LabelledTexts, LabelVocabulary,
                                           read_dataset, read_labelled_file, split_validation)
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


def test_header_auto_detection_on_the_real_files():
    chn = read_labelled_file(shared_data_path("chnsenticorp", "dev.tsv"), text_column="text_a")
    assert len(chn) == 1200
    # SST-2 has no header: the default auto-detection says so rather than eat the first row.
    with pytest.raises(DataError, match=r"train\.tsv, line 1: expected a header row naming"):
        read_labelled_file(shared_data_path("sst2", "train.tsv"))


# --- Well-formed variants ------------------------------------------------------------------------

def test_crlf_line_ends_and_trailing_newline(tmp_path):
    path = _write(tmp_path, "crlf.tsv", "1\ta gripping film\r\n0\tdull\r\n")
    data = read_labelled_file(path, **SST2_COLUMNS)
    assert data.texts == ["a gripping film", "dull"] and data.labels == ["1", "0"]
    assert data.lines == [1, 2] and data.skipped == []


def test_no_newline_at_end_of_file(tmp_path):
    data = read_labelled_file(_write(tmp_path, "a.tsv", "1\tgood\n0\tbad"), **SST2_COLUMNS)
    assert data.labels == ["1", "0"] and data.texts == ["good", "bad"]


def test_byte_order_mark_keeps_first_column_name(tmp_path):
    path = _write(tmp_path, "bom.tsv", b"\xef\xbb\xbflabel\ttext_a\r\n1\t\xe5\xa5\xbd\r\n")
    data = read_labelled_file(path, text_column="text_a")
    assert data.labels == ["1"] and data.texts == ["好"] and data.lines == [2]


def test_tsv_quotes_are_text(tmp_path):
    path = _write(tmp_path, "q.tsv", '1\tthe " director \'s cut "\n0\t"quoted\n')
    data = read_labelled_file(path, **SST2_COLUMNS)
    assert data.texts == ['the " director \'s cut "', '"quoted']


def test_columns_by_index_and_label_whitespace(tmp_path):
    path = _write(tmp_path, "i.tsv", "id\ttext\tlabel\n7\tnice\t pos \n8\tmeh\tneg\n")
    data = read_labelled_file(path, text_column=1, label_column=2, header=True)
    assert data.texts == ["nice", "meh"] and data.labels == ["pos", "neg"]
    with pytest.raises(ValueError, match="header cannot be auto-detected"):
        read_labelled_file(path, text_column=1, label_column=2)


def test_csv_with_quoted_commas_quotes_and_newlines(tmp_path):
    path = _write(tmp_path, "q.csv", 'label,sentence\r\n'
                                     'pos,"good, really ""good"""\r\n'
                                     'neg,"two\nlines"\r\n'
                                     'pos,plain\r\n')
    data = read_labelled_file(path)
    assert data.texts == ['good, really "good"', "two\nlines", "plain"]
    assert data.labels == ["pos", "neg", "pos"]
    assert data.lines == [2, 3, 5]  # the quoted newline makes row 3 span lines 3 and 4


def test_jsonl(tmp_path):
    path = _write(tmp_path, "a.jsonl", '\ufeff{"sentence": "fine", "label": 1, "id": 7}\r\n'
                                       '{"label": "neg", "sentence": "bad"}\r\n'
                                       '{"sentence": "yes", "label": true}\r\n')
    data = read_labelled_file(path)
    assert data.texts == ["fine", "bad", "yes"] and data.labels == ["1", "neg", "true"]
    assert data.lines == [1, 2, 3] and not data.skipped
    with pytest.raises(ValueError, match="JSON Lines columns are object keys"):
        read_labelled_file(path, text_column=0, label_column=1)


# --- Bad input: an error naming file and line, or counted and skipped ----------------------------

# (file name, content, reader options, line of the bad row, words expected in its reason)
BAD_INPUTS = [
    ("missing.tsv", "1\tgood\n0\n1\tfine\n", SST2_COLUMNS, 2,
     "missing column: 1 field, expected 2 (label, sentence)"),
    ("extra.tsv", "1\tgood\n0\tbad\tworse\n1\tfine\n", SST2_COLUMNS, 2,
     "extra column: 3 fields, expected 2"),
    ("empty_text.tsv", "1\tgood\n0\t  \n1\tfine\n", SST2_COLUMNS, 2, "empty text"),
    ("empty_label.tsv", "1\tgood\n\tbad\n1\tfine\n", SST2_COLUMNS, 2, "empty label"),
    ("blank.tsv", "1\tgood\n\n1\tfine\n", SST2_COLUMNS, 2, "blank line"),
    ("blank_crlf.tsv", "1\tgood\r\n \r\n1\tfine\r\n", SST2_COLUMNS, 2, "blank line"),
    ("blank_at_end.tsv", "1\tgood\n1\tfine\n\n", SST2_COLUMNS, 3, "blank line"),
    ("lone_cr.tsv", "1\tgood\n0\tbad\rworse\n1\tfine\n", SST2_COLUMNS, 2,
     "carriage return"),
    ("header_missing.tsv", "label\tsentence\n1\tgood\n0\n1\tfine\n", {}, 3,
     "missing column: 1 field, expected 2"),
    ("unclosed.csv", 'label,sentence\n1,good\n0,"bad, "oops\n1,fine\n', {}, 3,
     "malformed CSV"),
    ("missing_key.jsonl", '{"sentence": "good", "label": 1}\n{"sentence": "bad"}\n'
     '{"sentence": "fine", "label": 1}\n', {}, 2, "missing key: ['label']"),
    ("invalid.jsonl", '{"sentence": "good", "label": 1}\n{"sentence": "bad", label: 0}\n'
     '{"sentence": "fine", "label": 1}\n', {}, 2, "invalid JSON"),
    ("not_object.jsonl", '{"sentence": "good", "label": 1}\n["bad", 0]\n'
     '{"sentence": "fine", "label": 1}\n', {}, 2, "not a JSON object"),
    ("blank.jsonl", '{"sentence": "good", "label": 1}\n\n{"sentence": "fine", "label": 1}\n',
     {}, 2, "blank line"),
    ("cp1252.tsv", b"1\tgood\n0\tcaf\xe9 au lait\n1\tfine\n", SST2_COLUMNS, 2,
     "byte 0xe9 at byte offset 12 (byte 6 of the line) is not valid utf-8"),
]


@pytest.mark.parametrize("name,content,options,line,reason", BAD_INPUTS,
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_row_is_an_error_naming_file_and_line(tmp_path, name, content, options, line,
                                                  reason):
    path = _write(tmp_path, name, content)
    with pytest.raises(DataError) as raised:
        read_labelled_file(path, **options)
    message = str(raised.value)
    assert message.startswith(f"{path}, line {line}: ")
    assert reason in message
    assert (raised.value.path, raised.value.line) == (path, line)


@pytest.mark.parametrize("name,content,options,line,reason", BAD_INPUTS,
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_row_is_skipped_and_counted(tmp_path, name, content, options, line, reason):
    path = _write(tmp_path, name, content)
    data = read_labelled_file(path, skip_bad_rows=True, **options)
    assert len(data.skipped) == 1
    bad = data.skipped[0]
    assert (bad.path, bad.line) == (path, line) and reason in bad.reason
    # The good rows on either side are kept, with their own line numbers.
    assert data.texts == ["good", "fine"] and data.labels[0] == "1"
    assert data.lines == {"blank_at_end.tsv": [1, 2], "header_missing.tsv": [2, 4],
                          "unclosed.csv": [2, 4]}.get(name, [1, 3])
    assert f"kept 2 rows, skipped 1 bad row (1 {bad.kind}): line {line}: " in \
        data.skipped_summary()


def test_several_bad_rows_are_all_counted(tmp_path):
    path = _write(tmp_path, "many.tsv", "1\ta\n\n0\n1\tb\tc\n0\t \n1\td\n")
    data = read_labelled_file(path, skip_bad_rows=True, **SST2_COLUMNS)
    assert data.texts == ["a", "d"] and data.lines == [1, 6]
    assert [(row.line, row.kind) for row in data.skipped] == [
        (2, "blank line"), (3, "missing column"), (4, "extra column"), (5, "empty text")]
    assert "skipped 4 bad rows (1 blank line, 1 missing column, 1 extra column, " \
           "1 empty text)" in data.skipped_summary()


def test_cp1252_error_suggests_encoding_and_reads_with_it(tmp_path):
    path = _write(tmp_path, "cp1252.tsv", "1\tgood\n0\tcafé au lait – “quoted”\n"
                  .encode("cp1252"))
    with pytest.raises(DataError, match=r"line 2: .*byte offset 12.*--encoding=cp1252"):
        read_labelled_file(path, **SST2_COLUMNS)
    data = read_labelled_file(path, encoding="cp1252", **SST2_COLUMNS)
    assert data.texts == ["good", "café au lait – “quoted”"]
    replaced = read_labelled_file(path, errors="replace", **SST2_COLUMNS)
    assert replaced.texts[1].startswith("caf\ufffd au lait")


def test_undecodable_byte_inside_a_quoted_multiline_csv_field(tmp_path):
    path = _write(tmp_path, "m.csv", b'label,sentence\n1,good\n0,"first\nsecond \xff"\n1,fine\n')
    data = read_labelled_file(path, skip_bad_rows=True)
    assert data.texts == ["good", "fine"]
    # The row starts on line 3; the bad byte is on line 4.
    assert [(row.line, row.kind) for row in data.skipped] == [(3, "undecodable bytes")]
    assert "byte offset 38 (byte 8 of the line)" in data.skipped[0].reason


def test_header_errors(tmp_path):
    path = _write(tmp_path, "h.tsv", "polarity\ttext\n1\tgood\n")
    with pytest.raises(DataError, match=r"line 1: the header \['polarity', 'text'\] lacks "
                                        r"the column\(s\) \['sentence', 'label'\]"):
        read_labelled_file(path, header=True)
    data = read_labelled_file(path, text_column="text", label_column="polarity")
    assert data.texts == ["good"]


def test_file_level_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_labelled_file(tmp_path / "absent.tsv")
    with pytest.raises(DataError, match="holds no rows"):
        read_labelled_file(_write(tmp_path, "empty.tsv", ""), **SST2_COLUMNS)
    with pytest.raises(DataError, match=r"no usable rows \(2 bad rows skipped\)"):
        read_labelled_file(_write(tmp_path, "bad.tsv", "1\n0\n"), skip_bad_rows=True,
                           **SST2_COLUMNS)
    with pytest.raises(ValueError, match="cannot tell the format from the suffix '.txt'"):
        read_labelled_file(_write(tmp_path, "a.txt", "1\tgood\n"))
    with pytest.raises(ValueError, match="encoding='no-such-codec'"):
        read_labelled_file(_write(tmp_path, "b.tsv", "1\tgood\n"), encoding="no-such-codec",
                           **SST2_COLUMNS)


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


def test_labelled_files_reexports_the_data_types():
    from keras_llm.data import label_vocabulary, labelled_texts
    assert labelled_files.LabelVocabulary is label_vocabulary.LabelVocabulary
    assert labelled_files.DataError is labelled_texts.DataError
    assert issubclass(DataError, ValueError)
