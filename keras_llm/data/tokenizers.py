"""`load_tokenizer`: reads back a tokenizer written by `CharacterTokenizer.save` or `WordPieceTokenizer.save`.

`save(directory)` writes `tokenizer.json` (type and options) and the vocabulary file it names:
`vocabulary.json` for characters (character_tokenizer.py), `vocab.txt` for WordPiece
(wordpiece_tokenizer.py). The shared base class and reserved tokens are in tokenizer_base.py.
"""

import json
import os

from keras_llm.data.character_tokenizer import CHARACTER_VOCABULARY_FILENAME, CharacterTokenizer
from keras_llm.data.tokenizer_base import CONFIG_FILENAME, FORMAT_VERSION
from keras_llm.data.wordpiece_tokenizer import WORDPIECE_VOCABULARY_FILENAME, WordPieceTokenizer

__all__ = ["load_tokenizer"]


def load_tokenizer(directory):
    """Loads a tokenizer written by `CharacterTokenizer.save` or `WordPieceTokenizer.save`.

    Args:
        directory: str, the directory given to `save`.

    Returns:
        A `CharacterTokenizer` or a `WordPieceTokenizer`.

    Raises:
        ValueError: naming the file, if `tokenizer.json` or the vocabulary file is missing,
            unreadable, or not what `save` writes.
    """
    config_path = os.path.join(directory, CONFIG_FILENAME)
    config = _read_json(config_path, "a tokenizer config written by save()")
    if not isinstance(config, dict) or config.get("type") not in ("character", "wordpiece"):
        raise ValueError(
            f"{config_path}: expected a JSON object with \"type\" \"character\" or \"wordpiece\", "
            f"received {str(config)[:200]}."
        )
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: expected format_version {FORMAT_VERSION}, received {config.get('format_version')!r}."
        )
    if config["type"] == "character":
        vocabulary_path = os.path.join(directory, CHARACTER_VOCABULARY_FILENAME)
        vocabulary = _read_json(vocabulary_path, "a JSON list of tokens")
        if not isinstance(vocabulary, list) or not all(isinstance(token, str) for token in vocabulary):
            raise ValueError(f"{vocabulary_path}: expected a JSON list of strings, received {str(vocabulary)[:200]}.")
    else:
        vocabulary_path = os.path.join(directory, WORDPIECE_VOCABULARY_FILENAME)
        vocabulary_text = _read_text(vocabulary_path, "one word piece per line")
        vocabulary = vocabulary_text.split("\n")
        if vocabulary[-1] != "":
            raise ValueError(f"{vocabulary_path}: expected one word piece per line, each ending in a newline.")
        vocabulary = vocabulary[:-1]
    if len(vocabulary) != config.get("vocabulary_size"):
        raise ValueError(
            f"{vocabulary_path}: expected {config.get('vocabulary_size')!r} tokens "
            f"(vocabulary_size in {config_path}), received {len(vocabulary)}."
        )
    try:
        if config["type"] == "character":
            return CharacterTokenizer(vocabulary=vocabulary)
        return WordPieceTokenizer(
            vocabulary=vocabulary,
            lower_case=config.get("lower_case"),
            max_bytes_per_word=config.get("max_bytes_per_word"),
        )
    except ValueError as error:
        raise ValueError(f"{vocabulary_path} / {config_path}: {error}") from error


def _read_text(path, expected):
    try:
        with open(path, encoding="utf-8", newline="") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: expected {expected}, could not read it: {error}") from error


def _read_json(path, expected):
    text = _read_text(path, expected)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: expected {expected} as JSON, received invalid JSON: {error}") from error
