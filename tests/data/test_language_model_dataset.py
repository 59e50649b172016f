import numpy as np
import pytest

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
    dataset = lmd.training_dataset(ids, sequence_length=3, global_batch_size=7, seed=0)
    (features, targets, _), = list(dataset.take(1))
    inputs = features["token_ids"]
    starts = sorted(inputs.numpy()[:, 0] - 100)
    assert starts == list(range(7))
    np.testing.assert_array_equal(targets.numpy(), inputs.numpy() + 1)


def test_training_order_is_seeded_and_resume_skips_exactly():
    ids = np.arange(1000)
    def batches(seed, start_step, n):
        dataset = lmd.training_dataset(ids, 8, 4, seed=seed, start_step=start_step)
        return [b[0]["token_ids"].numpy() for b in dataset.take(n)]
    full = batches(seed=3, start_step=0, n=300)  # Crosses epoch boundaries (992 windows / 4).
    np.testing.assert_array_equal(np.stack(batches(3, 0, 300)), np.stack(full))
    np.testing.assert_array_equal(np.stack(batches(3, 250, 50)), np.stack(full[250:]))
    assert not np.array_equal(batches(4, 0, 1)[0], full[0])


def test_too_short_corpus_names_the_split_and_flag():
    with pytest.raises(ValueError, match=r"training split has 5 tokens.*--sequence_length"):
        lmd.training_dataset(np.arange(5), sequence_length=8, global_batch_size=2, seed=0)


def test_pipelines_do_not_autotune():
    # Releasing an autotuned training iterator waited up to 51 s at the end of a run.
    ids = np.arange(100)
    for dataset in (lmd.training_dataset(ids, 8, 4, seed=0), lmd.evaluation_dataset(ids, 8, 4)):
        assert dataset.options().autotune.enabled is False


def _window_starts(dataset, num_batches):
    """The start of every window in the first `num_batches` batches (token id i sits at i)."""
    return np.concatenate([features["token_ids"].numpy()[:, 0]
                           for features, _, _ in dataset.take(num_batches)])


def test_a_split_above_the_threshold_is_permuted_anew_every_epoch():
    # 1,000 tokens, sequence_length 8: 992 windows, above a threshold of 10, so each epoch is a
    # computed permutation. 496 batches of 4 are exactly two epochs.
    dataset = lmd.training_dataset(np.arange(1000), 8, 4, seed=3, max_buffered_windows=10)
    starts = _window_starts(dataset, 496)
    first, second = starts[:992], starts[992:]
    np.testing.assert_array_equal(np.sort(first), np.arange(992))
    np.testing.assert_array_equal(np.sort(second), np.arange(992))
    assert np.mean(first == second) < 0.01  # A new order, not the same one again.
    # Shuffled, not near the corpus order: a uniform permutation's correlation with the
    # positions has standard deviation 1 / sqrt(992) = 0.03.
    assert abs(np.corrcoef(np.arange(992), first)[0, 1]) < 0.15
    assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 0.15


def test_a_permuted_split_is_seeded_and_resumes_exactly():
    ids = np.arange(1000)

    def starts(seed, start_step, num_batches):
        dataset = lmd.training_dataset(ids, 8, 4, seed=seed, start_step=start_step,
                                       max_buffered_windows=10)
        return _window_starts(dataset, num_batches)

    full = starts(seed=3, start_step=0, num_batches=600)
    np.testing.assert_array_equal(starts(3, 0, 600), full)
    # Within the first epoch, and in the second (step 250 = window 1,000 = epoch 1, offset 8).
    np.testing.assert_array_equal(starts(3, 100, 50), full[400:600])
    np.testing.assert_array_equal(starts(3, 250, 50), full[1000:1200])
    assert np.mean(starts(4, 0, 100) == full[:400]) < 0.01


def test_the_threshold_counts_windows():
    ids = np.arange(1000)  # 992 windows.

    def starts(**threshold):
        return _window_starts(lmd.training_dataset(ids, 8, 4, seed=3, **threshold), 20)

    buffered = starts()
    np.testing.assert_array_equal(starts(max_buffered_windows=992), buffered)
    assert not np.array_equal(starts(max_buffered_windows=991), buffered)
