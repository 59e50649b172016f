"""Reading one labelled text-classification file: TSV, CSV or JSON Lines.

`read_labelled_file` reads one file into a `LabelledTexts` (texts and string labels, with the
line each row came from). The named layouts built on it (`sst2`, `chnsenticorp`, class
folders, `imdb`, `files`) are in `labelled_datasets.py`.

Bad input policy (the same for every format; nothing is dropped silently):
- A row with missing or extra columns, empty text, an empty label, undecodable bytes, invalid
  CSV quoting or JSON, or a blank line raises a `DataError` naming the file, the line, what was
  wrong and what was expected; with `skip_bad_rows=True` it is left out, kept in
  `LabelledTexts.skipped` and summarised in a log warning.
- Blank lines: the newline that ends the last line is not a row; any other empty or
  whitespace-only line (in the middle or at the end of the file) is a bad row "blank line".
- CRLF line ends and a UTF-8 byte-order mark are handled transparently.
- Labels in dev/test never seen in training are caught by `LabelVocabulary.encode` (same error /
  skip policy via `LabelVocabulary.filter_known`).

The pieces: `labelled_texts.py` (DataError, BadRow, LabelledTexts, decoding) and
`label_vocabulary.py` (LabelVocabulary), both re-exported here.

Worked example (TSV, header=False, column_names=("label", "sentence")):
    b"1\\ta gripping film\\r\\n0\\tdull\\n"
        ->  texts ["a gripping film", "dull"], labels ["1", "0"], lines [1, 2]
"""

import csv
import io
import json
import logging
import os

from keras_llm.data.label_vocabulary import LabelVocabulary
from keras_llm.data.labelled_texts import (BadRow, DataError, LabelledTexts, decode_bytes,
                                           pluralize)

__all__ = ["BadRow", "DataError", "LabelVocabulary", "LabelledTexts", "read_labelled_file",
           "format_from_suffix", "column_from_flag", "HEADER_FLAG_VALUES", "FILE_FORMATS"]

_LOG = logging.getLogger(__name__)

FILE_FORMATS = ("tsv", "csv", "jsonl")
_SUFFIX_FORMATS = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl",
                   ".ndjson": "jsonl"}


# A --header flag (and `DataConfig.header`) value -> `read_labelled_file(header=...)`.
HEADER_FLAG_VALUES = {"auto": None, "true": True, "false": False}


def column_from_flag(value):
    """A --text_column / --label_column value (flag or config field): a 0-based index if all
    digits, else a column name. E.g. "1" -> 1, "sentence" -> "sentence"."""
    return int(value) if value.isdigit() else value


