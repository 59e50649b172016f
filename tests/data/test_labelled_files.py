"""Reading one labelled file: the real SST-2 / ChnSentiCorp files and every bad input."""

import re

import pytest

from keras_llm.data import labelled_files
from keras_llm.data.labelled_files import DataError, read_labelled_file
from tests.conftest import shared_data_path

SST2_COLUMNS = dict(header=False, column_names=("label", "sentence"))


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


# --- The real files ------------------------------------------------------------------------------

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


def test_labelled_files_reexports_the_data_types():
    from keras_llm.data import label_vocabulary, labelled_texts
    assert labelled_files.LabelVocabulary is label_vocabulary.LabelVocabulary
    assert labelled_files.DataError is labelled_texts.DataError
    assert issubclass(DataError, ValueError)


@pytest.mark.parametrize("options, flags", [
    (dict(header=False), "--header=false with named columns --text_column='sentence' "
                         "--label_column='label'; without a header expected 0-based indices"),
    (dict(text_column=1, label_column="label"), "--text_column=1 --label_column='label'"),
    (dict(text_column="label"), "--text_column and --label_column are both 'label'"),
    (dict(text_column=1, label_column=0), "expected --header=true or --header=false"),
])
def test_errors_a_flag_can_cause_name_the_flag(tmp_path, options, flags):
    path = tmp_path / "data.tsv"
    path.write_text("1\tgood\n")
    with pytest.raises(ValueError, match=re.escape(flags)):
        read_labelled_file(path, **options)
