"""What the labelled-data readers return: texts with string labels, and the rows they rejected.

Every reader in `labelled_files.py` returns a `LabelledTexts` and reports each row it could not
use as a `BadRow` (file, line, reason). A bad row either stops the read with a `DataError` whose
message names the file, the line, what was wrong and what was expected, or, with
`skip_bad_rows=True`, is left out and kept in `LabelledTexts.skipped`: nothing is dropped silently.

`decode_bytes` lives here because both the file reader and the class-folder reader need the same
undecodable-byte report (file, line, byte offset, a hint to pass --encoding).
"""

import codecs
import collections
import dataclasses

SKIP_HINT = "pass --skip_bad_rows (skip_bad_rows=True) to skip and count such rows"
# How many skipped rows `LabelledTexts.skipped_summary` lists one by one before summarising.
SUMMARY_MAX_ROWS = 10


class DataError(ValueError):
    """Labelled data that cannot be used as given.

    The message names the file, the 1-based line, what was wrong and what was expected.

    Attributes:
        path: str or None, the file or folder at fault.
        line: int or None, the 1-based line number in `path`.
    """

    def __init__(self, message, *, path=None, line=None):
        super().__init__(message)
        self.path = path
        self.line = line

    @classmethod
    def from_bad_row(cls, bad_row, hint=SKIP_HINT):
        """A `DataError` for `bad_row`, with an optional hint on how to proceed."""
        message = str(bad_row) + (f" ({hint})" if hint else "")
        return cls(message, path=bad_row.path, line=bad_row.line)


@dataclasses.dataclass(frozen=True)
class BadRow:
    """One row a reader could not use.

    Attributes:
        path: str, the file the row is in.
        line: int, the 1-based line the row starts on.
        reason: str, `"<kind>"` or `"<kind>: <details>"`; the kind (e.g. "missing column",
            "empty text", "blank line", "unseen label") groups rows in summaries, the details
            say what was found and what was expected.
    """

    path: str
    line: int
    reason: str

    @property
    def kind(self):
        """The reason up to the first colon, e.g. "missing column"."""
        return self.reason.split(":", 1)[0]

    def __str__(self):
        return f"{self.path}, line {self.line}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class LabelledTexts:
    """Texts with their string labels, as read from one file or folder.

    Attributes:
        texts: list of str, one per example, as found in the file (not stripped).
        labels: list of str, one per example, stripped of surrounding whitespace; mapped to ids
            by `LabelVocabulary` (labels stay strings so "pos"/"neg" and "0"/"1" read alike).
        path: str, the file (or, for a class-folder layout, the folder) the rows came from.
        skipped: list of `BadRow`, the rows left out because `skip_bad_rows` was set.
        lines: list of int, the 1-based line each example starts on (for a class-folder layout
            every example is a whole file, so each is 1). Empty when unknown; error messages then
            give the 1-based row number instead.
    """

    texts: list
    labels: list
    path: str
    skipped: list = dataclasses.field(default_factory=list)
    lines: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if len(self.texts) != len(self.labels):
            raise ValueError(
                f"LabelledTexts({self.path}): expected as many labels as texts, "
                f"received {len(self.texts)} texts and {len(self.labels)} labels")
        if self.lines and len(self.lines) != len(self.texts):
            raise ValueError(
                f"LabelledTexts({self.path}): expected one line number per text or none, "
                f"received {len(self.texts)} texts and {len(self.lines)} line numbers")

    def __len__(self):
        return len(self.texts)

    def location(self, index):
        """Where example `index` (0-based) came from, e.g. "dev.tsv, line 12"."""
        if self.lines:
            return f"{self.path}, line {self.lines[index]}"
        return f"{self.path}, row {index + 1}"

    def select(self, indices, skipped=None):
        """A new `LabelledTexts` holding the examples at `indices`, in that order.

        Args:
            indices: iterable of 0-based example indices.
            skipped: list of `BadRow` for the result; defaults to this object's `skipped`.
        """
        indices = list(indices)
        return LabelledTexts(
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            path=self.path,
            skipped=list(self.skipped if skipped is None else skipped),
            lines=[self.lines[i] for i in indices] if self.lines else [])

    def skipped_summary(self):
        """One paragraph on the skipped rows, e.g. for a log; "" when nothing was skipped.

        Example: "train.tsv: kept 98 rows, skipped 2 bad rows (1 empty text, 1 missing column):
        line 4: empty text; line 9: missing column: 1 field, expected 2 (label, sentence)".
        """
        if not self.skipped:
            return ""
        kinds = collections.Counter(row.kind for row in self.skipped)
        counts = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
        listed = "; ".join(
            (f"line {row.line}: {row.reason}" if row.path == self.path else str(row))
            for row in self.skipped[:SUMMARY_MAX_ROWS])
        more = len(self.skipped) - SUMMARY_MAX_ROWS
        listed += f"; and {more} more" if more > 0 else ""
        return (f"{self.path}: kept {pluralize(len(self), 'row')}, skipped "
                f"{pluralize(len(self.skipped), 'bad row')} ({counts}): {listed}")


