"""A tiny regression model with the real training state, for loop and checkpoint tests."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_llm import config as config_lib
from keras_llm.training.run_directory import RunDirectory
from keras_llm.training.trainer import Trainer
from keras_llm.training.training_state import create_training_state

FEATURES = 3


def squared_error(targets, outputs, mask):
    """`(loss_sum, count)` of the squared error, as `keras_llm.training.losses` functions."""
    errors = tf.reduce_sum(tf.square(outputs - targets), axis=-1) * mask  # (batch,)
    return tf.reduce_sum(errors), tf.reduce_sum(mask)


def dense_model():
    return keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1, name="head")])


def train_config(**overrides):
    values = dict(optimizer="adam", learning_rate_schedule="constant", learning_rate=0.05,
                  batch_size=4, gradient_clip_norm=0.0, seed=7, max_checkpoints=5)
    values.update(overrides)
    return dataclasses.replace(config_lib.TrainConfig(), **values)


def dataset(start_step=0, nan_at_step=None):
    """Endless batches of 4 examples; the batch of step `nan_at_step` (1-based) has NaN targets."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, FEATURES)).astype(np.float32)
    targets = (features @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((features, targets, np.ones(64, np.float32)))
    data = data.batch(4).repeat().skip(start_step).enumerate(start=start_step + 1)

    def poison(step, batch):
        inputs, batch_targets, mask = batch
        bad = tf.logical_and(nan_at_step is not None, step == (nan_at_step or 0))
        return inputs, tf.where(bad, batch_targets * np.nan, batch_targets), mask

    return data.map(poison)


def training_state(model_dir, train, train_steps=10, strategy=None):
    """(state, trainer, run_directory) of a new or resumed run in `model_dir`."""
    strategy = strategy or tf.distribute.get_strategy()
    run_directory = RunDirectory(str(model_dir), strategy)
    state = create_training_state(strategy, dense_model, tf.zeros((1, FEATURES)), train,
                                  train_steps, run_directory, log=lambda *a: None)
    trainer = Trainer(strategy, state.model, state.optimizer, squared_error,
                      train.gradient_clip_norm, weight_average=state.weight_average)
    return state, trainer, run_directory
