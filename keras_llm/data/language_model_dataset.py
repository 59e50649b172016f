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

How the order is drawn depends on the number of windows (one per training token):
- Up to `MAX_BUFFERED_WINDOWS`, `Dataset.shuffle` over all window starts. Its buffer keeps
  every start as a tensor of its own, about 200 bytes each, and a resume steps through every
  skipped start (`experiments.benchmark_window_order`, 2 cores: max RSS +202 MiB at 1 M
  windows, +3.7 GiB at 20 M, where a resume half-way into epoch 2 waits 76 s).
- Beyond, each epoch is a stateless Philox permutation of the starts keyed by `(seed, epoch)`
  (`tf.random.experimental.stateless_shuffle`), held as one int32 tensor: 4 bytes a window
  plus the shuffle's working copy (+95 MiB at 20 M windows), so a 100 M-token corpus needs
  about 0.5 GiB rather than about 19 GiB. A resume computes its epoch and offset instead of
  stepping through the skipped starts (0.8 s at 20 M).
Both are uniform orders without replacement; they are different orders, so the same seed
trains on other batches on either side of the threshold. The threshold keeps the main job's
order (Tiny Shakespeare: 1.0 M windows) and every published figure unchanged.
"""

import numpy as np
import tensorflow as tf

from keras_llm.data.features import PADDING_MASK_KEY, TOKEN_IDS_KEY


# Training splits with more windows than this draw their order by permutation (above): 2^22
# buffered starts is about 0.8 GiB of shuffle buffer.
MAX_BUFFERED_WINDOWS = 2**22

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
        batch_starts = tf.cast(batch_starts, tf.int64)
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


def training_dataset(token_ids, sequence_length, global_batch_size, seed, start_step=0,
                     max_buffered_windows=MAX_BUFFERED_WINDOWS):
    """An endless, seeded stream of training batches.

    Args:
        token_ids: int array (num_tokens,), the tokenized training split.
        sequence_length: tokens per example.
        global_batch_size: examples per optimizer step, over all replicas.
        seed: int; fixes the order of windows in every epoch.
        start_step: optimizer steps already taken; their batches are skipped, so a resumed run
            continues exactly where the interrupted one stopped.
        max_buffered_windows: the most windows shuffled by `Dataset.shuffle`; more are ordered
            by a per-epoch permutation (see the module docstring).

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
    skipped = start_step * global_batch_size
    if num_windows <= max_buffered_windows:
        starts = (
            tf.data.Dataset.range(num_windows)
            .shuffle(num_windows, seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .skip(skipped)
        )
    else:
        starts = _permuted_starts(num_windows, seed, skipped)
    return _window_dataset(token_ids, starts, sequence_length, global_batch_size, True)


def _permuted_starts(num_windows, seed, skipped):
    """Window starts, epoch after epoch, each epoch a permutation keyed by `(seed, epoch)`,
    from the `skipped`-th start of the stream on (its epoch and offset are computed)."""
    dtype = tf.int32 if num_windows < 2**31 else tf.int64
    first_epoch, first_offset = divmod(skipped, num_windows)

    def epoch_starts(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_windows, dtype=dtype), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        offset = tf.where(epoch == first_epoch, tf.constant(first_offset, tf.int64), 0)
        return tf.data.Dataset.from_tensor_slices(order[offset:])

    return tf.data.Dataset.counter(first_epoch).flat_map(epoch_starts)


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
