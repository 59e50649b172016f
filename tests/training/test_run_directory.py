"""Run-directory helpers: the training-data fingerprint (atomic writes: test_atomic_files)."""

import os

import pytest

from keras_llm.training.run_directory import (
    check_resumable,
    ModelDirectoryError,
    training_data_fingerprint,
)


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


def _run_with_checkpoint(model_dir, train):
    """A model directory as a run leaves it: config.json and one checkpoint."""
    import json

    import tensorflow as tf

    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "config.json"), "w", encoding="utf-8") as file:
        json.dump({"model": {"architecture": "gpt"}, "data": {"corpus": "c"}, "train": train},
                  file)
    tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(3)),
                               os.path.join(model_dir, "checkpoints"), 1).save()


def test_resume_with_another_batch_size_or_seed_is_refused_naming_both_values(tmp_path):
    model_dir = str(tmp_path / "run")
    _run_with_checkpoint(model_dir, {"batch_size": 64, "seed": 1, "learning_rate": 1e-3})

    def config(**train):
        values = {"batch_size": 64, "seed": 1, "learning_rate": 1e-3}
        values.update(train)
        return {"model": {"architecture": "gpt"}, "data": {"corpus": "c"}, "train": values}

    check_resumable(model_dir, config(), ("corpus",), "language-model")  # Same settings.
    check_resumable(model_dir, config(learning_rate=1e-4), ("corpus",), "language-model")
    with pytest.raises(ModelDirectoryError) as error:
        check_resumable(model_dir, config(batch_size=32), ("corpus",), "language-model")
    message = str(error.value)
    assert "--batch_size=64 saved, --batch_size=32 requested" in message
    assert "Resume with --batch_size=64 --seed=1, or start a new run with a new --model_dir" in (
        message)
    with pytest.raises(ModelDirectoryError, match=r"--seed=1 saved, --seed=2 requested"):
        check_resumable(model_dir, config(seed=2), ("corpus",), "language-model")
    # A new run in an empty directory may use anything.
    check_resumable(str(tmp_path / "new"), config(batch_size=8), ("corpus",), "language-model")


def test_attention_that_cannot_fit_in_memory_is_refused_naming_the_flags():
    from keras_llm import presets
    from keras_llm.training.run_setup import attention_bytes, check_attention_memory

    config = presets.language_model_config("shakespeare_char")  # 4 layers, 4 heads, batch 12.
    # 2 float32 arrays of (12, 4, 64, 64) per layer: 6.3 MB for the preset's context.
    assert attention_bytes(4, 4, 64, 12) == 2 * 4 * 4 * 12 * 4 * 64 * 64
    check_attention_memory(config.model, config.train, 64, memory_bytes=2**30)
    with pytest.raises(ValueError, match=r"--sequence_length=65536 needs at least 6,144\.0 GiB "
                                         r"for attention alone .* more than this machine's 1\.0 "
                                         r"GiB. Lower --sequence_length or --batch_size"):
        check_attention_memory(config.model, config.train, 65536, memory_bytes=2**30)
    lstm = presets.language_model_config("shakespeare_char_lstm")
    check_attention_memory(lstm.model, lstm.train, 65536, memory_bytes=2**30)  # No attention.
