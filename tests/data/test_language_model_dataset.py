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
