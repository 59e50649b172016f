"""PrecomputedInputLSTM: the LSTM equations (NumPy), and keras.layers.LSTM's outputs and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.layers.precomputed_input_lstm import PrecomputedInputLSTM

BATCH, STEPS, FEATURES, UNITS = 3, 5, 4, 6
# Right padding; the last row has no real step at all (an empty text).
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], bool)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm(x, mask, kernel, recurrent_kernel, bias):
    """Hochreiter & Schmidhuber 1997 with a forget gate (Gers et al. 2000), gates in Keras's
    order [input, forget, cell, output]; a masked step keeps the state and repeats the last
    output. Returns (outputs (batch, steps, units), h, c)."""
    batch, steps, _ = x.shape
    units = recurrent_kernel.shape[0]
    h, c = np.zeros((batch, units)), np.zeros((batch, units))
    outputs = np.zeros((batch, steps, units))
    for t in range(steps):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias  # (batch, 4 * units)
        i, f, g, o = np.split(z, 4, axis=-1)
        c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h_new = _sigmoid(o) * np.tanh(c_new)
        keep = mask[:, t, None]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        outputs[:, t] = h
    return outputs, h, c


def _layers(**kwargs):
    """(ours, keras.layers.LSTM) built with the same random weights."""
    inputs = np.zeros((BATCH, STEPS, FEATURES), np.float32)
    ours = PrecomputedInputLSTM(UNITS, **kwargs)
    reference = keras.layers.LSTM(UNITS, **kwargs)
    ours(inputs), reference(inputs)
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in reference.get_weights()]
    ours.set_weights(weights), reference.set_weights(weights)
    return ours, reference, weights


def _inputs(seed=1):
    return np.random.default_rng(seed).normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)


def test_outputs_and_final_state_follow_the_lstm_equations():
    ours, _, (kernel, recurrent_kernel, bias) = _layers(return_sequences=True, return_state=True)
    x = _inputs()
    outputs, h, c = ours(x, mask=MASK)
    expected_outputs, expected_h, expected_c = numpy_lstm(
        x.astype(np.float64), MASK, kernel, recurrent_kernel, bias)
    np.testing.assert_allclose(outputs, expected_outputs, atol=1e-5)
    np.testing.assert_allclose(h, expected_h, atol=1e-5)
    np.testing.assert_allclose(c, expected_c, atol=1e-5)
    np.testing.assert_array_equal(h[2], np.zeros(UNITS))  # The empty row never stepped.


@pytest.mark.parametrize("kwargs", [
    {"return_sequences": True},
    {"return_sequences": False},
    {"return_sequences": True, "go_backwards": True},
    {"return_sequences": True, "zero_output_for_mask": True},
    {"return_sequences": True, "use_bias": False},
])
def test_outputs_and_gradients_match_keras_lstm(kwargs):
    ours, reference, _ = _layers(**kwargs)
    x = tf.constant(_inputs())
    initial_state = [tf.constant(_inputs(2)[:, 0, :1].repeat(UNITS, axis=1))] * 2  # (b, units)
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, mask=MASK, initial_state=initial_state)
            # A weighted sum, so every output element gets its own gradient.
            weights = tf.reshape(tf.cos(tf.range(tf.size(outputs), dtype=tf.float32)),
                                 tf.shape(outputs))
            loss = tf.reduce_sum(outputs * weights)
        results.append((outputs, tape.gradient(loss, [x, *layer.trainable_weights])))
    (ours_outputs, ours_gradients), (keras_outputs, keras_gradients) = results
    np.testing.assert_allclose(ours_outputs, keras_outputs, atol=1e-5)
    for ours_gradient, keras_gradient in zip(ours_gradients, keras_gradients):
        np.testing.assert_allclose(ours_gradient, keras_gradient, atol=1e-5)


def test_bidirectional_matches_keras_lstm():
    # Bidirectional builds its backward copy from the layer's config (go_backwards flipped) and
    # sets zero_output_for_mask on both.
    x = _inputs()
    layers = []
    for lstm_class in (PrecomputedInputLSTM, keras.layers.LSTM):
        layer = keras.layers.Bidirectional(lstm_class(UNITS, return_sequences=True))
        layer(x)
        layers.append(layer)
    layers[0].set_weights(layers[1].get_weights())
    assert type(layers[0].backward_layer) is PrecomputedInputLSTM
    np.testing.assert_allclose(layers[0](x, mask=MASK), layers[1](x, mask=MASK), atol=1e-5)


def test_dropout_in_training_runs_keras_loop_with_the_same_masks():
    # Per-step dropout masks live in Keras's cell: with them the layer is keras.layers.LSTM.
    x = _inputs()
    outputs = []
    for lstm_class in (PrecomputedInputLSTM, keras.layers.LSTM):
        keras.utils.set_random_seed(3)
        layer = lstm_class(UNITS, return_sequences=True, dropout=0.5, recurrent_dropout=0.3)
        layer(x)
        layer.set_weights([np.full(w.shape, 0.1, np.float32) for w in layer.get_weights()])
        outputs.append(layer(x, training=True))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_checkpoints_of_keras_lstm_restore_into_it(tmp_path):
    ours, reference, _ = _layers(return_sequences=True)
    fresh = PrecomputedInputLSTM(UNITS, return_sequences=True)
    fresh(_inputs())
    path = tf.train.Checkpoint(layer=reference).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(layer=fresh).read(path).assert_consumed()
    np.testing.assert_allclose(fresh(_inputs(), mask=MASK), reference(_inputs(), mask=MASK),
                               atol=1e-5)


def test_mixed_bfloat16_computes_in_bfloat16_close_to_float32():
    ours, _, weights = _layers(return_sequences=True)
    mixed = PrecomputedInputLSTM(UNITS, return_sequences=True, dtype="mixed_bfloat16")
    mixed(_inputs())
    mixed.set_weights(weights)
    outputs = mixed(_inputs(), mask=MASK)
    assert outputs.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(outputs, tf.float32), ours(_inputs(), mask=MASK),
                               atol=0.05)


def test_inner_loop_called_directly_computes_in_the_policy_dtype():
    # LSTMBackbone.prefill calls inner_loop outside the layer's __call__, where Keras does not
    # cast the float32 variables to the compute dtype.
    x = tf.cast(_inputs(), tf.bfloat16)
    zeros = tf.zeros((BATCH, UNITS), tf.bfloat16)
    outputs = []
    for lstm_class in (PrecomputedInputLSTM, keras.layers.LSTM):
        layer = lstm_class(UNITS, return_sequences=True, dtype="mixed_bfloat16")
        layer.build((None, None, FEATURES))
        layer.set_weights([np.full(w.shape, 0.1, np.float32) for w in layer.get_weights()])
        _, sequence, (h, c) = layer.inner_loop(x, [zeros, zeros], tf.constant(MASK))
        assert sequence.dtype == h.dtype == c.dtype == tf.bfloat16
        outputs.append(tf.cast(sequence, tf.float32))
    np.testing.assert_allclose(outputs[0], outputs[1], atol=0.02)


def test_round_trips_through_its_config():
    layer = PrecomputedInputLSTM(UNITS, return_sequences=True, name="lstm_0")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is PrecomputedInputLSTM
    assert restored.get_config() == layer.get_config()
