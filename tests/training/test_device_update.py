"""DeviceUpdate against Keras's own Adam/AdamW `apply` on one device, step for step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.training.device_update import DeviceUpdate, unsupported_reason
from tests.conftest import replica_strategy

SHAPES = {"kernel": (3, 4), "bias": (4,), "embeddings": (5, 4)}
STEPS = 4
# Without XLA the same ops run in the same order as Keras's: equal to the bit. XLA contracts a
# multiply and an add into one fused multiply-add (one rounding where Keras's ops round twice):
# a few float32 roundings, relative to values of about 0.01-1.
XLA_TOLERANCE = dict(rtol=1e-6, atol=1e-8)


def _gradients(seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(STEPS,) + shape).astype(np.float32) * 0.1
            for shape in SHAPES.values()]


def _build(strategy, make_optimizer):
    with strategy.scope():
        rng = np.random.default_rng(0)
        variables = [keras.Variable(rng.normal(size=shape).astype(np.float32), name=name)
                     for name, shape in SHAPES.items()]
        optimizer = make_optimizer()
        if isinstance(optimizer, keras.optimizers.AdamW):  # As keras_llm's: not the bias or
            optimizer.exclude_from_weight_decay(var_list=variables[1:])  # the embeddings.
        optimizer.build(variables)
    return variables, optimizer


def _schedule():
    return keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.5)


OPTIMIZERS = {
    "adamw": lambda: keras.optimizers.AdamW(_schedule(), weight_decay=0.3, beta_2=0.99),
    "adam": lambda: keras.optimizers.Adam(0.02, beta_1=0.8, epsilon=1e-3),
}


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager_ops", "xla"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_devices_copy_takes_kerass_steps(name, jit_compile):
    gradient_steps = [[g[step] for g in _gradients(seed=1)] for step in range(STEPS)]

    # Keras's own update on one device.
    variables, optimizer = _build(tf.distribute.OneDeviceStrategy("/cpu:0"), OPTIMIZERS[name])
    expected_rates = []
    for gradients in gradient_steps:
        expected_rates.append(float(optimizer.learning_rate))
        optimizer.apply([tf.constant(g) for g in gradients], variables)
    expected = [v.numpy() for v in variables]
    expected_moments = [v.numpy() for v in optimizer._momentums + optimizer._velocities]

    strategy = replica_strategy(2)
    variables, optimizer = _build(strategy, OPTIMIZERS[name])
    update = DeviceUpdate(strategy, optimizer, variables, jit_compile=jit_compile)
    step = tf.function(lambda gradients: update(gradients))
    rates = []
    for gradients in gradient_steps:
        # As strategy.run returns them: one copy of the (already reduced) gradient per replica.
        per_replica = [strategy.experimental_distribute_values_from_function(
            lambda context, g=g: tf.constant(g)) for g in gradients]
        rates.append(float(step(per_replica)))
    assert int(optimizer.iterations.numpy()) == STEPS
    np.testing.assert_allclose(rates, expected_rates, rtol=1e-7)
    tolerance = XLA_TOLERANCE if jit_compile else dict(rtol=0, atol=0)
    for variable, value in zip(variables, expected):
        for copy in strategy.experimental_local_results(variable.value):
            np.testing.assert_allclose(copy.numpy(), value, **tolerance)
    moments = optimizer._momentums + optimizer._velocities
    for moment, value in zip(moments, expected_moments):
        for copy in strategy.experimental_local_results(moment.value):
            np.testing.assert_allclose(copy.numpy(), value, **tolerance)


def test_weight_decay_reaches_only_what_keras_decays():
    # One AdamW step with a zero gradient moves only the decayed kernel, by lr * decay * w.
    strategy = replica_strategy(2)
    variables, optimizer = _build(strategy, OPTIMIZERS["adamw"])
    before = [v.numpy() for v in variables]
    update = DeviceUpdate(strategy, optimizer, variables, jit_compile=False)
    zeros = [strategy.experimental_distribute_values_from_function(
        lambda context, s=s: tf.zeros(s)) for s in SHAPES.values()]
    tf.function(lambda g: update(g))(zeros)
    np.testing.assert_allclose(variables[0].numpy(), before[0] * (1 - 0.01 * 0.3), rtol=1e-6)
    np.testing.assert_array_equal(variables[1].numpy(), before[1])
    np.testing.assert_array_equal(variables[2].numpy(), before[2])


@pytest.mark.parametrize("make_optimizer, reason", [
    (lambda: keras.optimizers.SGD(0.1), "SGD is not Keras's Adam or AdamW"),
    (lambda: keras.optimizers.Adam(amsgrad=True), "amsgrad"),
    (lambda: keras.optimizers.AdamW(global_clipnorm=1.0), "global_clipnorm"),
    (lambda: keras.optimizers.AdamW(use_ema=True), "use_ema"),
    (lambda: keras.optimizers.Adam(gradient_accumulation_steps=2), "gradient_accumulation"),
])
def test_other_optimizers_keep_kerass_update(make_optimizer, reason):
    strategy = replica_strategy(2)
    variables, optimizer = _build(strategy, make_optimizer)
    assert reason in unsupported_reason(optimizer, variables)
    with pytest.raises(ValueError, match=reason):
        DeviceUpdate(strategy, optimizer, variables, jit_compile=False)


def test_an_unbuilt_optimizer_is_refused():
    strategy = replica_strategy(2)
    with strategy.scope():
        variables = [keras.Variable(np.zeros((2,), np.float32))]
        optimizer = keras.optimizers.AdamW()
    with pytest.raises(ValueError, match="optimizer.build"):
        DeviceUpdate(strategy, optimizer, variables, jit_compile=False)
    with strategy.scope():
        optimizer.build(variables)
    assert unsupported_reason(optimizer, variables) is None


def test_a_constrained_variable_keeps_kerass_update():
    # Keras's apply projects a constrained variable after the update; DeviceUpdate does not.
    strategy = replica_strategy(2)
    with strategy.scope():
        layer = keras.layers.Dense(2, kernel_constraint=keras.constraints.MaxNorm(1.0),
                                   name="norm_limited")
        layer.build((None, 3))
        variables = layer.trainable_variables
        optimizer = keras.optimizers.AdamW()
        optimizer.build(variables)
    assert "norm_limited" in unsupported_reason(optimizer, variables)
    with pytest.raises(ValueError, match="constraint"):
        DeviceUpdate(strategy, optimizer, variables, jit_compile=False)
