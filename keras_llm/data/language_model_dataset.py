"""`tf.data` pipelines that turn a token-id stream into next-token-prediction batches.

Worked example, `sequence_length=3`, token ids `[5, 6, 7, 8, 9]`:

    windows of sequence_length + 1 = 4 tokens, one starting at every offset (stride 1):
        [5, 6, 7, 8], [6, 7, 8, 9]
    each window -> (features, targets, mask):
        (token_ids [5, 6, 7], targets [6, 7, 8], mask [1, 1, 1]), ([6, 7, 8], [7, 8, 9], [1, 1, 1])

Training draws windows in a seeded shuffled order, epoch after epoch, like nanoGPT's random
offsets but without replacement within an epoch. The order depends only on the seed, so a run
resumed at step k starts at window position `k * global_batch_size` and sees the same batches as
an uninterrupted run. Validation uses non-overlapping windows (stride `sequence_length`) in order.

The shuffled order is computed, not buffered: position p of the endless training order is
element `p mod num_windows` of epoch `p // num_windows`'s permutation of the windows, which
`tf.random.experimental.index_shuffle`'s op (a keyed bijection: a block cipher with cycle
walking) evaluates for each position alone. So memory does not grow with the corpus (a
`Dataset.shuffle` over every window held about 200 bytes per window: 1 GB for 5 M tokens), no
epoch begins with a buffer refill, and a resumed run starts at once however far in it is.
"""

import numpy as np
import tensorflow as tf

from keras_llm.data.features import PADDING_MASK_KEY, TOKEN_IDS_KEY


# Batches prefetched: one ready while a step runs on the other (a fixed size: see
# `distribution_options` on why the pipelines do not autotune).
PREFETCH_BATCHES = 2


# Feistel rounds of the window permutation. `index_shuffle`'s 4 leave the order far from random:
# starts up to 32 positions apart correlate up to 0.41 over 1 M windows and 0.55 over 10^9; 8
# leave 0.03 over 1 M; with 12 and 16 every such correlation is within 0.003 of 0, as for a
# uniformly random permutation, and so are those with the next epoch's and the next seed's
# orders (tests/data/test_language_model_dataset.py checks these statistics). 4 -> 16 rounds
# moved the cost from about 0.12 to 0.13 us per window at 1 M windows.
SHUFFLE_ROUNDS = 16


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


def _window_dataset(token_ids, positions, sequence_length, batch_size, drop_remainder,
                    window_starts=tf.identity):
    """Batches of `(features, targets, mask)` for the windows at `positions` (int64 scalars),
    whose window starts are `window_starts(batch of positions)`."""
    tokens = tf.constant(token_ids, dtype=tf.int32)
    offsets = tf.range(sequence_length + 1, dtype=tf.int64)

    def to_example(batch_positions):
        starts = window_starts(batch_positions)  # (batch,)
        windows = tf.gather(tokens, starts[:, None] + offsets)  # (batch, sequence_length + 1)
        token_ids, targets = windows[:, :-1], windows[:, 1:]  # (batch, sequence_length) each
        # Every window is real text: the padding mask is all True.
        features = {TOKEN_IDS_KEY: token_ids, PADDING_MASK_KEY: tf.ones_like(token_ids, tf.bool)}
        return features, targets, tf.ones_like(targets, dtype=tf.float32)

    return (
        positions.batch(batch_size, drop_remainder=drop_remainder)
        .map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(PREFETCH_BATCHES)
        .with_options(distribution_options())
    )


def _permute(index, keys, max_index):
    """`RandomIndexShuffle`: `index` (n,) int64 in `[0, max_index]` through the permutation of
    `[0, max_index]` that each row of `keys` (n, 3) or (3,) selects."""
    # The raw op: `tf.random.experimental.index_shuffle` pads a batch of (n, 2) seeds along the
    # wrong axis (TF 2.21: "... a matrix of size [n, 3] but got [n+1, 2]").
    return tf.raw_ops.RandomIndexShuffle(
        index=index, seed=keys, max_index=tf.fill(tf.shape(index), max_index),
        rounds=SHUFFLE_ROUNDS)


def _epoch_keys(seed, epochs):
    """The (n, 3) int64 permutation keys of `epochs` (n,) under `seed`: pseudorandom words.

    The op keeps only the low W bits of each key word, W = half its block size (8 bits up to
    65,537 windows, 10 for 1 M, 32 for 2^62): keyed by (seed, epoch, 0) directly, seeds 2^W
    apart, and epochs 2^W apart, would share an order. So the words are the op itself, over
    the 64-bit domain (W = 32), applied to `3 * epoch + j` under the full 64-bit seed: every
    (seed, epoch) draws all 3W key bits afresh, and two of them share an order only by a
    2^-3W chance.
    """
    seed_words = tf.constant([seed % 2**32, (seed >> 32) % 2**32, 0], tf.int64)
    counters = tf.reshape(3 * epochs[:, None] + tf.range(3, dtype=tf.int64), [-1])  # (3n,)
    words = _permute(counters, seed_words, tf.constant(tf.int64.max, tf.int64))
    return tf.reshape(words, [-1, 3])


def shuffled_window_starts(positions, num_windows, seed):
    """The window start at each position of the endless, epoch-by-epoch shuffled training order.

    Position p falls in epoch `p // num_windows`; there it is element `p mod num_windows` of that
    epoch's permutation of `[0, num_windows)`, drawn by the `RandomIndexShuffle` op (a
    `SHUFFLE_ROUNDS`-round Simon-cipher Feistel network with cycle walking) under a key derived
    from `(seed, epoch)`. Each epoch therefore visits every window exactly once, in an order
    fixed by the seed and the epoch.

    Cost: the op's smallest block is 16 bits, so below 65,536 windows each lookup cycle-walks
    about 65,536 / num_windows times (about 1 us per window at 3,000 windows, 1 ms at 2).

    Args:
        positions: int64 tensor (n,), positions in the order (0 is the first window of the run).
        num_windows: int >= 1, windows per epoch.
        seed: int, the `--seed`; its low 64 bits select the order.

    Returns:
        int64 tensor (n,) of window starts in `[0, num_windows)`.
    """
    epochs, slots = positions // num_windows, positions % num_windows
    keys = _epoch_keys(seed, epochs)
    # The op is not a permutation when max_index is 2^k for an even k >= 16 (TF 2.21: for
    # max_index 65,536 it never returns 65,536 and returns one value twice). Then the windows are
    # permuted as part of [0, num_windows], one value more, and the one start that lands outside
    # is stepped through the same permutation again, which lands inside: cycle walking (Black and
    # Rogaway, "Ciphers with Arbitrary Finite Domains", 2002).
    last = num_windows - 1
    cycle_walk = last > 0 and last & (last - 1) == 0
    max_index = tf.constant(num_windows if cycle_walk else last, tf.int64)
    starts = _permute(slots, keys, max_index)
    if cycle_walk:
        outside = tf.fill(tf.shape(slots), max_index)  # num_windows, the one start too many
        starts = tf.where(starts == max_index, _permute(outside, keys, max_index), starts)
    return starts


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
    positions = tf.data.Dataset.counter(start_step * global_batch_size)
    return _window_dataset(
        token_ids, positions, sequence_length, global_batch_size, True,
        window_starts=lambda batch: shuffled_window_starts(batch, num_windows, seed))


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
