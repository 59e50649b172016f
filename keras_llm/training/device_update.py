"""Adam and AdamW updates applied on each device's copy of the weights, in one compiled call.

Why: on several replicas Keras 3.15's TensorFlow optimizer updates every mirrored variable
through `merge_call` and `strategy.extended.update`, one variable and one device at a time, as
separate TensorFlow ops that XLA cannot compile. At nanoGPT's shape on 2 logical CPU devices
that update took 13 of a 43 ms step, and the step ran at 0.83x of one device. Here the
gradients are all-reduced once in the replica step; then, on each device, one call updates
that device's copy of every variable and of Adam's moments. Every device applies the same
update to the same values, so the copies stay identical, as data parallelism requires; with
`jit_compile` each call is one XLA cluster, as the one-replica step's update is.

The arithmetic is Keras's own, op for op (`keras.optimizers.Adam.update_step` and the
optimizer base class's decoupled weight decay, Loshchilov & Hutter 2019), so a run on several
replicas takes the steps Keras's optimizer takes on one: the replica-equivalence tests compare
the two. The optimizer object still owns the state (moments, `iterations`, the learning-rate
schedule), so checkpoints are unchanged.
"""

import keras
import tensorflow as tf


def unsupported_reason(optimizer, variables):
    """Why `DeviceUpdate` cannot stand in for `optimizer.apply` on `variables`, or None if it can.

    Supported: `keras.optimizers.Adam` and `AdamW` without AMSGrad, moving averages, gradient
    accumulation, loss scaling, clipping (the trainer clips the global gradient itself) or
    constrained variables. Anything else keeps Keras's own update.

    Args:
        optimizer: a Keras optimizer; ask once it is built (Adam's moments exist from then on).
        variables: the trainable variables it updates.

    Returns:
        str naming what is not supported, or None.
    """
    if type(optimizer) not in (keras.optimizers.Adam, keras.optimizers.AdamW):
        return f"{type(optimizer).__name__} is not Keras's Adam or AdamW"
    features = {
        "amsgrad": optimizer.amsgrad,
        "use_ema": optimizer.use_ema,
        "gradient_accumulation_steps": optimizer.gradient_accumulation_steps,
        "loss_scale_factor": optimizer.loss_scale_factor,
        "clipnorm": optimizer.clipnorm,
        "clipvalue": optimizer.clipvalue,
        "global_clipnorm": optimizer.global_clipnorm,
    }
    used = [name for name, value in features.items() if value]
    if used:
        return f"the optimizer uses {', '.join(used)}"
    constrained = [v.path for v in variables if getattr(v, "constraint", None) is not None]
    if constrained:  # Keras's apply projects them after the update.
        return f"variable(s) {', '.join(constrained)} have a constraint"
    # Keras 3's own (private) names for the moments and the decay exclusions; if a later Keras
    # renames them, its own update keeps working.
    internals = ("_momentums", "_velocities", "_get_variable_index", "_use_weight_decay")
    missing = [name for name in internals if not hasattr(optimizer, name)]
    if missing:
        return f"this Keras version's {type(optimizer).__name__} has no {', '.join(missing)}"
    return None


