"""Classification datasets: labelled splits -> token ids -> padded `tf.data` batches.

The classifier's counterpart of `language_model_dataset.py`. Worked example (a WordPiece
tokenizer, `sequence_length=3`, `global_batch_size=2`, evaluation):

    texts ["a gripping film", "dull"], labels [1, 0]
      encode_texts            -> ragged ids (illustrative) [[7, 12, 9], [15]]
      classification_dataset  -> ({"token_ids": [[7, 12, 9], [15, 0, 0]],
                                   "padding_mask": [[T, T, T], [T, F, F]]}, [1, 0], [1., 1.])
"""

import tensorflow as tf

from keras_llm.data.features import PADDING_MASK_KEY, TOKEN_IDS_KEY, model_inputs
from keras_llm.data.language_model_dataset import PREFETCH_BATCHES, distribution_options
from keras_llm.data.labelled_datasets import file_reader_options, read_dataset, split_validation
from keras_llm.progress import Progress


def read_splits(data_config):
    """Reads the dataset's splits as `LabelledTexts`, with the reader options of the config.

    Args:
        data_config: `keras_llm.config.ClassificationDataConfig`.

    Returns:
        dict split name -> `LabelledTexts`, always with "train" and "validation" (carved from
        train when the data has none), and "test" when the data has one.

    Raises:
        DataError: a bad file or row, naming the file and line.
    """
    options = {"encoding": data_config.encoding, "errors": data_config.errors,
               "skip_bad_rows": data_config.skip_bad_rows}
    if data_config.dataset != "files":
        return _with_validation(read_dataset(data_config.dataset, data_config.data_dir, **options))
    options.update(file_reader_options(data_config))
    return _with_validation(read_dataset(
        "files", data_config.data_dir, train_file=data_config.train_file,
        validation_file=data_config.validation_file, test_file=data_config.test_file, **options))


def _with_validation(splits):
    """Carves a seeded 10 % validation split from train when the data has none.

    Validation chooses the best epoch; doing that on the test split would report an optimistic
    test score.
    """
    if "validation" not in splits:
        splits = dict(splits)
        splits["train"], splits["validation"] = split_validation(splits["train"],
                                                                 validation_split=0.1)
    return splits


def encode_texts(tokenizer, texts, sequence_length):
    """Tokenizes and truncates texts, in the graph (training and exported classifiers share it).

    Worked example, `sequence_length=2`: "A gripping film", "", "dull" -> [[a, gripping], [UNK],
    [dull]]: each text keeps its first `sequence_length` ids, and a text that tokenizes to
    nothing gets one [UNK], so every example has a real token.

    Args:
        tokenizer: a keras_llm tokenizer (`tokenize`, `unk_id`).
        texts: list of str, or string tensor `(num_texts,)`.
        sequence_length: int, the most ids kept per text.

    Returns:
        int32 `tf.RaggedTensor` (num_texts, None), 1 to `sequence_length` ids per row.
    """
    ids = tf.cast(tokenizer.tokenize(tf.convert_to_tensor(texts, tf.string)), tf.int32)
    ids = ids[:, :sequence_length]  # (num_texts, <= sequence_length)
    lengths = tf.maximum(ids.row_lengths(), 1)
    # Pad with [UNK] and cut every row at its length: an empty row keeps exactly one [UNK].
    width = tf.cast(tf.reduce_max(tf.concat([lengths, [1]], 0)), tf.int64)
    dense = ids.to_tensor(default_value=tokenizer.unk_id, shape=tf.stack([ids.nrows(), width]))
    return tf.RaggedTensor.from_tensor(dense, lengths=lengths)


def encode_text_list(tokenizer, texts, sequence_length, description="tokenizing",
                     chunk_size=10_000):
    """`encode_texts` of a Python list, `chunk_size` texts at a time with a `Progress`.

    Returns:
        The same `tf.RaggedTensor` as `encode_texts(tokenizer, texts, sequence_length)`.
    """
    chunks = []
    with Progress(description, len(texts), unit="texts") as progress:
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start:start + chunk_size]
            chunks.append(encode_texts(tokenizer, chunk, sequence_length))
            progress.update(len(chunk))
    if not chunks:
        return encode_texts(tokenizer, texts, sequence_length)
    return chunks[0] if len(chunks) == 1 else tf.concat(chunks, axis=0)


def classification_dataset(ids, labels, global_batch_size, seed=None, start_step=0):
    """Batches (features, labels, mask), each batch padded to its longest text.

    Args:
        ids: int32 `tf.RaggedTensor` (num_examples, None) from `encode_texts`.
        labels: int array (num_examples,).
        global_batch_size: examples per batch over all replicas.
        seed: None for evaluation (one ordered pass, the last batch may be partial); an int
            for training (endless, shuffled per epoch with that seed, skipping the first
            `start_step` batches so a resumed run continues exactly).

    Returns:
        `tf.data.Dataset` of ({"token_ids": int32 (batch, seq_len), "padding_mask": bool
        (batch, seq_len)}, labels int32 (batch,), mask float32 (batch,)); padding is on the
        right with id 0.
    """
    dataset = tf.data.Dataset.from_tensor_slices((ids, tf.constant(labels, tf.int32)))
    if seed is not None:
        count = int(ids.nrows())
        dataset = (dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()
                   .skip(start_step * global_batch_size))

    def to_batch(token_ids, batch_labels):
        token_ids = token_ids.to_tensor(default_value=0)  # (batch, longest text in the batch)
        features = {TOKEN_IDS_KEY: token_ids, PADDING_MASK_KEY: token_ids != 0}
        return features, batch_labels, tf.ones_like(batch_labels, tf.float32)

    return (dataset.ragged_batch(global_batch_size)
            .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(PREFETCH_BATCHES).with_options(distribution_options()))


def example_features(length=4):
    """A one-example batch of the features `classification_dataset` yields, to build a model.

    Returns:
        {"token_ids": int32 ones (1, length), "padding_mask": bool True (1, length)}.
    """
    return model_inputs(tf.ones((1, length), tf.int32))