def read_labelled_file(path, *, file_format="auto", text_column="sentence", label_column="label",
                       header=None, column_names=None, encoding="utf-8", errors="strict",
                       skip_bad_rows=False):
    """Reads texts and string labels from one TSV, CSV or JSON Lines file.

    TSV is split on tabs with no quoting at all (SST-2 and ChnSentiCorp sentences contain quote
    characters that are text, not quoting); CSV follows RFC 4180 quoting (fields may hold quoted
    commas, quotes doubled as "", and newlines); JSON Lines holds one object per line whose keys
    are the column names (other keys are ignored; a label may be a string, integer or boolean).

    Args:
        path: str or path-like, the file.
        file_format: "tsv", "csv", "jsonl", or "auto" (from the suffix: .tsv/.tab, .csv,
            .jsonl/.ndjson).
        text_column: the text column's name (header or `column_names`; the key for JSON Lines)
            or 0-based index.
        label_column: the label column's name or 0-based index (both columns given the same way).
        header: delimited files only. True: the first row names the columns. False: no header.
            None: auto-detect, the first row is a header when it contains both column names
            (named columns only; with integer columns say True or False).
        column_names: delimited files without a header: the names of all the columns in order,
            e.g. ("label", "sentence"), so named columns and the field count can be checked.
        encoding: a Python codec, e.g. "utf-8" (a byte-order mark is dropped) or "cp1252".
        errors: "strict" (undecodable bytes are bad rows) or "replace" (they become U+FFFD).
        skip_bad_rows: skip bad rows and list them in `skipped` instead of raising.

    Returns:
        `LabelledTexts` with texts, labels, the 1-based start line of every row, and the skipped
        rows. Rows have exactly as many fields as the header, `column_names`, or (without
        either) the first row.

    Raises:
        DataError: the file is missing or empty, a bad row (not `skip_bad_rows`), no header where
            one was expected, or no good rows at all.
        ValueError: inconsistent arguments (unknown format, columns given both by name and index,
            a named column without a header or `column_names`, ...).
    """
    path = os.fspath(path)
    file_format = _resolve_format(path, file_format)
    if header not in (None, True, False):
        raise ValueError(f"reading {path}: expected header True, False or None (auto-detect), "
                         f"received {header!r}")
    if isinstance(text_column, bool) or not isinstance(text_column, (str, int)) or \
            type(text_column) is not type(label_column):
        raise ValueError(f"reading {path}: expected --text_column and --label_column both column "
                         f"names or both 0-based indices, received "
                         f"--text_column={text_column!r} --label_column={label_column!r}")
    if text_column == label_column:
        raise ValueError(f"reading {path}: --text_column and --label_column are both "
                         f"{text_column!r}; expected two different columns")
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "no such file"
        raise DataError(f"{path}: {what}; expected a {file_format} file of labelled texts",
                        path=path)
    with open(path, "rb") as f:
        raw = f.read()
    text, bad_lines = decode_bytes(raw, path=path, encoding=encoding, errors=errors,
                                   skip_bad_rows=skip_bad_rows)
    if file_format == "jsonl":
        if isinstance(text_column, int) or header or column_names is not None:
            raise ValueError(f"reading {path}: JSON Lines columns are object keys; expected "
                             f"--text_column and --label_column names (not indices) and "
                             f"--header=auto, received --text_column={text_column!r}, "
                             f"--header={_header_flag(header)}"
                             + ("" if column_names is None else
                                f", column_names={column_names!r}"))
        rows = _jsonl_rows(text, path, text_column, label_column)
    else:
        rows = _delimited_rows(text, path, file_format, text_column, label_column, header,
                               column_names)

    texts, labels, lines, skipped = [], [], [], []
    for line, last, text_and_label, reason in rows:
        # An undecodable byte anywhere in the row (a quoted CSV field may span lines) is
        # reported first: the rest of the row was read from U+FFFD-patched text.
        undecodable = [bad_lines[n] for n in range(line, last + 1) if n in bad_lines]
        reason = undecodable[0] if undecodable else reason
        if reason is None:
            row_text, label = text_and_label
            label = label.strip()
            if not row_text.strip():
                reason = "empty text: expected a non-empty text column"
            elif not label:
                reason = "empty label: expected a non-empty label column"
        if reason is not None:
            bad = BadRow(path, line, reason)
            if not skip_bad_rows:
                raise DataError.from_bad_row(bad)
            skipped.append(bad)
            continue
        texts.append(row_text)
        labels.append(label)
        lines.append(line)
    if not texts:
        raise DataError(f"{path}: no usable rows ({pluralize(len(skipped), 'bad row')} skipped); "
                        f"expected at least one labelled text", path=path)
    data = LabelledTexts(texts=texts, labels=labels, path=path, skipped=skipped, lines=lines)
    if skipped:
        _LOG.warning("%s", data.skipped_summary())
    return data


def format_from_suffix(path):
    """The file format a path's suffix names ("tsv", "csv", "jsonl"), or None if it names none."""
    return _SUFFIX_FORMATS.get(os.path.splitext(os.fspath(path))[1].lower())


def _header_flag(header):
    """`read_labelled_file`'s header as the --header flag's value: None -> "auto"."""
    return {None: "auto", True: "true", False: "false"}.get(header, repr(header))


def _resolve_format(path, file_format):
    if file_format == "auto":
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in _SUFFIX_FORMATS:
            raise ValueError(f"reading {path}: cannot tell the format from the suffix "
                             f"{suffix!r}; expected one of {sorted(_SUFFIX_FORMATS)} or an "
                             f"explicit file_format (--file_format) in {FILE_FORMATS}")
        return _SUFFIX_FORMATS[suffix]
    if file_format not in FILE_FORMATS:
        raise ValueError(f"reading {path}: expected file_format in {FILE_FORMATS + ('auto',)}, "
                         f"received {file_format!r}")
    return file_format


def _records(text, file_format):
    """Yields (first_line, last_line, fields or None, csv error or None) for each record."""
    # newline="\n": lines end only at \n (\r\n too, the csv reader drops the \r), so line numbers
    # agree with the byte-level count in decode_bytes; a lone \r is reported, not split on.
    lines = io.StringIO(text, newline="\n")
    if file_format == "tsv":
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(lines, strict=True)  # RFC 4180: "," and "" inside quoted fields
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            message = str(error)
            if message.startswith("new-line character"):
                message = "a carriage return (\\r) inside a line; expected \\n or \\r\\n line ends"
            yield start, reader.line_num, None, f"malformed {file_format.upper()}: {message}"
            continue
        yield start, reader.line_num, fields, None


