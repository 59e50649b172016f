"""The moving average of the weights: its value on 1 and 2 replicas, evaluation with it,
checkpoints that hold it, and an exact resume."""

import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.training import losses
from keras_llm.evaluation.trained_runs import load_trained_language_model
from keras_llm.training.checkpointing import TrainingCheckpoint, restore_model, weight_name
from keras_llm.training.language_model import train_language_model
from keras_llm.training.trainer import Trainer
from keras_llm.training.weight_average import WeightAverage
from tests.conftest import replica_strategy
from tests.training.test_fault_tolerance import (
    _checkpoint,
    _config,
    _interrupt_and_resume,
    _max_difference,
    _quiet,
)

DECAY = 0.75


def _setup(num_replicas, decay=DECAY):
    """A 3 -> 1 logistic regression with Adam, its WeightAverage, a Trainer and a fixed batch."""
    strategy = replica_strategy(num_replicas)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.layers.Dense(1, name="head")])
        model(tf.zeros((1, 3)))
        optimizer = keras.optimizers.Adam(0.1)
        optimizer.build(model.trainable_variables)
        average = WeightAverage(strategy, model, decay)
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(8, 3)), tf.float32)
    labels = tf.constant(rng.integers(0, 2, size=8), tf.int32)
    dataset = tf.data.Dataset.from_tensors((features, labels, tf.ones((8,)))).repeat()
    trainer = Trainer(strategy, model, optimizer, losses.classification_cross_entropy,
                      weight_average=average)
    return strategy, model, average, trainer, dataset


@pytest.mark.parametrize("num_replicas", [1, 2])
def test_average_is_the_bias_corrected_mean_on_every_replica(num_replicas):
    strategy, model, average, trainer, dataset = _setup(num_replicas)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    history = []  # The weights after each step.
    for _ in range(3):
        trainer.train_step(iterator)
        history.append([w.numpy() for w in model.trainable_weights])
    # The bias-corrected exponential mean of the 3 iterates, from its definition (not the
    # incremental form the code uses): sum_i (1 - d) d^(3 - i) w_i / (1 - d^3).
    coefficients = [(1 - DECAY) * DECAY ** (3 - i) for i in (1, 2, 3)]
    expected = [sum(c * weights[k] for c, weights in zip(coefficients, history)) / (1 - DECAY ** 3)
                for k in range(2)]
    assert sum(coefficients) == pytest.approx(1 - DECAY ** 3)
    assert not np.allclose(expected[0], history[-1][0])  # Not just the last weights.
    assert int(average.num_updates.numpy()) == 3
    for value, variable in zip(expected, average.averages.values()):
        copies = strategy.experimental_local_results(variable)
        assert len(copies) == num_replicas
        for copy in copies:
            np.testing.assert_allclose(copy.numpy(), value, rtol=1e-6, atol=1e-7)


def test_evaluation_uses_the_average_and_gives_the_weights_back():
    strategy, model, average, trainer, dataset = _setup(2)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    for _ in range(3):
        trainer.train_step(iterator)
    raw = [w.numpy() for w in model.trainable_weights]
    averaged = [a.numpy() for a in average.averages.values()]
    features, labels, mask = next(iter(dataset))

    totals = trainer.evaluate(strategy.experimental_distribute_dataset(dataset.take(1)))

    # The reference: the same model with the averaged weights, in numpy.
    kernel, bias = averaged
    logits = features.numpy() @ kernel + bias
    y = labels.numpy()[:, None]
    expected = np.mean(np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits))))
    assert totals["loss"] == pytest.approx(expected, rel=1e-5)
    # The raw weights are back, bit for bit, and so are the averages.
    for value, weight in zip(raw, model.trainable_weights):
        np.testing.assert_array_equal(weight.numpy(), value)
    for value, variable in zip(averaged, average.averages.values()):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_readers_restore_the_average_from_a_checkpoint(tmp_path):
    strategy, model, average, trainer, dataset = _setup(1)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    for _ in range(3):
        trainer.train_step(iterator)
    checkpoint = TrainingCheckpoint(model, trainer.optimizer, weight_average=average)
    path = checkpoint.checkpoint.save(str(tmp_path / "ckpt"))
    reader = keras.Sequential([keras.layers.Dense(1, name="head")])
    reader(tf.zeros((1, 3)))
    restore_model(reader, path)
    for weight, variable in zip(reader.trainable_weights, average.averages.values()):
        np.testing.assert_array_equal(weight.numpy(), variable.numpy())


def test_decay_outside_the_open_interval_is_refused():
    with pytest.raises(ValueError, match=r"--weight_average_decay must be in \(0, 1\)"):
        _setup(1, decay=1.0)


def test_language_model_run_averages_resumes_exactly_and_reports_the_average(
        tiny_shakespeare_dir, tmp_path):
    config = _config(tiny_shakespeare_dir, weight_average_decay=0.8)
    reference_dir, model_dir = str(tmp_path / "uninterrupted"), str(tmp_path / "interrupted")
    results = train_language_model(config, reference_dir, log=_quiet)
    _interrupt_and_resume(config, model_dir, step=5, signum=signal.SIGTERM)

    averages = [_checkpoint(d, "weight_average/weights/") for d in (reference_dir, model_dir)]
    updates = [_checkpoint(d, "weight_average/num_updates") for d in (reference_dir, model_dir)]
    assert [list(u.values()) for u in updates] == [[results["steps"]]] * 2
    weights = [_checkpoint(d, "model/weights/") for d in (reference_dir, model_dir)]
    assert _max_difference(*averages) <= 1e-6 and _max_difference(*weights) <= 1e-6
    # The average differs from the last weights, and it is what readers get.
    renamed = {name.replace("weight_average/", "model/"): value
               for name, value in averages[0].items()}
    assert _max_difference(renamed, {n: v for n, v in weights[0].items() if n in renamed}) > 1e-4
    model, _, _, step = load_trained_language_model(reference_dir)
    assert step == results["steps"]
    # Checkpoint keys escape "/" in object names as ".S".
    restored = {f"weight_average/weights/{weight_name(w).replace('/', '.S')}"
                "/.ATTRIBUTES/VARIABLE_VALUE": w.numpy() for w in model.trainable_weights}
    assert _max_difference(restored, averages[0]) == 0.0
    assert os.path.exists(os.path.join(reference_dir, "results.json"))


def test_restoring_a_checkpoint_without_an_average_restarts_it(tmp_path):
    strategy, model, average, trainer, dataset = _setup(2, decay=0.998)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    trainer.train_step(iterator)
    # Saved before averaging was turned on (as by a run resumed with --weight_average_decay).
    old = TrainingCheckpoint(model, trainer.optimizer).checkpoint.save(str(tmp_path / "old"))
    saved_weights = [w.numpy() for w in model.trainable_weights]
    checkpoint = TrainingCheckpoint(model, trainer.optimizer, weight_average=average)
    for _ in range(2):
        trainer.train_step(iterator)
    assert int(average.num_updates.numpy()) == 3
    # As a NaN rollback or the best checkpoint would; the file has no average to restore.
    assert checkpoint.restore(old) == ["weight_average"]
    assert int(average.num_updates.numpy()) == 0
    for weights, variable in zip(saved_weights, average.averages.values()):
        for copy in strategy.experimental_local_results(variable):
            np.testing.assert_array_equal(copy.numpy(), weights)
    # The first update after a restart takes the weights exactly: rate (1 - d) / (1 - d^1) = 1.
    trainer.train_step(iterator)
    for weight, variable in zip(model.trainable_weights, average.averages.values()):
        np.testing.assert_array_equal(variable.numpy(), weight.numpy())
