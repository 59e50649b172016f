"""AdamW (or Adam) with linear warmup, cosine decay and a rollback scale, as in nanoGPT.

The learning rate of the update at optimizer step s (0-based: Keras's `optimizer.iterations`
before the update) is `ScaledSchedule`:

    rate(s) = scale * base(s)

where `base` is a constant or `WarmupCosineDecay`, and `scale` is a variable (1.0) that a
non-finite-loss rollback lowers (`keras_llm.training.loop`) and the checkpoint saves as
`learning_rate_scale`, so a lowered rate survives a resume.
"""

import math

import keras
import tensorflow as tf


class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `learning_rate`, then half a cosine down to `min_learning_rate`.

    nanoGPT's `get_lr` (train.py), with `lr_decay_iters = train_steps`:

        s < warmup_steps:  learning_rate * (s + 1) / (warmup_steps + 1)
        otherwise:         min_learning_rate + 0.5 * (learning_rate - min_learning_rate)
                           * (1 + cos(pi * min(1, progress))),
                           progress = (s - warmup_steps) / (train_steps - warmup_steps)

    The warmup starts above 0 so that the very first update moves the weights (Keras's
    `CosineDecay(warmup_target=...)` starts at exactly 0). The cosine is SGDR's without restarts
    (Loshchilov & Hutter 2017).

    Args:
        learning_rate: float > 0, the peak rate.
        min_learning_rate: float >= 0, the rate at `train_steps` and after.
        warmup_steps: int >= 0, steps of linear warmup.
        train_steps: int, the total number of optimizer steps.

    Call arguments:
        step: int or float scalar tensor, the optimizer step s.

    Returns:
        float32 scalar tensor, the rate of the update at step s.
    """

    def __init__(self, learning_rate, min_learning_rate, warmup_steps, train_steps):
        self.learning_rate = float(learning_rate)
        self.min_learning_rate = float(min_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.train_steps = int(train_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = self.learning_rate * (step + 1.0) / (self.warmup_steps + 1.0)
        decay_steps = max(self.train_steps - self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = self.min_learning_rate + 0.5 * (self.learning_rate - self.min_learning_rate) * (
            1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "min_learning_rate": self.min_learning_rate,
                "warmup_steps": self.warmup_steps, "train_steps": self.train_steps}


class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A base rate (constant or schedule) times a variable scale: `base(step) * scale`.

    Create it in the strategy's scope: the scale variable is then mirrored like the weights.
    The compiled train step reads the variable at every step, so assigning it changes the rate
    of the next updates without retracing.

    Args:
        base: float (a constant rate) or a `keras.optimizers.schedules.LearningRateSchedule`.
        scale: float, the scale's initial value.

    Attributes:
        scale: float32 scalar `tf.Variable` named `learning_rate_scale`.
    """

    def __init__(self, base, scale=1.0):
        self.base = base if isinstance(base, keras.optimizers.schedules.LearningRateSchedule) \
            else float(base)
        self.scale = tf.Variable(float(scale), trainable=False, dtype=tf.float32,
                                 name="learning_rate_scale")

    def __call__(self, step):
        if isinstance(self.base, float):
            base = tf.constant(self.base, tf.float32)
        else:
            base = tf.cast(self.base(step), tf.float32)
        return base * tf.convert_to_tensor(self.scale)

    def get_config(self):
        base = self.base
        if not isinstance(base, float):
            base = keras.optimizers.schedules.serialize(base)
        return {"base": base, "scale": float(self.scale.numpy())}

    @classmethod
    def from_config(cls, config):
        base = config["base"]
        if isinstance(base, dict):  # Our own schedule is not registered with Keras: name it.
            base = keras.optimizers.schedules.deserialize(
                base, custom_objects={"WarmupCosineDecay": WarmupCosineDecay})
        return cls(base, config["scale"])


def learning_rate_schedule(learning_rate, min_learning_rate, warmup_steps, train_steps):
    """`WarmupCosineDecay(learning_rate, min_learning_rate, warmup_steps, train_steps)`."""
    return WarmupCosineDecay(learning_rate, min_learning_rate, warmup_steps, train_steps)


def make_schedule(train_config, train_steps):
    """The `ScaledSchedule` a `TrainConfig` asks for; call it in the strategy's scope.

    Args:
        train_config: `keras_llm.config.TrainConfig` (learning_rate_schedule, learning_rate,
            min_learning_rate, warmup_steps).
        train_steps: the resolved number of optimizer steps (the cosine's length).
    """
    if train_config.learning_rate_schedule == "constant":
        return ScaledSchedule(train_config.learning_rate)
    return ScaledSchedule(learning_rate_schedule(
        train_config.learning_rate, train_config.min_learning_rate, train_config.warmup_steps,
        train_steps))


def is_decayed(variable, embedding_variables):
    """Weight decay applies to matrices only: not to biases, norms (ndim < 2) or embeddings.

    GPT-2/3 and nanoGPT leave biases and LayerNorm scales undecayed. nanoGPT's
    `configure_optimizers` does decay its embeddings (`wte`, `wpe`: it decays every parameter
    with `dim() >= 2`); we do not, as minGPT does not (its `configure_optimizers` puts
    `nn.Embedding` weights in the no-decay group): decoupled decay shrinks every row of an
    embedding at every step, while only the rows of the tokens in the batch get a gradient, so
    the rows of rare tokens drift towards zero between their updates.
    """
    return len(variable.shape) >= 2 and not any(variable is e for e in embedding_variables)


def make_adamw(model, schedule, beta_1, beta_2, weight_decay):
    """Returns `keras.optimizers.AdamW` that decays only `is_decayed` variables of `model`.

    Gradient clipping is not configured here: the trainer clips the all-reduced global gradient,
    so the clip does not depend on how many replicas computed it.

    Args:
        model: a built `keras.Model`.
        schedule: float or `LearningRateSchedule`, the learning rate.
        beta_1, beta_2: Adam's moment decays.
        weight_decay: float, AdamW's decoupled decay of the `is_decayed` variables.
    """
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, beta_1=beta_1, beta_2=beta_2, weight_decay=weight_decay
    )
    embeddings = [
        layer.embeddings for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.Embedding)
    ]
    optimizer.exclude_from_weight_decay(
        var_list=[v for v in model.trainable_variables if not is_decayed(v, embeddings)]
    )
    return optimizer


def make_optimizer(model, train_config, schedule):
    """The optimizer a `TrainConfig` asks for, with the learning rate `schedule`.

    Args:
        model: the built `keras.Model` (its variables decide what is decayed).
        train_config: `keras_llm.config.TrainConfig` (optimizer, beta_1, beta_2, weight_decay).
        schedule: the learning rate, usually `make_schedule(train_config, train_steps)`.

    Returns:
        A Keras 3 optimizer: AdamW decaying only `is_decayed` variables, or plain Adam (Kingma &
        Ba 2015, the classic classifier baseline's optimizer).
    """
    if train_config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=schedule, beta_1=train_config.beta_1,
                                     beta_2=train_config.beta_2)
    return make_adamw(model, schedule, train_config.beta_1, train_config.beta_2,
                      train_config.weight_decay)
