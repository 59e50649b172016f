import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data import language_model_dataset as lmd


def test_evaluation_windows_worked_example():
    # sequence_length 3 over [5..11]: non-overlapping windows of 4 tokens start at 0 and 3.
    batches = list(lmd.evaluation_dataset(np.arange(5, 12), sequence_length=3, global_batch_size=8))
    assert len(batches) == 1
    features, targets, mask = batches[0]
    np.testing.assert_array_equal(features["token_ids"], [[5, 6, 7], [8, 9, 10]])
    np.testing.assert_array_equal(features["padding_mask"], np.ones((2, 3), bool))
    np.testing.assert_array_equal(targets, [[6, 7, 8], [9, 10, 11]])
    np.testing.assert_array_equal(mask, np.ones((2, 3)))


def test_training_windows_cover_every_offset_once_per_epoch():
    ids = np.arange(100, 110)  # 10 tokens, sequence_length 3 -> 7 windows (starts 0..6).
    # Batches of 3 over 7 windows: epochs end inside batches 3 and 5 (21 positions = 3 epochs).
    dataset = lmd.training_dataset(ids, sequence_length=3, global_batch_size=3, seed=0)
    inputs = np.concatenate([features["token_ids"].numpy() for features, _, _ in dataset.take(7)])
    targets = np.concatenate([targets.numpy() for _, targets, _ in dataset.take(7)])
    np.testing.assert_array_equal(targets, inputs + 1)
    epochs = (inputs[:, 0] - 100).reshape(3, 7)
    for epoch in epochs:
        assert sorted(epoch) == list(range(7))
    assert len({tuple(epoch) for epoch in epochs}) > 1  # Reshuffled: 3 equal orders of 7: 1/5040^2.


@pytest.mark.parametrize("num_windows", [1, 2, 1000, 65_537, 262_145])
def test_every_epoch_is_a_permutation_of_the_windows(num_windows):
    # 65,537 and 262,145 windows: the op alone repeats one start and skips another when
    # num_windows - 1 is 2^16 or 2^18 (the cycle-walking case).
    positions = tf.range(3 * num_windows, dtype=tf.int64)
    starts = lmd.shuffled_window_starts(positions, num_windows, seed=7).numpy()
    for epoch in starts.reshape(3, num_windows):
        np.testing.assert_array_equal(np.sort(epoch), np.arange(num_windows))


def test_shuffled_order_is_statistically_random():
    # Over 1,003,854 windows (Tiny Shakespeare's training windows at context 64) and over 10^9
    # windows, the shuffled starts look like a uniformly random permutation's: no correlation
    # between nearby positions, between an epoch and the next, or between neighbouring seeds
    # (with the op's default 4 rounds, nearby positions correlate up to 0.41 and 0.55, and
    # neighbouring seeds 0.20 over 10^9 windows). 10^6 samples: a random permutation's
    # correlations are about N(0, 0.001).
    count = 1_000_000
    for num_windows in (1_003_854, 10**9):
        def order(epoch, seed):
            positions = tf.range(count, dtype=tf.int64) + epoch * num_windows
            return lmd.shuffled_window_starts(positions, num_windows, seed).numpy() / num_windows
        first = order(epoch=0, seed=1337)
        for lag in range(1, 13):
            assert abs(np.corrcoef(first[:-lag], first[lag:])[0, 1]) < 0.01, lag
        assert abs(np.corrcoef(first, order(epoch=1, seed=1337))[0, 1]) < 0.01
        assert abs(np.corrcoef(first, order(epoch=0, seed=1338))[0, 1]) < 0.01
        # Uniform over the windows: mean 1/2 and deciles of 1/10 each.
        assert abs(first.mean() - 0.5) < 0.003
        np.testing.assert_allclose(np.histogram(first, bins=10, range=(0, 1))[0] / count, 0.1,
                                   atol=0.002)


@pytest.mark.parametrize("num_windows, key_bits", [(1000, 8), (1_003_854, 10), (10**7, 12)])
def test_every_seed_and_epoch_bit_selects_the_order(num_windows, key_bits):
    # The op keeps only the low `key_bits` of each key word: keyed by (seed, epoch) directly,
    # seeds and epochs 2^key_bits apart drew identical orders.
    def order(seed, epoch):
        positions = tf.range(200, dtype=tf.int64) + epoch * num_windows
        return lmd.shuffled_window_starts(positions, num_windows, seed).numpy()
    first = order(1337, 0)
    for seed, epoch in [(1337 + 2**key_bits, 0), (1337 + 2**32, 0), (1337, 2**key_bits)]:
        assert np.mean(order(seed, epoch) == first) < 0.05, (seed, epoch)


def test_corpus_of_a_billion_windows_needs_no_buffer():
    # A Dataset.shuffle over 10^9 windows would hold about 200 GB; the computed order's first
    # batch needs only the positions it draws.
    starts = lmd.shuffled_window_starts(tf.range(12, dtype=tf.int64) + 5 * 10**9, 10**9, seed=0)
    assert starts.dtype == tf.int64
    assert np.all((starts.numpy() >= 0) & (starts.numpy() < 10**9))
    assert len(set(starts.numpy())) == 12


def test_too_short_corpus_names_the_split_and_flag():
    with pytest.raises(ValueError, match=r"training split has 5 tokens.*--sequence_length"):
        lmd.training_dataset(np.arange(5), sequence_length=8, global_batch_size=2, seed=0)


def test_pipelines_do_not_autotune():
    # Releasing an autotuned training iterator waited up to 51 s at the end of a run.
    ids = np.arange(100)
    for dataset in (lmd.training_dataset(ids, 8, 4, seed=0), lmd.evaluation_dataset(ids, 8, 4)):
        assert dataset.options().autotune.enabled is False
