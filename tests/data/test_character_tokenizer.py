"""Tests for keras_llm/data/character_tokenizer.py: hand-computed ids, exact round trips, saving and loading."""

import json
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data.character_tokenizer import CharacterTokenizer
from keras_llm.data.tokenizer_base import PAD_TOKEN, UNK_TOKEN
from keras_llm.data.tokenizers import load_tokenizer
from tests.conftest import shared_data_path
from tests.data.tokenizer_test_data import ROUND_TRIP_TEXTS, TINY_CHARACTERS, strings, to_list


def test_character_tokenize_hand_computed_ids():
    tokenizer = CharacterTokenizer(vocabulary=TINY_CHARACTERS)

    ids = tokenizer.tokenize("ab a\n")
    assert isinstance(ids, tf.Tensor) and ids.dtype == tf.int32
    assert to_list(ids) == [4, 5, 3, 4, 2]

    batch = tokenizer.tokenize(tf.constant(["ab", "c", ""]))
    assert isinstance(batch, tf.RaggedTensor) and batch.dtype == tf.int32
    assert to_list(batch) == [[4, 5], [1], []]  # "c" is not in the vocabulary


def test_character_attributes():
    tokenizer = CharacterTokenizer(vocabulary=TINY_CHARACTERS)
    assert tokenizer.vocabulary == TINY_CHARACTERS
    assert tokenizer.vocabulary_size == 6
    assert (tokenizer.pad_id, tokenizer.unk_id) == (0, 1)
    assert CharacterTokenizer(**tokenizer.get_config()).vocabulary == TINY_CHARACTERS


def test_character_from_texts_sorts_code_points():
    tokenizer = CharacterTokenizer.from_texts(["hello", "", "hole"])
    assert tokenizer.vocabulary == [PAD_TOKEN, UNK_TOKEN, "e", "h", "l", "o"]
    assert to_list(tokenizer.tokenize("hello")) == [3, 2, 4, 4, 5]


def test_character_from_texts_accepts_str_and_dataset():
    expected = [PAD_TOKEN, UNK_TOKEN, " ", "a", "b", "中"]
    assert CharacterTokenizer.from_texts("ab 中").vocabulary == expected
    assert CharacterTokenizer.from_texts(tf.data.Dataset.from_tensor_slices(["ab", "中 "])).vocabulary == expected
    batched = tf.data.Dataset.from_tensor_slices(["ab", "中 ", "a"]).batch(2)
    assert CharacterTokenizer.from_texts(batched).vocabulary == expected


def test_character_unknown_character_is_unk():
    tokenizer = CharacterTokenizer.from_texts(["abc"])  # a=2, b=3, c=4
    assert to_list(tokenizer.tokenize("abz")) == [2, 3, tokenizer.unk_id]
    assert to_list(tokenizer.tokenize(["z", "😀"])) == [[1], [1]]
    assert tokenizer.detokenize([2, 1, 3]).numpy().decode() == "a[UNK]b"


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_character_round_trip_scalar(text):
    tokenizer = CharacterTokenizer.from_texts(ROUND_TRIP_TEXTS)
    ids = tokenizer.tokenize(text)
    assert ids.shape == (len(text),)  # one id per code point
    assert tokenizer.unk_id not in to_list(ids)
    assert tokenizer.detokenize(ids).numpy().decode("utf-8") == text


def test_character_round_trip_batch():
    tokenizer = CharacterTokenizer.from_texts(ROUND_TRIP_TEXTS)
    ids = tokenizer.tokenize(ROUND_TRIP_TEXTS)
    assert ids.shape[0] == len(ROUND_TRIP_TEXTS)
    assert ids.row_lengths().numpy().tolist() == [len(text) for text in ROUND_TRIP_TEXTS]
    assert strings(tokenizer.detokenize(ids)) == ROUND_TRIP_TEXTS
    # The same ids, PAD-padded into a dense tensor.
    assert strings(tokenizer.detokenize(ids.to_tensor(default_value=tokenizer.pad_id))) == ROUND_TRIP_TEXTS


