"""One train step against a numpy SGD update; the global-norm clip; the loss the step reports."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.layers.replica_invariant_dropout import (
    ReplicaInvariantDropout, global_batch_position)
from keras_llm.training.trainer import Trainer
from tests.conftest import replica_strategy
from tests.training.tiny_training import squared_error

FEATURES = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 1.0], [-2.0, 0.5]], np.float32)  # (4, 2)
TARGETS = np.array([[1.0], [0.0], [-1.0], [2.0]], np.float32)  # (4, 1)
MASK = np.array([1.0, 1.0, 1.0, 0.0], np.float32)  # The last example is padding.
KERNEL = np.array([[0.5], [-0.25]], np.float32)  # (2, 1)
LEARNING_RATE = 0.1


def _numpy_gradient():
    """d/dW of sum_i mask_i (x_i W - y_i)^2 / sum(mask): (2, 1)."""
    errors = (FEATURES @ KERNEL - TARGETS) * MASK[:, None]  # (4, 1)
    loss = float(np.sum(errors ** 2) / MASK.sum())
    return 2.0 * FEATURES.T @ errors / MASK.sum(), loss


def _step(num_replicas, clip_norm):
    strategy = replica_strategy(num_replicas)
    with strategy.scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
            1, use_bias=False, kernel_initializer=keras.initializers.Constant(KERNEL))])
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
    trainer = Trainer(strategy, model, optimizer, squared_error, gradient_clip_norm=clip_norm)
    data = tf.data.Dataset.from_tensor_slices((FEATURES, TARGETS, MASK)).batch(4)
    outputs = trainer.train_step(iter(strategy.experimental_distribute_dataset(data)))
    return model.weights[0].numpy(), {name: float(value) for name, value in outputs.items()}


@pytest.mark.parametrize("num_replicas", [1, 2])
def test_one_step_is_the_numpy_sgd_update(num_replicas):
    gradient, loss = _numpy_gradient()
    kernel, outputs = _step(num_replicas, clip_norm=0.0)
    np.testing.assert_allclose(kernel, KERNEL - LEARNING_RATE * gradient, rtol=1e-5)
    assert np.isclose(outputs["loss"], loss, rtol=1e-6)
    assert np.isclose(outputs["gradient_norm"], np.linalg.norm(gradient), rtol=1e-5)
    assert np.isclose(outputs["learning_rate"], LEARNING_RATE)


@pytest.mark.parametrize("num_replicas", [1, 2])
def test_clipping_scales_the_global_gradient_to_the_clip_norm(num_replicas):
    gradient, _ = _numpy_gradient()
    norm = np.linalg.norm(gradient)
    clip = norm / 4  # Factor clip / max(norm, clip) = 1/4, whatever the replica split.
    kernel, outputs = _step(num_replicas, clip_norm=clip)
    np.testing.assert_allclose(kernel, KERNEL - LEARNING_RATE * gradient / 4, rtol=1e-5)
    assert np.isclose(outputs["gradient_norm"], norm, rtol=1e-5)  # Reported before clipping.
    kernel, _ = _step(num_replicas, clip_norm=10 * norm)  # Above the norm: no change.
    np.testing.assert_allclose(kernel, KERNEL - LEARNING_RATE * gradient, rtol=1e-5)


@pytest.mark.parametrize("num_replicas", [1, 2])
def test_dropout_masks_follow_the_optimizer_step_and_the_global_row(num_replicas):
    # A rate of 0 leaves the weights fixed, so each step's loss shows only its masks: the same
    # batch at steps 0..3 must give the losses of the masks the layer draws at those steps for
    # rows 0..3, however the rows are split over the replicas.
    strategy = replica_strategy(num_replicas)
    with strategy.scope():
        dropout = ReplicaInvariantDropout(0.5, seed=3)
        model = keras.Sequential([keras.Input((2,)), dropout, keras.layers.Dense(
            1, use_bias=False, kernel_initializer=keras.initializers.Constant(KERNEL))])
        optimizer = keras.optimizers.SGD(0.0)
    trainer = Trainer(strategy, model, optimizer, squared_error)
    data = tf.data.Dataset.from_tensor_slices((FEATURES, TARGETS, MASK)).batch(4).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(data))
    step_losses = [float(trainer.train_step(iterator)["loss"]) for _ in range(4)]
    for step, loss in enumerate(step_losses):
        with global_batch_position(step, 0):
            dropped = dropout(FEATURES, training=True).numpy()  # (4, 2), the whole batch
        errors = (dropped @ KERNEL - TARGETS) * MASK[:, None]  # (4, 1)
        assert loss == pytest.approx(float(np.sum(errors ** 2) / MASK.sum()), rel=1e-6), step
    assert len(set(step_losses)) == 4, step_losses  # The masks changed at every step.
