"""An exponential moving average of the weights, for evaluation and inference (Polyak averaging).

Averaging the iterates of stochastic gradient descent gives a better estimate than the last
iterate (Polyak & Juditsky 1992, "Acceleration of stochastic approximation by averaging"); in
deep learning the exponential moving average (EMA) of the weights is the usual form: TF's
`tf.train.ExponentialMovingAverage`, Keras's `Optimizer(use_ema=True)`, and e.g. Inception-v3
and EfficientNet evaluate with it. Training keeps updating the raw weights; the average is what
is evaluated, kept as best, sampled from and scored by `experiments.evaluate`. On a small dataset it also makes the
validation score vary less from one evaluation to the next, so choosing the best one overfits
the validation split less.

After optimizer step t the average is the exponentially weighted mean of the weights seen so
far, bias-corrected as Adam's moments are (Kingma & Ba 2015, sec. 3):

    m_t = decay * m_{t-1} + (1 - decay) * weights_t,   m_0 = 0,   average_t = m_t / (1 - decay^t),

kept directly as `average_t = average_{t-1} + rate_t * (weights_t - average_{t-1})` with
`rate_t = (1 - decay) / (1 - decay^t)` (1 at the first step). It spans about 1 / (1 - decay)
steps (0.999: ~1,000), and thanks to the correction a run shorter than that gets the mean of its
own iterates rather than a mix weighted towards the initial weights. Why not Keras's `use_ema`:
the average is needed *during* training, swapped in for each evaluation and out again, and Keras
exposes it only through `finalize_variable_values` (a one-way overwrite at the end of `fit`) or
a private attribute. Here the averages are plain variables the checkpoint names
(`weight_average/...`, with the update count), so a resumed run continues them exactly and
readers restore them as the model's weights (`checkpointing.restore_model`).
"""

import contextlib

import tensorflow as tf

from keras_llm.training.checkpointing import weight_name


def _tf_variable(variable):
    """The `tf.Variable` (a `MirroredVariable` under a strategy) behind a Keras variable."""
    return getattr(variable, "value", variable) if not isinstance(variable, tf.Variable) else variable


class WeightAverage:
    """The exponential moving average of a model's trainable weights under a strategy.

    Create it in `strategy.scope()` after the model is built; call `update()` in cross-replica
    context after every optimizer step (the `Trainer` does), and evaluate inside `swapped_in()`.

    Args:
        strategy: the run's `tf.distribute.Strategy`; the averages are mirrored like the weights.
        model: a built `keras.Model`; its trainable weights are averaged.
        decay: float in (0, 1), the weight of the previous average at each step.

    Attributes:
        averages: dict weight name (the checkpoint name, see `checkpointing.weight_name`) ->
            `tf.Variable` holding the average, float32 like the weight; copies of the weights
            until the first update.
        num_updates: int64 `tf.Variable`, the updates so far (t above).

    Raises:
        ValueError: `decay` outside (0, 1).
    """

    def __init__(self, strategy, model, decay):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--weight_average_decay must be in (0, 1) to average; got {decay!r}.")
        self.strategy = strategy
        self.decay = float(decay)
        self._weights = [_tf_variable(v) for v in model.trainable_weights]
        with strategy.scope():
            self.averages = {
                weight_name(variable): tf.Variable(
                    _tf_variable(variable).read_value(), trainable=False,
                    name=weight_name(variable).replace("/", "_") + "_average")
                for variable in model.trainable_weights
            }
            self.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False,
                                           name="weight_average_updates")
        self._averages = list(self.averages.values())

    def update(self):
        """One bias-corrected step of the average towards the current weights, on every device.

        Call in cross-replica context (after `strategy.run`), inside or outside `tf.function`.
        Each device updates its own copy from its own copy of the weights, which the optimizer
        keeps identical, so no communication is needed.
        """
        step = tf.cast(self.num_updates + 1, tf.float32)
        decay = tf.constant(self.decay, tf.float32)  # One precision, so the first rate is 1.
        rate = (1.0 - decay) / (1.0 - tf.pow(decay, step))

        def update_average(average, weights):
            return average.assign_add(rate * (weights - average))

        for average, weights in zip(self._averages, self._weights):
            self.strategy.extended.update(average, update_average, args=(weights,), group=False)
        self.num_updates.assign_add(1)

    def restart(self):
        """Starts the average afresh: copies of the current weights, zero updates (eager)."""
        for average, weights in zip(self._averages, self._weights):
            average.assign(tf.identity(weights))
        self.num_updates.assign(0)

    def _swap(self):
        for average, weights in zip(self._averages, self._weights):
            current = tf.identity(weights)  # Copies of a mirrored variable are identical.
            weights.assign(average)
            average.assign(current)

    @contextlib.contextmanager
    def swapped_in(self):
        """Within the block the model holds the averaged weights; after it, the raw ones again.

        Eager only (between training steps). The swap is exact: values are moved, not recomputed.
        """
        self._swap()
        try:
            yield
        finally:
            self._swap()
