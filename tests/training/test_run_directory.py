"""Run-directory helpers: the training-data fingerprint (atomic writes: test_atomic_files)."""

from keras_llm.training.run_directory import training_data_fingerprint


def test_fingerprint_changes_with_contents_order_and_labels_only():
    base = training_data_fingerprint(["ab", "c"], ["1", "0"])
    assert base == training_data_fingerprint(["ab", "c"], ["1", "0"])
    assert len(base) == 64 and int(base, 16) >= 0  # sha256, hex.
    others = [
        training_data_fingerprint(["a", "bc"], ["1", "0"]),  # Same characters, split elsewhere.
        training_data_fingerprint(["c", "ab"], ["0", "1"]),  # Same rows, other order.
        training_data_fingerprint(["ab", "c"], ["1", "1"]),  # Another label.
        training_data_fingerprint(["ab", "c"]),  # No labels.
    ]
    assert len({base, *others}) == 5