def pluralize(number, noun):
    """"1 row", "2 rows": a count for messages."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def decode_bytes(raw, *, path, encoding="utf-8", errors="strict", skip_bad_rows=False):
    """Decodes a file's bytes, reporting undecodable bytes by line and byte offset.

    A UTF-8 byte-order mark is dropped when `encoding` is UTF-8 (Windows tools write one), so a
    first column name "label" is still recognised. Line numbers count b"\\n" bytes, which is right
    for every ASCII-compatible encoding (UTF-8, cp1252, latin-1, GBK, ...).

    Args:
        raw: bytes, the whole file.
        path: str, used in messages.
        encoding: a Python codec name, e.g. "utf-8" or "cp1252".
        errors: a Python codec error handler: "strict" (report undecodable bytes) or e.g.
            "replace" (substitute U+FFFD, report nothing).
        skip_bad_rows: with `errors="strict"`, replace undecodable bytes by U+FFFD and report their
            lines instead of raising, so the caller can skip those rows.

    Returns:
        (text, bad_lines): text is a str; bad_lines maps a 1-based line number to a `BadRow`
        reason ("undecodable bytes: ...") for each line that held undecodable bytes (always empty
        unless `skip_bad_rows`).

    Raises:
        ValueError: `encoding` or `errors` is not a Python codec / error handler.
        DataError: undecodable bytes and not `skip_bad_rows`; names the line and byte offset and
            suggests --encoding.
    """
    try:
        codec = codecs.lookup(encoding).name
        codecs.lookup_error(errors)
    except LookupError as error:
        raise ValueError(f"reading {path}: expected a Python codec name for --encoding (e.g. "
                         f"utf-8, cp1252) and strict or replace for --errors; received "
                         f"--encoding={encoding!r} --errors={errors!r}: {error}") from None
    start = 0
    if codec in ("utf-8", "utf-8-sig"):
        codec = "utf-8"
        if raw.startswith(codecs.BOM_UTF8):
            start = len(codecs.BOM_UTF8)
    if errors != "strict":
        return raw[start:].decode(codec, errors), {}

    pieces, bad_lines = [], {}
    position = start
    while True:
        try:
            pieces.append(raw[position:].decode(codec))
            return "".join(pieces), bad_lines
        except UnicodeDecodeError as error:
            offset = position + error.start
            line = raw.count(b"\n", 0, offset) + 1
            column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
            reason = (f"undecodable bytes: byte 0x{raw[offset]:02x} at byte offset {offset} "
                      f"(byte {column} of the line) is not valid {encoding} ({error.reason})")
            if not skip_bad_rows:
                raise DataError(
                    f"{path}, line {line}: {reason}; expected {encoding} text. If the file uses "
                    f"another encoding pass it with --encoding (encoding=...), e.g. "
                    f"--encoding=cp1252 for Windows-1252, or {SKIP_HINT}",
                    path=path, line=line) from None
            bad_lines.setdefault(line, reason)
            pieces.append(raw[position:offset].decode(codec))
            pieces.append("\ufffd")
            position = position + error.end
