"""AdamW with linear warmup and cosine decay, as in nanoGPT and GPT-2/3 training."""

import keras


def learning_rate_schedule(learning_rate, min_learning_rate, warmup_steps, train_steps):
    """Linear warmup from 0 to `learning_rate`, then cosine decay to `min_learning_rate`.

    Keras's `CosineDecay` with `warmup_target`: the rate at optimizer step s is
    `learning_rate * s / warmup_steps` during warmup, then follows half a cosine over the remaining
    `train_steps - warmup_steps` steps down to `min_learning_rate` (Loshchilov & Hutter 2017,
    SGDR, without restarts).
    """
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(train_steps - warmup_steps, 1),
        alpha=min_learning_rate / learning_rate,
    )


def is_decayed(variable, embedding_variables):
    """Weight decay applies to matrices only: not to biases, norms (ndim < 2) or embeddings.

    GPT-2/3 and nanoGPT's `configure_optimizers` leave biases and LayerNorm scales undecayed;
    embeddings are excluded too (a decayed embedding shrinks rows of rare tokens).
    """
    return len(variable.shape) >= 2 and not any(variable is e for e in embedding_variables)


def make_adamw(model, schedule, beta_1, beta_2, weight_decay):
    """Returns `keras.optimizers.AdamW` that decays only `is_decayed` variables of `model`.

    Gradient clipping is not configured here: the trainer clips the all-reduced global gradient,
    so the clip does not depend on how many replicas computed it.
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


def make_optimizer(model, train_config, train_steps):
    """The optimizer and learning-rate schedule a `TrainConfig` asks for.

    Args:
        model: the built `keras.Model` (its variables decide what is decayed).
        train_config: `keras_llm.config.TrainConfig` (optimizer, learning_rate_schedule,
            learning_rate, min_learning_rate, warmup_steps, betas, weight_decay).
        train_steps: the resolved number of optimizer steps (the cosine's length).

    Returns:
        A Keras 3 optimizer: AdamW decaying only `is_decayed` variables, or plain Adam (Kingma &
        Ba 2015, the classic classifier baseline's optimizer).
    """
    if train_config.learning_rate_schedule == "constant":
        schedule = train_config.learning_rate
    else:
        schedule = learning_rate_schedule(train_config.learning_rate,
                                          train_config.min_learning_rate,
                                          train_config.warmup_steps, train_steps)
    if train_config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=schedule, beta_1=train_config.beta_1,
                                     beta_2=train_config.beta_2)
    return make_adamw(model, schedule, train_config.beta_1, train_config.beta_2,
                      train_config.weight_decay)
