"""The learning-rate schedule (nanoGPT's warmup, then cosine), its scale, and weight decay."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm import config as config_lib
from keras_llm.training import optimizer as optimizer_lib

LR, MIN_LR, WARMUP, STEPS = 1e-3, 1e-4, 4, 14


def _rate(schedule, step):
    return float(schedule(tf.constant(step, tf.int64)))


def test_warmup_starts_above_zero_then_cosine_to_the_minimum():
    schedule = optimizer_lib.WarmupCosineDecay(LR, MIN_LR, WARMUP, STEPS)
    # By hand, nanoGPT's get_lr: lr * (it + 1) / (warmup + 1) below warmup.
    assert math.isclose(_rate(schedule, 0), 1e-3 * 1 / 5, rel_tol=1e-6)  # Not 0.
    assert math.isclose(_rate(schedule, WARMUP - 1), 1e-3 * 4 / 5, rel_tol=1e-6)
    assert math.isclose(_rate(schedule, WARMUP), 1e-3, rel_tol=1e-6)  # cos(0) = 1: the peak.
    # Halfway through the 10 decay steps: cos(pi / 2) = 0, so the mean of peak and minimum.
    assert math.isclose(_rate(schedule, 9), (1e-3 + 1e-4) / 2, rel_tol=1e-6)
    assert math.isclose(_rate(schedule, STEPS), 1e-4, rel_tol=1e-6)
    assert math.isclose(_rate(schedule, STEPS + 10), 1e-4, rel_tol=1e-6)  # Stays there.


def test_no_warmup_starts_at_the_peak():
    schedule = optimizer_lib.learning_rate_schedule(LR, MIN_LR, 0, 10)
    assert math.isclose(_rate(schedule, 0), 1e-3, rel_tol=1e-6)


def test_the_scale_multiplies_the_rate_and_survives_get_config():
    base = optimizer_lib.WarmupCosineDecay(LR, MIN_LR, WARMUP, STEPS)
    scaled = optimizer_lib.ScaledSchedule(base)
    assert scaled.scale.name.startswith("learning_rate_scale")
    scaled.scale.assign(0.25)
    assert math.isclose(_rate(scaled, 2), 0.25 * 1e-3 * 3 / 5, rel_tol=1e-6)
    copy = optimizer_lib.ScaledSchedule.from_config(scaled.get_config())
    assert copy.get_config() == scaled.get_config()
    assert float(copy.scale.numpy()) == 0.25 and copy.scale is not scaled.scale
    for step in (0, 3, 4, 9, 14):
        assert _rate(copy, step) == _rate(scaled, step)
    constant = optimizer_lib.ScaledSchedule(3e-3, scale=0.5)
    assert constant.get_config() == {"base": 3e-3, "scale": 0.5}
    assert math.isclose(_rate(optimizer_lib.ScaledSchedule.from_config(constant.get_config()), 7),
                        1.5e-3, rel_tol=1e-6)


@pytest.mark.parametrize("name", ["constant", "warmup_cosine"])
def test_make_schedule_follows_the_config(name):
    train = config_lib.TrainConfig(learning_rate_schedule=name, learning_rate=LR,
                                   min_learning_rate=MIN_LR, warmup_steps=WARMUP)
    schedule = optimizer_lib.make_schedule(train, STEPS)
    assert isinstance(schedule, optimizer_lib.ScaledSchedule)
    expected = 1e-3 if name == "constant" else 1e-3 / 5
    assert math.isclose(_rate(schedule, 0), expected, rel_tol=1e-6)


def _model():
    inputs = keras.Input((3,), dtype="int32")
    hidden = keras.layers.Embedding(10, 4, name="embedding")(inputs)
    hidden = keras.layers.LayerNormalization(name="norm")(hidden)
    outputs = keras.layers.Dense(2, name="dense")(hidden)
    return keras.Model(inputs, outputs)


def test_only_matrices_other_than_embeddings_are_decayed():
    model = _model()
    train = config_lib.TrainConfig(optimizer="adamw", weight_decay=0.5,
                                   learning_rate_schedule="constant", learning_rate=0.1)
    optimizer = optimizer_lib.make_optimizer(model, train, optimizer_lib.make_schedule(train, 10))
    assert isinstance(optimizer, keras.optimizers.AdamW)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    # A zero gradient leaves Adam's step at 0: only the decoupled decay moves a variable, by
    # the factor (1 - learning_rate * weight_decay) = 0.95.
    optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables],
                    model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables
               if not np.array_equal(v.numpy(), before[v.path])}
    assert decayed == {"dense/kernel"}
    kernel = next(v for v in model.trainable_variables if v.path == "dense/kernel")
    np.testing.assert_allclose(kernel.numpy(), 0.95 * before["dense/kernel"], rtol=1e-6)


def test_adam_is_plain_adam():
    train = config_lib.TrainConfig(optimizer="adam", beta_1=0.8, beta_2=0.9)
    optimizer = optimizer_lib.make_optimizer(_model(), train, optimizer_lib.make_schedule(train, 10))
    assert type(optimizer) is keras.optimizers.Adam
    assert (optimizer.beta_1, optimizer.beta_2) == (0.8, 0.9)
