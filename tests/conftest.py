"""Shared fixtures: paths to the real datasets in ../shared/data and quiet TensorFlow logging."""

import keras
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("KERAS_LLM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_data_path(*parts):
    """Returns ../shared/data/<parts>, skipping the test if the shared datasets are not present."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset not found: {path}")
    return path


@pytest.fixture
def tiny_shakespeare_dir():
    return shared_data_path("tinyshakespeare")


def pytest_configure(config):
    # Four logical CPU devices for the whole test session, set before any TensorFlow op runs, so
    # tests can compare MirroredStrategy over 1, 2 and 4 replicas in one process.
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 4)


def replica_strategy(num_replicas):
    """OneDeviceStrategy for 1 replica, else MirroredStrategy over the first logical CPUs."""
    import tensorflow as tf

    if num_replicas == 1:
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    devices = [f"/cpu:{i}" for i in range(num_replicas)]
    # The cross-device ops that keras_llm.training.strategy.make_strategy uses on CPUs.
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


def tiny_language_model_config(data_dir, **train_overrides):
    """A small, fast GPT config over the shared Tiny Shakespeare (one replica).

    The train step is not XLA-compiled (`jit_compile="false"`): compiling takes several seconds
    per run, more than a tiny run's steps. Tests whose subject is the default XLA step pass
    `jit_compile="auto"` (test_language_model's end-to-end run); that the compiled step equals
    the uncompiled one is tests/training/test_replica_equivalence.py's.
    """
    from keras_llm import config as config_lib

    train = dict(strategy="one_device", batch_size=8, train_steps=30, warmup_steps=5,
                 learning_rate=3e-3, min_learning_rate=3e-4, eval_interval=15, eval_batches=4,
                 log_interval=10, checkpoint_interval=15, sample_length=8, jit_compile="false")
    train.update(train_overrides)
    return config_lib.LanguageModelConfig(
        preset="test",
        data=config_lib.DataConfig(corpus="tiny_shakespeare", data_dir=str(data_dir)),
        model=config_lib.ModelConfig(num_layers=2, num_heads=2, hidden_dim=32, sequence_length=32),
        train=config_lib.TrainConfig(**train),
    )


def event_tags(directory):
    """The summary tags written to the TensorBoard event files in `directory`."""
    import glob

    import tensorflow as tf

    tags = set()
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


class TinyLanguageModel(keras.Model):
    """Embedding -> Dense on the input dict (or bare token ids): the cheapest model with an
    (undecayed) embedding, a decayed kernel and an undecayed bias, for tests whose subject is the
    trainer or the data, not the model."""

    def __init__(self, vocabulary_size, kernel_regularizer=None):
        super().__init__(name="tiny_language_model")
        self.token_embedding = keras.layers.Embedding(vocabulary_size, 8, name="token_embedding")
        self.output_projection = keras.layers.Dense(
            vocabulary_size, kernel_regularizer=kernel_regularizer, name="output_projection")

    def call(self, inputs):
        token_ids = inputs["token_ids"] if isinstance(inputs, dict) else inputs
        return self.output_projection(self.token_embedding(token_ids))