def test_character_detokenize_drops_pad_and_accepts_int64():
    tokenizer = CharacterTokenizer(vocabulary=TINY_CHARACTERS)
    dense = tf.constant([[4, 5, 0, 0], [0, 4, 0, 0], [0, 0, 0, 0]], dtype=tf.int64)
    assert strings(tokenizer.detokenize(dense)) == ["ab", "a", ""]
    assert tokenizer.detokenize(tf.constant([], tf.int32)).numpy() == b""
    assert tokenizer.detokenize([4, 99, -3]).numpy() == b"a[UNK][UNK]"  # out-of-range ids


@pytest.mark.parametrize("texts", [[], [""], "", tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))])
def test_character_from_texts_rejects_empty_text(texts):
    with pytest.raises(ValueError, match="texts: expected training text with at least one character"):
        CharacterTokenizer.from_texts(texts)


@pytest.mark.parametrize(
    "vocabulary, message",
    [
        (["a", "b"], r"vocabulary: expected \['\[PAD\]', '\[UNK\]'\] at ids 0 and 1"),
        ([PAD_TOKEN, UNK_TOKEN, "ab"], r"vocabulary\[2\]: expected a single Unicode character"),
        ([PAD_TOKEN, UNK_TOKEN, "a", "a"], r"vocabulary: expected distinct tokens, received duplicates \['a'\]"),
    ],
)
def test_character_rejects_bad_vocabulary(vocabulary, message):
    with pytest.raises(ValueError, match=message):
        CharacterTokenizer(vocabulary=vocabulary)


def test_character_rejects_bad_shapes():
    tokenizer = CharacterTokenizer(vocabulary=TINY_CHARACTERS)
    with pytest.raises(ValueError, match=r"texts: expected a scalar string or a string vector"):
        tokenizer.tokenize([["a"]])
    with pytest.raises(ValueError, match=r"token_ids: expected integer ids"):
        tokenizer.detokenize([[[1]]])
    with pytest.raises(ValueError, match=r"token_ids: expected integer ids"):
        tokenizer.detokenize([1.0])


def test_character_save_load_round_trip(tmp_path):
    # Separators and characters that break a one-token-per-line file.
    text = "a\nb\tc d\r\u2028\u0085\"\\é🙂"
    tokenizer = CharacterTokenizer.from_texts([text])
    tokenizer.save(str(tmp_path))

    config = json.loads((tmp_path / "tokenizer.json").read_text())
    assert config["type"] == "character" and config["vocabulary_size"] == len(set(text)) + 2
    assert sorted(os.listdir(tmp_path)) == ["tokenizer.json", "vocabulary.json"]  # no temporary files left

    loaded = load_tokenizer(str(tmp_path))
    assert isinstance(loaded, CharacterTokenizer)
    assert loaded.vocabulary == tokenizer.vocabulary
    assert to_list(loaded.tokenize(text)) == to_list(tokenizer.tokenize(text))
    assert loaded.detokenize(loaded.tokenize(text)).numpy().decode() == text


def test_character_tiny_shakespeare_round_trip_is_fast():
    text = shared_data_path("tinyshakespeare", "input.txt").read_text(encoding="utf-8")
    tokenizer = CharacterTokenizer.from_texts(text)
    assert tokenizer.vocabulary_size == 65 + 2  # 65 distinct characters (data README) + PAD, UNK
    start = time.perf_counter()
    ids = tokenizer.tokenize(text)
    restored = tokenizer.detokenize(ids)
    seconds = time.perf_counter() - start
    assert ids.shape == (1_115_394,)
    expected_ids = np.searchsorted(sorted(set(text)), list(text)) + 2  # sorted code points after PAD, UNK
    np.testing.assert_array_equal(ids.numpy(), expected_ids)
    assert restored.numpy().decode("utf-8") == text
    # Measured ~0.1 s for both on 2 shared cores; a per-character Python loop would take seconds.
    assert seconds < 3.0
