"""The whole training checkpoint, built before restore; partial files; the best checkpoint."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_llm.training.best_checkpoint import BestCheckpoint
from keras_llm.training.checkpointing import TrainingCheckpoint, latest_checkpoint, saved_parts
from tests.training.tiny_training import dataset, train_config, training_state


def _values(state):
    """Every variable the checkpoint holds, as numpy, in a fixed order."""
    values = [v.numpy() for v in state.model.weights]
    values += [v.numpy() for v in state.optimizer.variables]
    values += [v.numpy() for v in state.weight_average.averages.values()]
    values += [state.weight_average.num_updates.numpy(), state.checkpoint.learning_rate_scale.numpy()]
    return values


def _train(state, trainer, steps):
    iterator = iter(dataset(int(state.optimizer.iterations.numpy())))
    for _ in range(steps):
        trainer.train_step(iterator)


def test_a_new_run_restores_optimizer_average_and_scale_exactly(tmp_path):
    train = train_config(weight_average_decay=0.9)
    state, trainer, _ = training_state(tmp_path, train)
    _train(state, trainer, 3)
    state.checkpoint.learning_rate_scale.assign(0.25)
    state.manager.save(checkpoint_number=3)
    assert saved_parts(latest_checkpoint(str(tmp_path))) >= {
        "model", "optimizer", "weight_average", "learning_rate_scale"}
    saved = _values(state)

    resumed, _, _ = training_state(tmp_path, train)  # Built whole, then restored.
    assert int(resumed.optimizer.iterations.numpy()) == 3
    restored = _values(resumed)
    assert len(restored) == len(saved)
    for before, after in zip(saved, restored):
        np.testing.assert_array_equal(after, before)
    # The restored scale is the one the optimizer's schedule reads: 0.25 x 0.05.
    assert np.isclose(float(resumed.optimizer.learning_rate), 0.25 * 0.05)


def test_optional_parts_missing_from_the_file_are_reported_and_restarted(tmp_path):
    state, trainer, _ = training_state(tmp_path / "old", train_config())
    _train(state, trainer, 2)
    path = TrainingCheckpoint(state.model, state.optimizer).checkpoint.save(str(tmp_path / "ckpt"))
    averaged, trainer, _ = training_state(tmp_path / "new", train_config(weight_average_decay=0.9))
    _train(averaged, trainer, 1)
    averaged.checkpoint.learning_rate_scale.assign(0.5)
    assert averaged.checkpoint.restore(path) == ["learning_rate_scale", "weight_average"]
    assert int(averaged.optimizer.iterations.numpy()) == 2
    assert float(averaged.checkpoint.learning_rate_scale.numpy()) == 0.5  # Kept.
    for weight, average in zip(averaged.model.trainable_weights,
                               averaged.weight_average.averages.values()):
        np.testing.assert_array_equal(average.numpy(), weight.numpy())  # Restarted from them.
    assert int(averaged.weight_average.num_updates.numpy()) == 0


def test_a_file_without_an_optimizer_is_refused_naming_it(tmp_path):
    state, _, _ = training_state(tmp_path / "run", train_config())
    path = tf.train.Checkpoint(model=state.checkpoint.checkpoint.model).save(str(tmp_path / "m"))
    with pytest.raises(ValueError, match=r"m-1: expected a training checkpoint with optimizer"):
        state.checkpoint.restore(path)


def test_roll_back_restores_and_lowers_the_scale_from_its_value_before(tmp_path):
    state, trainer, _ = training_state(tmp_path, train_config())
    _train(state, trainer, 2)
    path = state.manager.save(checkpoint_number=2)
    weights = [w.numpy() for w in state.model.weights]
    _train(state, trainer, 3)
    assert state.checkpoint.roll_back(path, 0.5) == 2
    assert state.checkpoint.roll_back(path, 0.5) == 2
    assert float(state.checkpoint.learning_rate_scale.numpy()) == 0.25  # 1 -> 0.5 -> 0.25.
    for before, weight in zip(weights, state.model.weights):
        np.testing.assert_array_equal(weight.numpy(), before)


def test_best_checkpoint_keeps_the_best_and_restores_it(tmp_path):
    state, trainer, run_directory = training_state(tmp_path, train_config())
    best = BestCheckpoint(state.checkpoint, run_directory, "loss")  # Lower is better.
    assert best.mode == "min" and BestCheckpoint(state.checkpoint, run_directory, "f1").mode == "max"
    kept = None
    for step, loss in ((1, 2.0), (2, 1.5), (3, 1.7)):
        _train(state, trainer, 1)
        best.update(step, {"loss": loss}, log=lambda *a: None)
        if step == 2:
            kept = [w.numpy() for w in state.model.weights]
    with open(os.path.join(tmp_path, "best", "best.json"), encoding="utf-8") as file:
        assert json.load(file) == {"step": 2, "validation": {"loss": 1.5}}
    assert best.restore(log=lambda *a: None) == {"step": 2, "validation": {"loss": 1.5}}
    for before, weight in zip(kept, state.model.weights):
        np.testing.assert_array_equal(weight.numpy(), before)
    # A resumed run reads the choice back.
    assert BestCheckpoint(state.checkpoint, run_directory, "loss").summary["step"] == 2
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'; got 'up'"):
        BestCheckpoint(state.checkpoint, run_directory, "loss", mode="up")


def test_a_checkpoint_of_the_previous_layout_is_refused_naming_the_changelog(tmp_path):
    """0.1 classifiers named weights without `backbone/`: the error says so, not an assert."""
    import numpy as np
    from keras_llm.config import ClassifierModelConfig
    from keras_llm.models.builders import build_classifier
    from keras_llm.training.checkpointing import (CheckpointLayoutError, check_weight_names,
                                                  make_checkpoint)
    model = build_classifier(ClassifierModelConfig(), vocabulary_size=20, sequence_length=8,
                             num_classes=2)
    model({"token_ids": np.ones((1, 4), "int32"), "padding_mask": np.ones((1, 4), bool)})
    old = tf.Module()
    old.weights = {"token_embedding/embeddings": tf.Variable(tf.zeros((20, 32))),
                   "classification_head/kernel": tf.Variable(tf.zeros((64, 1)))}
    path = tf.train.Checkpoint(model=old).save(str(tmp_path / "ckpt"))
    with pytest.raises(CheckpointLayoutError, match=r"keras_llm 0\.1.*Changelog.*backbone/"):
        check_weight_names(model, path)
    check_weight_names(model, make_checkpoint(model).save(str(tmp_path / "new")))  # fits