class DeviceUpdate:
    """`optimizer`'s update of `variables`, applied on each local device of `strategy`.

    Call it in cross-replica context (in the train step's `tf.function`, outside
    `strategy.run`) with the all-reduced, clipped gradients that `strategy.run` returned.

    Args:
        strategy: a `tf.distribute.Strategy` with several replicas (`MirroredStrategy`,
            `MultiWorkerMirroredStrategy`); `variables` and `optimizer` were created in its scope.
        optimizer: a built `keras.optimizers.Adam` or `AdamW` for which `unsupported_reason` is
            None on `variables`.
        variables: the trainable variables, in the gradients' order.
        jit_compile: bool, compile each device's update with XLA.

    Raises:
        ValueError: `unsupported_reason(optimizer, variables)` is not None, or the optimizer is
            not built.
    """

    def __init__(self, strategy, optimizer, variables, jit_compile):
        if not optimizer.built:
            raise ValueError("DeviceUpdate needs a built optimizer: call "
                             "optimizer.build(model.trainable_variables) in the strategy's scope.")
        reason = unsupported_reason(optimizer, variables)
        if reason:
            raise ValueError(f"DeviceUpdate cannot apply this optimizer's update: {reason}.")
        self.strategy = strategy
        self.optimizer = optimizer
        self.variables = list(variables)
        indices = [optimizer._get_variable_index(v) for v in self.variables]
        self.momentums = [optimizer._momentums[i] for i in indices]
        self.velocities = [optimizer._velocities[i] for i in indices]
        # Decided once, as Keras decides it (its exclusion list, by variable).
        weight_decay = getattr(optimizer, "weight_decay", None) or 0.0
        self.weight_decays = [weight_decay if weight_decay and optimizer._use_weight_decay(v)
                              else 0.0 for v in self.variables]
        # One function object per device: each traces with its own device's variables.
        self.devices = list(strategy.extended.worker_devices)
        self._device_fns = [tf.function(self._update, jit_compile=jit_compile)
                            for _ in self.devices]

    def __call__(self, gradients):
        """Updates every device's copy of the variables and moments, then `iterations`.

        Args:
            gradients: list of per-replica float tensors (what `strategy.run` returns), one per
                variable: the global gradient, already summed over replicas and clipped.

        Returns:
            float32 scalar, the learning rate of this update.
        """
        learning_rate = tf.convert_to_tensor(self.optimizer.learning_rate, tf.float32)
        step = tf.cast(self.optimizer.iterations + 1, tf.float32)  # Adam's t, 1-based.

        def local(values):
            return self.strategy.experimental_local_results(values)

        per_variable = [local(_tf_variable(v)) for v in self.variables]
        per_momentum = [local(_tf_variable(m)) for m in self.momentums]
        per_velocity = [local(_tf_variable(v)) for v in self.velocities]
        per_gradient = [local(g) for g in gradients]
        for index, (device, update) in enumerate(zip(self.devices, self._device_fns)):
            with tf.device(device):
                update([v[index] for v in per_variable], [m[index] for m in per_momentum],
                       [v[index] for v in per_velocity], [g[index] for g in per_gradient],
                       learning_rate, step)
        self.optimizer.iterations.assign_add(1)
        return learning_rate

    def _update(self, variables, momentums, velocities, gradients, learning_rate, step):
        """Keras's AdamW on one device's copies: decoupled weight decay, then Adam's step."""
        optimizer = self.optimizer
        beta_1, beta_2, epsilon = optimizer.beta_1, optimizer.beta_2, optimizer.epsilon
        step_scalars = {}  # dtype -> (lr, alpha): Keras recomputes them for every variable.

        def scalars(dtype):
            if dtype not in step_scalars:
                lr = tf.cast(learning_rate, dtype)
                local_step = tf.cast(step, dtype)
                beta_1_power = tf.pow(tf.cast(beta_1, dtype), local_step)
                beta_2_power = tf.pow(tf.cast(beta_2, dtype), local_step)
                step_scalars[dtype] = (lr, lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power))
            return step_scalars[dtype]

        for variable, m, v, gradient, weight_decay in zip(
                variables, momentums, velocities, gradients, self.weight_decays):
            dtype = variable.dtype
            lr, alpha = scalars(dtype)
            gradient = tf.cast(gradient, dtype)
            value = variable.read_value()
            if weight_decay:  # The base optimizer's `_apply_weight_decay`.
                value = value - value * tf.cast(weight_decay, dtype) * lr
            # `Adam.update_step`.
            m_value, v_value = m.read_value(), v.read_value()
            new_m = m_value + (gradient - m_value) * (1 - beta_1)
            new_v = v_value + (tf.square(gradient) - v_value) * (1 - beta_2)
            m.assign(new_m)
            v.assign(new_v)
            variable.assign(value - (new_m * alpha) / (tf.sqrt(new_v) + epsilon))


def _tf_variable(variable):
    """The `tf.Variable` (here a distributed one) inside a Keras variable."""
    return variable.value if isinstance(variable, keras.Variable) else variable
