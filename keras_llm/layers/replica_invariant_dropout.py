"""Dropout whose masks do not depend on how a step's global batch is split.

Keras's `Dropout` draws each call's mask from its layer's seed generator. That generator's
state is one mirrored variable, so under `MirroredStrategy` every replica draws the same
pattern for its own share of the batch, while one device draws one pattern for the whole
batch: with dropout, the losses of 1, 2 or 4 replicas differed (by up to 1.6e-3 on SST-2),
and so did those of 1 and 2 micro-batches.

`ReplicaInvariantDropout` draws the mask of each example from where that example sits in the
step's global batch instead. Inside `global_batch_position(step, first_example)`, which the
`Trainer` enters around each replica's (micro-)batch, the mask of the example in global-batch
row `i` at optimizer step `s`, in the `c`-th call of the layer in the forward pass, is:

    keep[i, j] = uniform(i, j) >= rate,  uniform from Philox-4x32-10 (Salmon et al. 2011,
    "Parallel random numbers: as easy as 1, 2, 3") with
    key = hash(layer seed, c)  (TensorFlow's `StatelessRandomGetKeyCounter`),
    128-bit counter = (i * counters_per_example + j // 4, s)

Philox is counter based: every counter value gives its own 4 random words, so a replica holding
rows 6..11 draws exactly the words a single device draws for those rows. TensorFlow's
`StatelessRandomUniformV2` fills its output from consecutive counters, 4 values each, in row-major
order, with and without XLA (pinned by `tests/layers/test_replica_invariant_dropout.py`); each
example's draw is padded to a multiple of 4 values so that rows start on a counter.

Outside the context (Keras's `fit`, a direct call) the layer is Keras's `Dropout`: each call
advances the layer's seed generator.
"""

import contextlib
import threading

import keras
import tensorflow as tf

from keras_llm.layers.validation import check_dropout_rate

# `StatelessRandomUniformV2`'s `alg` for Philox-4x32-10 (tf.random.Algorithm.PHILOX).
_PHILOX = 1
# Philox-4x32 returns four 32-bit words per counter value.
_VALUES_PER_COUNTER = 4

_local = threading.local()  # MirroredStrategy traces each replica's step in its own thread.


class _Position:
    def __init__(self, step, first_example):
        self.step = step
        self.first_example = first_example
        self.calls = {}  # id(layer) -> calls so far in this forward pass


@contextlib.contextmanager
def global_batch_position(step, first_example):
    """Makes `ReplicaInvariantDropout` calls inside draw per-example masks (module docstring).

    Args:
        step: int scalar tensor or int, the optimizer step (e.g. `optimizer.iterations`); masks
            differ from step to step.
        first_example: int scalar tensor or int, the row, in the step's global batch, of the
            first example of the batch the model is called on: replica `r` starts after the
            rows of replicas `0 .. r - 1` (at `r * b` when each holds `b`), and its micro-batch
            `m` of `k` rows `m * k` rows further.

    Yields:
        None. Contexts nest; the innermost one counts. Each layer's calls are counted per
        context, so a layer applied at several places gets a different mask at each.

    Enter it inside the function that `tf.function` traces (as `Trainer` does), with `step`
    read there: the layers read `step` and `first_example` while being traced, so a context
    entered around a call of an already traced function would fix them at their traced values.
    """
    position = _Position(tf.cast(step, tf.int64), tf.cast(first_example, tf.int64))
    stack = _local.__dict__.setdefault("stack", [])
    stack.append(position)
    try:
        yield
    finally:
        stack.pop()


def _current_position():
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


@keras.saving.register_keras_serializable(package="keras_llm")
class ReplicaInvariantDropout(keras.layers.Dropout):
    """`keras.layers.Dropout` with masks fixed per example of the global batch (module docstring).

    Args:
        rate: float in [0, 1), fraction of the input units to drop (1 would leave the
            1 / (1 - rate) scale undefined).
        noise_shape: optional tuple, the shape of the mask, `None` entries taken from the input
            (e.g. `(None, None, 1)` drops whole token vectors of a `(batch, seq_len, hidden)`
            input). Its first entry must be `None`: the mask is drawn per example.
        seed: optional int, the layer seed (the key of its masks); `None` draws one from
            Keras's global seed (`keras.utils.set_random_seed`). Under XLA only its low 32 bits
            count (XLA's `StatelessRandomGetKeyCounter` reads 32 bits of each seed word).
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        inputs: float tensor `(batch, ...)`.
        training: bool; dropout is applied only when True.

    Returns:
        `inputs * keep / (1 - rate)`, same shape and dtype as `inputs` (inverted dropout,
        Srivastava et al. 2014, as Keras's).

    Raises:
        ValueError: if `rate` is not in [0, 1), or `noise_shape[0]` is not `None`.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(check_dropout_rate(rate, "rate"), noise_shape=noise_shape, seed=seed,
                         **kwargs)
        if self.noise_shape is not None and self.noise_shape[0] is not None:
            raise ValueError(
                "ReplicaInvariantDropout draws one mask per example: noise_shape[0] must be "
                f"None; received noise_shape={noise_shape}."
            )

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        position = _current_position()
        if position is None:
            return super().call(inputs, training=training)
        call_index = position.calls.get(id(self), 0)
        position.calls[id(self)] = call_index + 1

        shape = tf.shape(inputs)
        if self.noise_shape is not None:
            shape = tf.stack([shape[i] if dim is None else dim
                              for i, dim in enumerate(self.noise_shape)])
        shape = tf.cast(shape, tf.int64)
        values_per_example = tf.reduce_prod(shape[1:])
        counters_per_example = -(-values_per_example // _VALUES_PER_COUNTER)  # ceil
        # The layer seed (the seed generator's first word; restored with a checkpoint) and the
        # call index make the key; the example's row and the step make the counter.
        layer_seed = tf.cast(self.seed_generator.state[0], tf.int64)
        key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(
            seed=tf.stack([layer_seed, tf.constant(call_index, tf.int64)]))
        counter = tf.cast(tf.stack([position.first_example * counters_per_example,
                                    position.step]), tf.uint64)
        uniform = tf.raw_ops.StatelessRandomUniformV2(
            shape=tf.stack([shape[0], counters_per_example * _VALUES_PER_COUNTER]),
            key=key, counter=counter, alg=_PHILOX)  # (batch, padded values per example)
        uniform = tf.reshape(uniform[:, :values_per_example], shape)  # the noise shape
        keep = tf.cast(uniform >= self.rate, inputs.dtype)
        return inputs * keep * tf.cast(1.0 / (1.0 - self.rate), inputs.dtype)
