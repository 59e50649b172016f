"""`CharacterTokenizer`: one id per Unicode code point, in-graph, saved as `vocabulary.json`."""

import json

import tensorflow as tf

from keras_llm.data.tokenizer_base import (
    RESERVED_TOKENS,
    UNK_ID,
    _as_texts,
    _check_vocabulary,
    _id_to_token_table,
    _ids_to_tokens,
    _iterate_texts,
    _save,
    _Tokenizer,
)

__all__ = ["CharacterTokenizer", "CHARACTER_VOCABULARY_FILENAME"]

CHARACTER_VOCABULARY_FILENAME = "vocabulary.json"


class CharacterTokenizer(_Tokenizer):
    """Maps every Unicode code point to one id; the round trip is exact for known characters.

    The text is not normalized: "é" and "e" + U+0301 are different sequences of ids.

    Example with `vocabulary=["[PAD]", "[UNK]", "\\n", " ", "a", "b"]`:
        tokenize("ab a\\n")          -> [4, 5, 3, 4, 2]
        tokenize(["ab", "c", ""])    -> [[4, 5], [1], []]           (ragged; "c" is unknown)
        detokenize([[4, 5, 0, 0]])   -> ["ab"]                      (PAD ids are dropped)

    Args:
        vocabulary: list of str. `[PAD]`, `[UNK]`, then distinct single characters (any code point
            except surrogates, including "\\n", "\\t" and " ").

    Raises:
        ValueError: if the vocabulary does not have that form.
    """

    def __init__(self, vocabulary):
        super().__init__(name="character_tokenizer")
        vocabulary = list(vocabulary)
        _check_vocabulary(vocabulary)
        for index, token in enumerate(vocabulary[len(RESERVED_TOKENS):], start=len(RESERVED_TOKENS)):
            if len(token) != 1 or 0xD800 <= ord(token) <= 0xDFFF:
                raise ValueError(
                    f"vocabulary[{index}]: expected a single Unicode character (not a surrogate), "
                    f"received {token!r}."
                )
        self._vocabulary = tuple(vocabulary)
        code_points = [ord(token) for token in vocabulary[len(RESERVED_TOKENS):]]
        self._code_point_to_id = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(code_points, dtype=tf.int64),
                tf.range(len(RESERVED_TOKENS), len(vocabulary), dtype=tf.int64),
            ),
            default_value=UNK_ID,
        )
        self._id_to_token = _id_to_token_table(vocabulary)

    @classmethod
    def from_texts(cls, texts):
        """Builds the vocabulary `[PAD], [UNK]` + the distinct characters of `texts`, sorted by code point.

        Args:
            texts: a str, an iterable of str, or a `tf.data.Dataset` of UTF-8 strings (any shape).

        Returns:
            A `CharacterTokenizer`.

        Raises:
            ValueError: if `texts` contains no character at all.
        """
        characters = set()
        for text in _iterate_texts(texts):
            characters.update(text)
        if not characters:
            raise ValueError("texts: expected training text with at least one character, received none.")
        return cls(vocabulary=[*RESERVED_TOKENS, *sorted(characters)])

    def get_config(self):
        return {"vocabulary": self.vocabulary}

    def tokenize(self, texts):
        """Maps each character to its id; unknown characters (and invalid UTF-8 bytes) to `unk_id`.

        Args:
            texts: scalar string, or string `(batch,)`; UTF-8.

        Returns:
            int32 `Tensor` `(num_tokens,)` for a scalar, int32 `RaggedTensor` `(batch, None)` for a batch.
        """
        texts = _as_texts(texts)
        # Invalid UTF-8 decodes to U+FFFD (errors="replace"), which is [UNK] unless it was trained on.
        code_points = tf.cast(tf.strings.unicode_decode(texts, "UTF-8"), tf.int64)
        return tf.cast(self._code_point_to_id.lookup(code_points), tf.int32)

    def detokenize(self, token_ids):
        """Concatenates the characters of `token_ids`; PAD ids are dropped, `[UNK]` and ids out of range
        become the text "[UNK]".

        Args:
            token_ids: int `(num_tokens,)`, or int `(batch, None)` (`RaggedTensor` or PAD-padded `Tensor`).

        Returns:
            string scalar for `(num_tokens,)`, string `(batch,)` for `(batch, None)`.
        """
        return tf.strings.reduce_join(_ids_to_tokens(self._id_to_token, token_ids), axis=-1)

    def save(self, directory):
        """Writes `vocabulary.json` (a JSON list, so "\\n", "\\t" and " " survive) and `tokenizer.json`.

        Args:
            directory: str; created if missing. Existing tokenizer files are replaced atomically.
        """
        _save(
            directory,
            vocabulary_filename=CHARACTER_VOCABULARY_FILENAME,
            vocabulary_text=json.dumps(list(self._vocabulary), ensure_ascii=False),
            config={"type": "character", "vocabulary_size": self.vocabulary_size},
        )
