"""`tf.data` pipelines that turn a token-id stream into next-token-prediction batches.

Worked example, `sequence_length=3`, token ids `[5, 6, 7, 8, 9]`:

    windows of sequence_length + 1 = 4 tokens, one starting at every offset (stride 1):
        [5, 6, 7, 8], [6, 7, 8, 9]
    each window -> (features, targets, mask):
        (token_ids [5, 6, 7], targets [6, 7, 8], mask [1, 1, 1]), ([6, 7, 8], [7, 8, 9], [1, 1, 1])

Training draws windows in a seeded shuffled order, epoch after epoch, like nanoGPT's random
offsets but without replacement within an epoch. The order depends only on the seed, so a run
resumed at step k skips exactly `k * global_batch_size` windows and sees the same batches as an
uninterrupted run. Validation uses non-overlapping windows (stride `sequence_length`) in order.
"""

import numpy as np
import tensorflow as tf

from keras_llm.data.features import PADDING_MASK_KEY, TOKEN_IDS_KEY


# Batches prefetched: one ready while a step runs on the other (a fixed size: see
# `distribution_options` on why the pipelines do not autotune).
PREFETCH_BATCHES = 2


def distribution_options():
    """The `tf.data.Options` of every training and evaluation pipeline: deterministic order,
    sharding by data, no autotuning (why: below)."""
    options = tf.data.Options()
    options.deterministic = True
    # Explicit sharding: each worker reads the whole (in-memory) stream and keeps its share of
    # every global batch, so no example is seen twice per epoch and tf.data prints no
    # auto-shard warning about a source without files.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # No autotuning: with it on, releasing the training iterator at the end of a run waited 18,
    # 19 and 51 s at 0% CPU before the `done:` line (2 cores, TF 2.21; a thread asleep on a
    # timer, we believe tf.data's autotuning one, whose rounds grow up to a minute apart); with
    # it off, 0.05-0.08 s and the same losses. Parallel map calls then run as many at once as
    # there are cores (TF's default).
    options.autotune.enabled = False
    return options


def _window_dataset(token_ids, starts, sequence_length, batch_size, drop_remainder):
    tokens = tf.constant(token_ids, dtype=tf.int32)
    offsets = tf.range(sequence_length + 1, dtype=tf.int64)

    def to_example(batch_starts):
        windows = tf.gather(tokens, batch_starts[:, None] + offsets)  # (batch, sequence_length + 1)
        token_ids, targets = windows[:, :-1], windows[:, 1:]  # (batch, sequence_length) each
        # Every window is real text: the padding mask is all True.
        features = {TOKEN_IDS_KEY: token_ids, PADDING_MASK_KEY: tf.ones_like(token_ids, tf.bool)}
        return features, targets, tf.ones_like(targets, dtype=tf.float32)

    return (
        starts.batch(batch_size, drop_remainder=drop_remainder)
        .map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(PREFETCH_BATCHES)
        .with_options(distribution_options())
    )


def _check_length(token_ids, sequence_length, split):
    if len(token_ids) < sequence_length + 1:
        raise ValueError(
            f"The {split} split has {len(token_ids)} tokens, fewer than one window of "
            f"--sequence_length + 1 = {sequence_length + 1}; use more text or a shorter "
            "--sequence_length."
        )


def training_dataset(token_ids, sequence_length, global_batch_size, seed, start_step=0):
    """An endless, seeded stream of training batches.

    Args:
        token_ids: int array (num_tokens,), the tokenized training split.
        sequence_length: tokens per example.
        global_batch_size: examples per optimizer step, over all replicas.
        seed: int; fixes the order of windows in every epoch.
        start_step: optimizer steps already taken; their batches are skipped, so a resumed run
            continues exactly where the interrupted one stopped.

    Returns:
        A `tf.data.Dataset` of `(features, targets, mask)`: features `{"token_ids": int32,
        "padding_mask": bool (all True)}`, targets int32 and mask float32, each of shape
        (global_batch_size, sequence_length).

    Raises:
        ValueError: fewer than `sequence_length + 1` tokens.
    """
    token_ids = np.asarray(token_ids)
    _check_length(token_ids, sequence_length, "training")
    num_windows = len(token_ids) - sequence_length
    starts = (
        tf.data.Dataset.range(num_windows)
        .shuffle(num_windows, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .skip(start_step * global_batch_size)
    )
    return _window_dataset(token_ids, starts, sequence_length, global_batch_size, True)


def evaluation_dataset(token_ids, sequence_length, global_batch_size, max_batches=0):
    """Non-overlapping windows over the whole split, in order (deterministic validation).

    Returns:
        A `tf.data.Dataset` of `(features, targets, mask)` as in `training_dataset`; the last batch
        may be smaller than `global_batch_size`. With `max_batches` > 0, at most that many.

    Raises:
        ValueError: fewer than `sequence_length + 1` tokens.
    """
    token_ids = np.asarray(token_ids)
    _check_length(token_ids, sequence_length, "validation")
    starts = tf.data.Dataset.range(0, len(token_ids) - sequence_length, sequence_length)
    dataset = _window_dataset(token_ids, starts, sequence_length, global_batch_size, False)
    return dataset.take(max_batches) if max_batches else dataset
