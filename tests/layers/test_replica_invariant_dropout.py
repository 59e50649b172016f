"""ReplicaInvariantDropout: each example's mask depends on its global row, step and layer only.

The property the Trainer relies on: a batch drawn as one piece (one replica) and the same batch
drawn as pieces at their row offsets (replicas, micro-batches) get the same masks, with and
without XLA. That the whole training run then matches is
tests/training/test_replica_equivalence.py's.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.layers.replica_invariant_dropout import ReplicaInvariantDropout
from keras_llm.layers.replica_invariant_dropout import global_batch_position

RATE = 0.3
# (batch=8, seq_len=5, hidden_dim=3): 15 values per example, not a multiple of Philox's 4
# words per counter, so the padding of each example's draw is exercised.
INPUTS = np.random.RandomState(0).uniform(1.0, 2.0, size=(8, 5, 3)).astype(np.float32)


def dropped(layer, inputs, step, first_example, jit_compile=False):
    @tf.function(jit_compile=jit_compile)
    def call(inputs, step, first_example):
        with global_batch_position(step, first_example):
            return layer(inputs, training=True)

    return call(tf.constant(inputs), tf.constant(step, tf.int64),
                tf.constant(first_example, tf.int32)).numpy()


@pytest.mark.parametrize("jit_compile", [False, True], ids=["tf", "xla"])
@pytest.mark.parametrize("noise_shape", [None, (None, None, 1)], ids=["elementwise", "per_token"])
def test_pieces_at_their_offsets_get_the_whole_batchs_masks(jit_compile, noise_shape):
    layer = ReplicaInvariantDropout(RATE, noise_shape=noise_shape, seed=7)
    whole = dropped(layer, INPUTS, step=3, first_example=0, jit_compile=jit_compile)
    # As 2 replicas of 4 rows, and as 4 replicas of 2 rows (or micro-batches).
    for rows in (4, 2):
        pieces = [dropped(layer, INPUTS[start:start + rows], 3, start, jit_compile)
                  for start in range(0, 8, rows)]
        np.testing.assert_array_equal(np.concatenate(pieces), whole)
    # Dropout happened, and kept values are scaled by 1 / (1 - rate).
    kept = whole != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(whole[kept], (INPUTS / (1 - RATE))[kept], rtol=1e-6)
    if noise_shape is not None:  # One draw per token: its features are kept or dropped together.
        assert np.all(kept == kept[:, :, :1])


def test_a_row_at_another_offset_gets_another_mask():
    layer = ReplicaInvariantDropout(RATE, seed=7)
    row = INPUTS[:1]
    masks = [dropped(layer, row, step=0, first_example=offset) != 0 for offset in range(4)]
    assert len({mask.tobytes() for mask in masks}) == 4


def test_masks_change_with_step_call_and_seed_and_repeat_otherwise():
    layer = ReplicaInvariantDropout(RATE, seed=7)
    first = dropped(layer, INPUTS, step=5, first_example=0)
    np.testing.assert_array_equal(dropped(layer, INPUTS, step=5, first_example=0), first)
    assert not np.array_equal(dropped(layer, INPUTS, step=6, first_example=0), first)
    other_seed = ReplicaInvariantDropout(RATE, seed=8)
    assert not np.array_equal(dropped(other_seed, INPUTS, step=5, first_example=0), first)

    # A layer applied twice in one forward pass (as LSTMBackbone's) draws two masks.
    with global_batch_position(5, 0):
        twice = [layer(INPUTS, training=True).numpy() for _ in range(2)]
    np.testing.assert_array_equal(twice[0], first)
    assert not np.array_equal(twice[1], first)


def test_drop_fraction_matches_the_rate():
    layer = ReplicaInvariantDropout(RATE, seed=1)
    ones = np.ones((64, 40, 40), np.float32)  # 102,400 values
    fraction = float(np.mean(dropped(layer, ones, step=0, first_example=0) == 0))
    # Binomial standard deviation sqrt(0.3 * 0.7 / 102400) = 0.0014: 5 sigma.
    assert fraction == pytest.approx(RATE, abs=0.007)


def test_outside_a_position_it_is_keras_dropout():
    # Same seed, same inputs: Keras's seed-generator dropout, step for step.
    ours = ReplicaInvariantDropout(RATE, seed=11)
    keras_dropout = keras.layers.Dropout(RATE, seed=11)
    for _ in range(2):
        np.testing.assert_array_equal(ours(INPUTS, training=True).numpy(),
                                      keras_dropout(INPUTS, training=True).numpy())


def test_identity_when_not_training_or_rate_zero():
    with global_batch_position(0, 0):
        np.testing.assert_array_equal(ReplicaInvariantDropout(RATE)(INPUTS, training=False), INPUTS)
        np.testing.assert_array_equal(ReplicaInvariantDropout(0.0)(INPUTS, training=True), INPUTS)


def test_mixed_precision_keeps_the_compute_dtype():
    layer = ReplicaInvariantDropout(RATE, seed=3, dtype="mixed_bfloat16")
    with global_batch_position(0, 0):
        output = layer(tf.constant(INPUTS, tf.bfloat16), training=True)
    assert output.dtype == tf.bfloat16
    assert 0 < float(tf.reduce_mean(tf.cast(output == 0, tf.float32))) < 1


def test_a_rate_of_one_is_refused():
    # Keras's Dropout accepts 1.0; the 1 / (1 - rate) scale would divide by zero.
    with pytest.raises(ValueError, match=r"rate must be a float in \[0, 1\); received rate=1.0"):
        ReplicaInvariantDropout(1.0)


def test_a_fixed_batch_entry_in_noise_shape_is_refused():
    with pytest.raises(ValueError, match=r"noise_shape\[0\] must be None.*\(8, None, 1\)"):
        ReplicaInvariantDropout(RATE, noise_shape=(8, None, 1))


def test_config_round_trip():
    layer = ReplicaInvariantDropout(RATE, noise_shape=(None, None, 1), seed=5, name="drop")
    clone = ReplicaInvariantDropout.from_config(layer.get_config())
    assert (clone.rate, clone.noise_shape, clone.seed, clone.name) == (RATE, (None, None, 1), 5,
                                                                       "drop")
