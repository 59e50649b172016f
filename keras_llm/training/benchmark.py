"""Times the real training step on synthetic data (see experiments/benchmark_train.py)."""

import time

import keras
import numpy as np
import tensorflow as tf

from keras_llm.data.features import model_inputs
from keras_llm.models.builders import build_language_model
from keras_llm.training import losses, optimizer as optimizer_lib
from keras_llm.training.strategy import make_strategy
from keras_llm.training.trainer import Trainer


def benchmark_train_step(config, vocabulary_size, steps, warmup_steps):
    """Runs `warmup_steps` untimed, then `steps` timed training steps.

    Returns:
        dict: "ms_per_step" (milliseconds), "tokens_per_second", "parameters", "num_replicas",
        "strategy" (class name).
    """
    model_config, train = config.model, config.train
    strategy = make_strategy(train.strategy, train.num_cpu_devices, train.cluster_timeout_seconds,
                             train.cluster_resolver)
    keras.utils.set_random_seed(train.seed)
    shape = (train.batch_size, model_config.sequence_length)
    ids = np.random.default_rng(train.seed).integers(0, vocabulary_size, size=(64, *shape))
    dataset = tf.data.Dataset.from_tensor_slices(
        (model_inputs(ids.astype(np.int32), np.ones(ids.shape, bool)),
         np.roll(ids, -1, axis=-1).astype(np.int32), np.ones(ids.shape, np.float32))
    ).repeat().prefetch(tf.data.AUTOTUNE)
    with strategy.scope():
        model = build_language_model(model_config, vocabulary_size)
        model(model_inputs(tf.zeros((1, model_config.sequence_length), tf.int32)))
        # The optimizer training would build from the same flags (--optimizer, betas, decay,
        # schedule), so the timed step is the trained one.
        optimizer = optimizer_lib.make_optimizer(
            model, train, optimizer_lib.make_schedule(train, train.train_steps))
    trainer = Trainer(strategy, model, optimizer, losses.token_cross_entropy,
                      train.gradient_clip_norm, train.gradient_accumulation_steps)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    for _ in range(warmup_steps):
        trainer.train_step(iterator)["loss"].numpy()
    start = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step(iterator)["loss"]
        loss.numpy()  # As in training: the loss is read every step.
    seconds = time.perf_counter() - start
    return {
        "ms_per_step": 1000 * seconds / steps,
        "tokens_per_second": steps * shape[0] * shape[1] / seconds,
        "parameters": int(model.count_params()),
        "num_replicas": strategy.num_replicas_in_sync,
        "strategy": type(strategy).__name__,
    }