def _delimited_rows(text, path, file_format, text_column, label_column, header, column_names):
    """Yields (first_line, last_line, (text, label) or None, bad-row reason or None)."""
    named = isinstance(text_column, str)
    if header is None and not named:
        raise ValueError(f"reading {path}: with integer columns ({text_column}, {label_column}) "
                         f"the header cannot be auto-detected; expected --header=true or "
                         f"--header=false")
    if header is False and named and column_names is None:
        raise ValueError(f"reading {path}: --header=false with named columns "
                         f"--text_column={text_column!r} --label_column={label_column!r}; "
                         f"without a header expected 0-based indices (e.g. --text_column=1 "
                         f"--label_column=0)")
    names = list(column_names) if column_names is not None else None
    expected = len(names) if names else None  # field count, fixed below if still unknown
    text_index, label_index = (None, None) if named else (text_column, label_column)
    if named and names:
        text_index, label_index = _find_columns(names, text_column, label_column, path, None,
                                                "column_names")
    first = True
    for line, last, fields, error in _records(text, file_format):
        if error is not None:
            yield line, last, None, error
            continue
        if not any(field.strip() for field in fields):
            yield line, last, None, "blank line: expected a row of labelled text"
            continue
        if first:
            first = False
            stripped = [field.strip() for field in fields]
            is_header = header if header is not None else (
                text_column in stripped and label_column in stripped)
            if header is None and not is_header and names is None:
                raise DataError(
                    f"{path}, line {line}: expected a header row naming the columns "
                    f"{text_column!r} and {label_column!r}, found {_preview(fields)}; for a file "
                    f"without a header pass --header=false and 0-based column indices (e.g. "
                    f"--text_column=1 --label_column=0)",
                    path=path, line=line)
            if is_header:
                expected = len(fields)
                if named:
                    text_index, label_index = _find_columns(stripped, text_column, label_column,
                                                            path, line, "header")
                _check_indices(text_index, label_index, expected, path, line)
                continue
            if expected is None:
                expected = len(fields)
            _check_indices(text_index, label_index, expected, path, line)
        if len(fields) != expected:
            kind = "missing column" if len(fields) < expected else "extra column"
            what = f" ({', '.join(names)})" if names else ""
            yield line, last, None, (f"{kind}: {pluralize(len(fields), 'field')}, expected "
                                     f"{expected}{what}; "
                                     f"found {_preview(fields)}")
            continue
        yield line, last, (fields[text_index], fields[label_index]), None
    if first:
        raise DataError(f"{path}: the file holds no rows; expected labelled texts", path=path)


def _find_columns(names, text_column, label_column, path, line, source):
    missing = [c for c in (text_column, label_column) if c not in names]
    if missing:
        where = f"{path}, line {line}" if line else path
        raise DataError(f"{where}: the {source} {names} lacks the column(s) {missing}; expected "
                        f"it to name --text_column={text_column!r} and --label_column="
                        f"{label_column!r}", path=path, line=line)
    return names.index(text_column), names.index(label_column)


def _check_indices(text_index, label_index, expected, path, line):
    if max(text_index, label_index) >= expected:
        raise DataError(f"{path}, line {line}: rows have {expected} fields, expected more than "
                        f"text column {text_index} and label column {label_index}",
                        path=path, line=line)


def _preview(fields, width=60):
    shown = repr(fields)
    return shown if len(shown) <= width else shown[:width] + "...]"


def _jsonl_rows(text, path, text_column, label_column):
    """Yields (line, line, (text, label) or None, bad-row reason or None) for JSON Lines."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line is not a row
    if not lines:
        raise DataError(f"{path}: the file holds no rows; expected labelled texts", path=path)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            yield number, number, None, "blank line: expected one JSON object"
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, number, None, (f"invalid JSON: {error.msg} at column "
                                         f"{error.colno}; expected one JSON object per line")
            continue
        if not isinstance(record, dict):
            yield number, number, None, (f"not a JSON object: found a {type(record).__name__}; "
                                         f"expected an object with keys {text_column!r} and "
                                         f"{label_column!r}")
            continue
        missing = [key for key in (text_column, label_column) if key not in record]
        if missing:
            yield number, number, None, (f"missing key: {missing} not in the object's keys "
                                         f"{sorted(record)}")
            continue
        row_text, label = record[text_column], record[label_column]
        if isinstance(label, bool):
            label = "true" if label else "false"
        elif isinstance(label, int):
            label = str(label)
        if not isinstance(row_text, str) or not isinstance(label, str):
            yield number, number, None, (f"wrong type: expected a string {text_column!r} and a "
                                         f"string, integer or boolean {label_column!r}, found "
                                         f"{type(record[text_column]).__name__} and "
                                         f"{type(record[label_column]).__name__}")
            continue
        yield number, number, (row_text, label), None
