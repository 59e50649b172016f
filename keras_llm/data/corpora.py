"""Language-modelling corpora: local text files, or a corpus by name.

Named corpora:
- `tiny_shakespeare`: the char-rnn corpus (Karpathy 2015), 1,115,394 characters. Looked up in
  `data_dir`, then `$KERAS_LLM_DATA`, then Keras's dataset cache (`~/.keras/datasets`), then
  downloaded once from the canonical char-rnn URL with `keras.utils.get_file`.
- `chinese_poetry`: the chinese-poetry project's JSON layout (arrays of
  `{"author", "title", "paragraphs": [lines]}`), one poem per line; needs `data_dir`.
- `python_docs`: the documentation text that ships with CPython (`pydoc_data.topics`), so a run
  with no network and no files still trains on real text.

The split is nanoGPT's: the first 90 % of the text trains, the last 10 % validates, unless a
validation file is given.
"""

import dataclasses
import json
import os
import pathlib
import re
import socket
import urllib.parse

TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_FILENAMES = ("input.txt", "tinyshakespeare/input.txt", "tiny_shakespeare.txt")
NAMED_CORPORA = ("tiny_shakespeare", "chinese_poetry", "python_docs")
# nanoGPT's data/shakespeare_char/prepare.py: train on the first 90 %, validate on the rest.
VALIDATION_FRACTION = 0.1


class CorpusError(ValueError):
    """A corpus file is missing, empty, undecodable or malformed; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A corpus split into training and validation text.

    Attributes:
        name: the corpus name or the path it was read from.
        train_text: str, the training split.
        validation_text: str, the validation split.
        sources: list of the files read.
    """

    name: str
    train_text: str
    validation_text: str
    sources: list


