"""What the in-graph tokenizers share: reserved tokens, the base class and the table helpers.

`CharacterTokenizer` (character_tokenizer.py) and `WordPieceTokenizer` (wordpiece_tokenizer.py)
are `tf.Module`s whose `tokenize` / `detokenize` are TensorFlow ops over lookup tables built in
memory from the vocabulary, so the same object serves training, sampling and an exported
SavedModel (the tables are tracked resources of the module).

Every vocabulary starts with the reserved tokens `[PAD]` (id 0) and `[UNK]` (id 1).

Shapes:
    tokenize:   scalar string -> int32 (num_tokens,);  string (batch,) -> int32 ragged (batch, None)
    detokenize: int (num_tokens,) -> scalar string;    int (batch, None), ragged or dense
                (PAD-padded) -> string (batch,)

`save(directory)` writes `tokenizer.json` (type and options, via `_save`) and the vocabulary
file it names; `tokenizers.load_tokenizer(directory)` reads them back.
"""

import collections
import json
import os

import numpy as np
import tensorflow as tf

from keras_llm.training import atomic_files

__all__ = ["PAD_TOKEN", "UNK_TOKEN", "PAD_ID", "UNK_ID", "RESERVED_TOKENS"]

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
RESERVED_TOKENS = (PAD_TOKEN, UNK_TOKEN)
PAD_ID = 0
UNK_ID = 1

CONFIG_FILENAME = "tokenizer.json"
FORMAT_VERSION = 1


class _Tokenizer(tf.Module):
    """What both tokenizers share: the vocabulary (a tuple of str) and the reserved ids.

    Subclasses set `self._vocabulary` in their constructor.
    """

    @property
    def vocabulary(self):
        """The tokens, as a list of str indexed by id."""
        return list(self._vocabulary)

    @property
    def vocabulary_size(self):
        return len(self._vocabulary)

    @property
    def pad_id(self):
        return PAD_ID

    @property
    def unk_id(self):
        return UNK_ID


def _check_vocabulary(vocabulary):
    """Raises ValueError unless `vocabulary` is distinct strings starting with the reserved tokens."""
    if tuple(vocabulary[: len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
        raise ValueError(
            f"vocabulary: expected {list(RESERVED_TOKENS)} at ids 0 and 1, received {vocabulary[:2]!r}."
        )
    for index, token in enumerate(vocabulary):
        if not isinstance(token, str):
            raise ValueError(f"vocabulary[{index}]: expected a str, received {token!r}.")
    if len(set(vocabulary)) != len(vocabulary):
        duplicates = [token for token, count in collections.Counter(vocabulary).items() if count > 1]
        raise ValueError(f"vocabulary: expected distinct tokens, received duplicates {duplicates[:10]!r}.")


def _id_to_token_table(vocabulary):
    """id (int64) -> token table; unknown ids map to the text of `[UNK]`."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.range(len(vocabulary), dtype=tf.int64), tf.constant(vocabulary, dtype=tf.string)
        ),
        default_value=UNK_TOKEN,
    )


def _as_texts(texts):
    """Converts `texts` to a string Tensor of rank 0 or 1, raising ValueError otherwise."""
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    if texts.shape.rank not in (0, 1):
        raise ValueError(
            f"texts: expected a scalar string or a string vector (batch,), received shape {texts.shape}."
        )
    return texts


def _ids_to_tokens(id_to_token, token_ids):
    """Looks up the token strings of `token_ids` with PAD ids removed.

    Args:
        id_to_token: the table from `_id_to_token_table`.
        token_ids: int `(num_tokens,)`, or int `(batch, None)` as a `RaggedTensor` or `Tensor`.

    Returns:
        string `(num_tokens',)` `Tensor`, or string `(batch, None)` `RaggedTensor`.
    """
    if not isinstance(token_ids, tf.RaggedTensor):
        token_ids = tf.convert_to_tensor(token_ids, dtype_hint=tf.int64)
    if not token_ids.dtype.is_integer or token_ids.shape.rank not in (1, 2):
        raise ValueError(
            "token_ids: expected integer ids of shape (num_tokens,) or (batch, None), "
            f"received {token_ids.dtype.name} with shape {token_ids.shape}."
        )
    token_ids = tf.cast(token_ids, tf.int64)
    if token_ids.shape.rank == 1:
        token_ids = tf.boolean_mask(token_ids, tf.not_equal(token_ids, PAD_ID))
    else:
        if not isinstance(token_ids, tf.RaggedTensor):
            token_ids = tf.RaggedTensor.from_tensor(token_ids)
        token_ids = tf.ragged.boolean_mask(token_ids, tf.not_equal(token_ids, PAD_ID))
    return id_to_token.lookup(token_ids)


def _iterate_texts(texts):
    """Yields the Python str of a str, an iterable of str, or a `tf.data.Dataset` of strings."""
    if isinstance(texts, str):
        yield texts
    elif isinstance(texts, tf.data.Dataset):
        _check_string_dataset(texts)
        for element in texts.as_numpy_iterator():  # bytes, or an ndarray of bytes for batched elements
            for text in element.ravel() if isinstance(element, np.ndarray) else [element]:
                yield text.decode("utf-8")
    else:
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{index}]: expected a str, received {type(text).__name__}.")
            yield text


def _check_string_dataset(dataset):
    if not isinstance(dataset.element_spec, tf.TensorSpec) or dataset.element_spec.dtype != tf.string:
        raise ValueError(
            f"texts: expected a dataset whose elements are string tensors, received {dataset.element_spec}."
        )


def _save(directory, vocabulary_filename, vocabulary_text, config):
    """Writes the vocabulary, then `tokenizer.json` (so a complete config implies a complete vocabulary)."""
    os.makedirs(directory, exist_ok=True)
    atomic_files.write_text(os.path.join(directory, vocabulary_filename), vocabulary_text)
    config = {**config, "format_version": FORMAT_VERSION}
    atomic_files.write_text(os.path.join(directory, CONFIG_FILENAME), json.dumps(config, indent=2) + "\n")
