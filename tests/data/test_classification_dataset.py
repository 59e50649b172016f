"""Texts -> ids -> padded batches, and the reader options a config gives."""

import numpy as np
import pytest
import tensorflow as tf

from keras_llm import config as config_lib
from keras_llm.data.classification_dataset import classification_dataset, encode_texts
from keras_llm.data.labelled_datasets import file_reader_options
from keras_llm.data.labelled_files import column_from_flag
from keras_llm.data.wordpiece_tokenizer import WordPieceTokenizer

VOCABULARY = ["[PAD]", "[UNK]", "a", "gripping", "film", "dull"]


def test_texts_are_truncated():
    tokenizer = WordPieceTokenizer(VOCABULARY, lower_case=True)
    ids = encode_texts(tokenizer, ["A gripping film", "dull"], sequence_length=2)
    assert ids.dtype == tf.int32
    assert ids.to_list() == [[2, 3], [5]]


def test_empty_texts_keep_one_unknown():
    tokenizer = WordPieceTokenizer(VOCABULARY, lower_case=True)
    ids = encode_texts(tokenizer, ["A gripping film", "", "dull"], sequence_length=2)
    assert ids.to_list() == [[2, 3], [1], [5]]
    # The same in a tf.function, as an exported classifier runs it.
    encode = tf.function(lambda texts: encode_texts(tokenizer, texts, 2).to_tensor())
    np.testing.assert_array_equal(encode(tf.constant(["", "dull"])), [[1], [5]])


def test_batches_are_padded_to_their_longest_text_with_a_mask():
    ids = tf.ragged.constant([[2, 3, 4], [5], [2, 5]], dtype=tf.int32)
    batches = list(classification_dataset(ids, np.array([1, 0, 1]), global_batch_size=2))
    (features, labels, mask), (last_features, last_labels, last_mask) = batches
    np.testing.assert_array_equal(features["token_ids"], [[2, 3, 4], [5, 0, 0]])
    np.testing.assert_array_equal(features["padding_mask"], [[1, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(labels, [1, 0])
    np.testing.assert_array_equal(mask, [1.0, 1.0])
    np.testing.assert_array_equal(last_features["token_ids"], [[2, 5]])  # A partial last batch.
    np.testing.assert_array_equal(last_labels, [1])
    np.testing.assert_array_equal(last_mask, [1.0])


def test_training_batches_resume_at_the_step():
    ids = tf.ragged.constant([[i + 2] for i in range(6)], dtype=tf.int32)
    labels = np.arange(6)
    full = [b[1].numpy().tolist() for b in classification_dataset(ids, labels, 2, seed=3).take(5)]
    resumed = [b[1].numpy().tolist()
               for b in classification_dataset(ids, labels, 2, seed=3, start_step=2).take(3)]
    assert resumed == full[2:]


def test_reader_options_of_a_files_config():
    data = config_lib.ClassificationDataConfig(dataset="files", text_column="1",
                                               label_column="label", header="false",
                                               file_format="tsv", encoding="cp1252")
    assert file_reader_options(data) == {
        "encoding": "cp1252", "errors": data.errors, "file_format": "tsv", "text_column": 1,
        "label_column": "label", "header": False}
    assert column_from_flag("12") == 12 and column_from_flag("text") == "text"
    sst2 = file_reader_options(config_lib.ClassificationDataConfig(dataset="sst2"))
    assert sst2["header"] is False and sst2["text_column"] == "sentence"
    assert sst2["column_names"] == ("label", "sentence")


def test_encoding_a_list_in_chunks_gives_one_calls_rows():
    from keras_llm.data.classification_dataset import encode_text_list

    texts = ["a gripping film", "", "dull", "a film, dull and gripping", "film"] * 3
    tokenizer = WordPieceTokenizer.from_texts(texts, 30, lower_case=True)
    whole = encode_texts(tokenizer, texts, 3)
    for chunk_size in (1, 4, 100):
        assert encode_text_list(tokenizer, texts, 3, chunk_size=chunk_size).to_list() == (
            whole.to_list())
    assert encode_text_list(tokenizer, [], 3).to_list() == []


def test_pipelines_do_not_autotune():
    # Releasing an autotuned training iterator waited up to 51 s at the end of a run.
    ids = tf.ragged.constant([[1, 2], [3]], dtype=tf.int32)
    for seed in (None, 0):
        dataset = classification_dataset(ids, np.array([0, 1]), 2, seed=seed)
        assert dataset.options().autotune.enabled is False