def read_text_file(path, encoding="utf-8", errors="strict"):
    """Reads a whole text file.

    Args:
        path: str or path-like.
        encoding: a Python codec name, e.g. "utf-8" or "cp1252".
        errors: "strict" (raise on undecodable bytes) or "replace" (U+FFFD).

    Returns:
        The decoded text, with a UTF-8 byte-order mark removed and Windows ("\\r\\n") and old
        Mac ("\\r") line ends turned into "\\n", as Python's universal newlines do (a "\\r"
        would otherwise become a token of its own, and samples would print it).

    Raises:
        CorpusError: the file is missing, is a folder, is empty, or (with errors="strict") holds
            bytes that are not valid `encoding`; the message names the file and the byte offset.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise CorpusError(f"Text file not found: {path}")
    if path.is_dir():
        raise CorpusError(f"Expected a text file, got a folder: {path}")
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(f"Text file is empty: {path}")
    try:
        text = data.decode(encoding, errors=errors)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise CorpusError(
            f"{path}: byte offset {error.start} (line {line}) is not valid {encoding} "
            f"({error.reason}, byte 0x{data[error.start]:02x}). Pass --encoding=<codec> if the "
            "file uses another encoding, or --errors=replace to replace undecodable bytes."
        ) from None
    except LookupError:
        raise CorpusError(f"--encoding={encoding!r} is not a known text encoding.") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def split_text(text, validation_fraction=VALIDATION_FRACTION):
    """Splits `text` into (first 1 - fraction, last fraction) by characters, as nanoGPT does."""
    boundary = int(len(text) * (1.0 - validation_fraction))
    return text[:boundary], text[boundary:]


def load_corpus(corpus, data_dir=None, validation_file=None, encoding="utf-8", errors="strict"):
    """Loads a corpus by name or path and splits it.

    Args:
        corpus: one of `NAMED_CORPORA`, a text file, or a folder whose `*.txt` files (sorted by
            name) are concatenated.
        data_dir: folder searched first for a named corpus.
        validation_file: optional text file to validate on; the whole corpus then trains.
        encoding, errors: see `read_text_file`.

    Returns:
        A `Corpus`.

    Raises:
        CorpusError: an unknown name that is not a path either, a missing or empty file, or a
            tiny_shakespeare that is not on disk while offline.
    """
    if corpus == "tiny_shakespeare":
        paths = [find_or_download_tiny_shakespeare(data_dir)]
        text = read_text_file(paths[0], encoding, errors)
    elif corpus == "chinese_poetry":
        paths, text = _read_chinese_poetry(data_dir)
    elif corpus == "python_docs":
        paths, text = ["pydoc_data.topics"], _python_docs_text()
    elif os.path.isdir(corpus):
        paths = sorted(pathlib.Path(corpus).glob("*.txt"))
        if not paths:
            raise CorpusError(f"Folder {corpus} holds no .txt files.")
        text = "\n".join(read_text_file(p, encoding, errors) for p in paths)
    elif os.path.exists(corpus) or os.sep in corpus or corpus.endswith(".txt"):
        paths, text = [corpus], read_text_file(corpus, encoding, errors)
    else:
        raise CorpusError(
            f"--corpus={corpus!r} is neither a known corpus ({', '.join(NAMED_CORPORA)}) nor an "
            "existing file or folder."
        )
    if validation_file:
        train_text = text
        validation_text = read_text_file(validation_file, encoding, errors)
        paths = [*paths, validation_file]
    else:
        train_text, validation_text = split_text(text)
    return Corpus(corpus, train_text, validation_text, [str(p) for p in paths])


def find_or_download_tiny_shakespeare(data_dir=None, timeout_seconds=5.0):
    """Returns the path of Tiny Shakespeare, downloading it once if no copy is found.

    Looks in `data_dir`, `$KERAS_LLM_DATA`, then Keras's cache, for any of
    `TINY_SHAKESPEARE_FILENAMES`.

    Raises:
        CorpusError: no copy is found and the download host cannot be reached within
            `timeout_seconds`; the message says which file to put where.
    """
    import keras  # Imported here: reading local corpora should not pay for Keras's import.

    cache_dir = pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras"))
    search = [d for d in (data_dir, os.environ.get("KERAS_LLM_DATA")) if d]
    search.append(cache_dir / "datasets")
    for directory in search:
        for name in TINY_SHAKESPEARE_FILENAMES:
            candidate = pathlib.Path(directory) / name
            if candidate.is_file():
                return candidate
    if data_dir and not os.path.isdir(data_dir):
        raise CorpusError(f"--data_dir={data_dir} does not exist.")
    host = urllib.parse.urlparse(TINY_SHAKESPEARE_URL).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout_seconds).close()
    except OSError as error:
        raise CorpusError(
            f"Tiny Shakespeare was not found in {', '.join(str(d) for d in search)} and cannot be "
            f"downloaded ({host} unreachable: {error}). Download {TINY_SHAKESPEARE_URL} and save "
            "it as input.txt in the folder you pass as --data_dir (or in $KERAS_LLM_DATA)."
        ) from None
    return pathlib.Path(
        keras.utils.get_file("tiny_shakespeare.txt", origin=TINY_SHAKESPEARE_URL,
                             cache_dir=str(cache_dir))
    )


def _numeric_key(path):
    # poet.tang.1000.json sorts after poet.tang.999.json, so the corpus order is the collection's.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _poems(node):
    """Yields each poem's lines from the chinese-poetry JSON (a poem is a dict with paragraphs)."""
    if isinstance(node, dict):
        if isinstance(node.get("paragraphs"), list):
            yield node["paragraphs"]
        else:
            for value in node.values():
                yield from _poems(value)
    elif isinstance(node, list):
        for value in node:
            yield from _poems(value)


def _read_chinese_poetry(data_dir):
    if not data_dir:
        raise CorpusError("--corpus=chinese_poetry needs --data_dir, the folder of the JSON files.")
    paths = sorted(pathlib.Path(data_dir).rglob("*.json"), key=_numeric_key)
    if not paths:
        raise CorpusError(f"--data_dir={data_dir} holds no chinese-poetry .json files.")
    poems = []
    for path in paths:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CorpusError(f"{path}: not valid UTF-8 JSON ({error}).") from None
        poems.extend("".join(lines) for lines in _poems(document) if lines)
    if not poems:
        raise CorpusError(f"No poems (objects with 'paragraphs') found under {data_dir}.")
    return [str(p) for p in paths], "\n".join(poems) + "\n"


def _python_docs_text():
    from pydoc_data import topics  # Ships with CPython; always available offline.

    return "\n\n".join(topics.topics[name] for name in sorted(topics.topics))
