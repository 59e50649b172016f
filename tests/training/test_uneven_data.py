"""Uneven data: datasets that do not fill their last global batch, on 1, 2 and 4 replicas.

`strategy.experimental_distribute_dataset` splits a last batch of 2 examples over 4 replicas as
[1, 1, 0, 0] and a batch of 1 as [1, 0, 0, 0]: some replicas get no example at all. Evaluation
must still count every example once (the summed `count`, and a confusion matrix from
`metrics_fn`), give the one-device loss, and neither fail nor hang; training on such batches must
match one device.

Uses the four logical CPU devices that `tests/conftest.py` creates for the session.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data.language_model_dataset import evaluation_dataset
from keras_llm.config import ClassifierModelConfig, ModelConfig
from keras_llm.data.features import model_inputs
from keras_llm.models.builders import build_classifier, build_language_model
from keras_llm.training import losses
from keras_llm.training import optimizer as optimizer_lib
from keras_llm.training.trainer import Trainer
from tests.conftest import TinyLanguageModel, replica_strategy

GLOBAL_BATCH_SIZE = 8
SEQUENCE_LENGTH = 8
VOCABULARY_SIZE = 50
SEED = 1234
# 1 vs N replicas: the same float32 sums in another order. Measured: equal to the last bit.
RELATIVE_TOLERANCE = 1e-6
TOLERANCE = 1e-5  # Weights after training, as in test_replica_equivalence.
GRADIENT_CLIP_NORM = 0.02  # Below every training step's gradient norm here (asserted).


def build_model(make_model, example_input, strategy):
    keras.utils.set_random_seed(SEED)
    with strategy.scope():
        model = make_model()
        model(example_input)  # Creates the variables.
    return model


# ------------------------------------------------------------------ language-model evaluation

LANGUAGE_MODELS = {
    "gpt": lambda: build_language_model(ModelConfig(
        architecture="gpt", sequence_length=SEQUENCE_LENGTH, num_layers=1, num_heads=2,
        hidden_dim=16, dropout=0.0), VOCABULARY_SIZE),
    "lstm_language_model": lambda: build_language_model(ModelConfig(
        architecture="lstm", hidden_dim=16, num_layers=1), VOCABULARY_SIZE),
}
LANGUAGE_MODEL_INPUT = model_inputs(np.zeros((1, SEQUENCE_LENGTH), np.int32))


def token_stream(num_windows):
    """Tokens for exactly `num_windows` validation windows (stride SEQUENCE_LENGTH, +1 target)."""
    rng = np.random.RandomState(num_windows)
    return rng.randint(0, VOCABULARY_SIZE, size=num_windows * SEQUENCE_LENGTH + 1)


def eager_language_model_loss(model, tokens):
    """Mean next-token cross-entropy over all windows at once, without the trainer or tf.data."""
    windows = tokens[:-1].reshape(-1, SEQUENCE_LENGTH)  # (num_windows, T) inputs
    targets = tokens[1:].reshape(-1, SEQUENCE_LENGTH)  # (num_windows, T) next tokens
    per_token = keras.losses.sparse_categorical_crossentropy(
        targets, model(model_inputs(windows)), from_logits=True
    )  # (num_windows, T)
    return float(tf.reduce_mean(per_token))


# Validation streams in the order each trainer evaluates them: 1 window first (its only batch
# leaves every replica but one empty, and it is the batch the step is first traced on), then 18
# = 2 full batches + 2 (on 4 replicas [1, 1, 0, 0]) and 17 = 2 + 1 ([1, 0, 0, 0]).
NUM_WINDOWS = (1, 18, 17)


@functools.lru_cache(maxsize=None)
def one_device_language_model_evaluation(model_name, jit_compile=False):
    """{num_windows: Trainer.evaluate totals} on one device, each checked against a reference
    computed on all windows at once without the trainer."""
    strategy = replica_strategy(1)
    model = build_model(LANGUAGE_MODELS[model_name], LANGUAGE_MODEL_INPUT, strategy)
    trainer = Trainer(strategy, model, optimizer=None, loss_fn=losses.token_cross_entropy,
                      jit_compile=jit_compile)
    results = {}
    for num_windows in NUM_WINDOWS:
        tokens = token_stream(num_windows)
        dataset = evaluation_dataset(tokens, SEQUENCE_LENGTH, GLOBAL_BATCH_SIZE)
        results[num_windows] = trainer.evaluate(strategy.experimental_distribute_dataset(dataset))
        assert results[num_windows]["count"] == num_windows * SEQUENCE_LENGTH
        assert results[num_windows]["loss"] == pytest.approx(
            eager_language_model_loss(model, tokens), rel=1e-5
        )
    return results


@pytest.mark.parametrize("num_replicas", [pytest.param(2, marks=pytest.mark.slow), 4])
@pytest.mark.parametrize("model_name,jit_compile", [
    ("gpt", False), ("gpt", True), ("lstm_language_model", False),
    ("lstm_language_model", True)])
def test_language_model_evaluation_counts_every_target_once(model_name, jit_compile,
                                                             num_replicas):
    # Regression: a step traced on the first batch's static shapes gave the empty replicas a
    # static batch of 0, and Keras 3.15's LSTM cannot trace that (`ops.add` takes the (0, 4 *
    # units) recurrent term for a bias and emits an invalid BiasAdd). Trainer.evaluate now
    # traces on the dataset's element_spec. With jit_compile, XLA compiles the one-device
    # forward pass once per batch shape; on several replicas the pass stays uncompiled.
    one_device = one_device_language_model_evaluation(model_name)
    if jit_compile:  # XLA on one device, checked against the eager reference too.
        compiled = one_device_language_model_evaluation(model_name, jit_compile=True)
        for num_windows in NUM_WINDOWS:
            assert compiled[num_windows]["loss"] == pytest.approx(
                one_device[num_windows]["loss"], rel=1e-5)
    strategy = replica_strategy(num_replicas)
    model = build_model(LANGUAGE_MODELS[model_name], LANGUAGE_MODEL_INPUT, strategy)
    trainer = Trainer(strategy, model, optimizer=None, loss_fn=losses.token_cross_entropy,
                      jit_compile=jit_compile)
    for num_windows in NUM_WINDOWS:
        dataset = evaluation_dataset(token_stream(num_windows), SEQUENCE_LENGTH, GLOBAL_BATCH_SIZE)
        totals = trainer.evaluate(strategy.experimental_distribute_dataset(dataset))
        assert totals["count"] == num_windows * SEQUENCE_LENGTH  # Every target exactly once.
        assert totals["loss"] == pytest.approx(one_device[num_windows]["loss"],
                                               rel=RELATIVE_TOLERANCE)


# ---------------------------------------------------------------------- classifier evaluation

CLASSIFIER_INPUT = {
    "token_ids": np.ones((1, SEQUENCE_LENGTH), np.int32),
    "padding_mask": np.ones((1, SEQUENCE_LENGTH), bool),
}
CLASSIFIERS = {
    "lstm_classifier": (2, lambda: build_classifier(ClassifierModelConfig(
        architecture="lstm", embedding_dim=16, hidden_dim=16), VOCABULARY_SIZE, SEQUENCE_LENGTH,
        num_classes=2)),
    "transformer_classifier_3_classes": (3, lambda: build_classifier(ClassifierModelConfig(
        architecture="transformer", num_layers=1, num_heads=2, hidden_dim=16, dropout=0.0),
        VOCABULARY_SIZE, SEQUENCE_LENGTH, num_classes=3)),
    # Dropout and word dropout: each example's masks follow its row of the global batch.
    "transformer_classifier_dropout": (2, lambda: build_classifier(ClassifierModelConfig(
        architecture="transformer", num_layers=1, num_heads=2, hidden_dim=16, dropout=0.3,
        token_dropout=0.2), VOCABULARY_SIZE, SEQUENCE_LENGTH, num_classes=2)),
}


def classifier_examples(num_examples, num_classes, seed=0):
    """Right-padded random texts: ({"token_ids", "padding_mask"}, labels, mask), all real."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(1, SEQUENCE_LENGTH + 1, size=num_examples)
    padding_mask = np.arange(SEQUENCE_LENGTH)[None, :] < lengths[:, None]  # (N, T) bool
    token_ids = rng.randint(1, VOCABULARY_SIZE, size=(num_examples, SEQUENCE_LENGTH))
    token_ids = (token_ids * padding_mask).astype(np.int32)  # (N, T), 0 at padding
    labels = rng.randint(0, num_classes, size=num_examples).astype(np.int32)  # (N,)
    mask = np.ones(num_examples, np.float32)  # (N,)
    return {"token_ids": token_ids, "padding_mask": padding_mask}, labels, mask


def predictions(logits):
    """Class ids from logits: (batch, 1) sigmoid logit > 0, else the softmax argmax."""
    if logits.shape[-1] == 1:
        return tf.cast(logits[:, 0] > 0, tf.int32)
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def confusion_metrics_fn(num_classes):
    def metrics_fn(labels, logits, mask):
        return {"confusion_matrix": tf.math.confusion_matrix(
            labels, predictions(logits), num_classes=num_classes, weights=mask, dtype=tf.float32
        )}  # (num_classes, num_classes), rows true, columns predicted

    return metrics_fn


def eager_classifier_reference(model, features, labels, num_classes):
    """Mean loss and confusion matrix over all examples at once, without the trainer."""
    logits = model(features)
    if num_classes == 2:
        per_example = keras.losses.binary_crossentropy(
            labels[:, None].astype(np.float32), logits, from_logits=True
        )
    else:
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    matrix = np.zeros((num_classes, num_classes))
    np.add.at(matrix, (labels, predictions(logits).numpy()), 1)
    return float(tf.reduce_mean(per_example)), matrix


# As NUM_WINDOWS: 1 example first ([1, 0, 0, 0]), then 10 = 8 + 2 ([1, 1, 0, 0] on 4
# replicas) and 9 = 8 + 1.
NUM_EXAMPLES = (1, 10, 9)


def evaluate_classifier(model_name, num_replicas):
    """{num_examples: Trainer.evaluate totals (with a confusion matrix)}, plus the model."""
    num_classes, make_model = CLASSIFIERS[model_name]
    strategy = replica_strategy(num_replicas)
    model = build_model(make_model, CLASSIFIER_INPUT, strategy)
    trainer = Trainer(strategy, model, optimizer=None, loss_fn=losses.classification_cross_entropy,
                      metrics_fn=confusion_metrics_fn(num_classes))
    results = {}
    for num_examples in NUM_EXAMPLES:
        features, labels, mask = classifier_examples(num_examples, num_classes)
        dataset = tf.data.Dataset.from_tensor_slices((features, labels, mask)).batch(
            GLOBAL_BATCH_SIZE
        )
        totals = trainer.evaluate(strategy.experimental_distribute_dataset(dataset))
        matrix = totals["confusion_matrix"]
        assert totals["count"] == num_examples  # Every example exactly once.
        assert matrix.sum() == num_examples and matrix.min() >= 0
        results[num_examples] = totals
    return results, model


@functools.lru_cache(maxsize=None)
def one_device_classifier_evaluation(model_name):
    """As `evaluate_classifier` on one device, checked against a reference computed on all
    examples at once without the trainer."""
    num_classes = CLASSIFIERS[model_name][0]
    results, model = evaluate_classifier(model_name, num_replicas=1)
    for num_examples, totals in results.items():
        features, labels, _ = classifier_examples(num_examples, num_classes)
        loss, matrix = eager_classifier_reference(model, features, labels, num_classes)
        assert totals["loss"] == pytest.approx(loss, rel=1e-5)
        np.testing.assert_array_equal(totals["confusion_matrix"], matrix)
    return results


@pytest.mark.parametrize("model_name", ["lstm_classifier", "transformer_classifier_3_classes"])
def test_classifier_evaluation_counts_every_example_once(model_name):
    one_device = one_device_classifier_evaluation(model_name)
    results, _ = evaluate_classifier(model_name, num_replicas=4)
    for num_examples, totals in results.items():
        reference = one_device[num_examples]
        assert totals["loss"] == pytest.approx(reference["loss"], rel=RELATIVE_TOLERANCE)
        np.testing.assert_array_equal(totals["confusion_matrix"], reference["confusion_matrix"])


# ------------------------------------------------------------------------------- training


def tiny_language_model():
    """Embedding -> Dense: traces in a fraction of the time of the real models, for the tests
    whose subject is the data, not the model."""
    return TinyLanguageModel(VOCABULARY_SIZE)


def language_model_windows(num_windows):
    """(token_ids, targets, mask) arrays of `num_windows` windows, all targets real."""
    tokens = token_stream(num_windows)
    token_ids = tokens[:-1].reshape(-1, SEQUENCE_LENGTH).astype(np.int32)  # (num_windows, T)
    targets = tokens[1:].reshape(-1, SEQUENCE_LENGTH).astype(np.int32)  # (num_windows, T)
    return token_ids, targets, np.ones(targets.shape, np.float32)


def _train(make_model, example_input, loss_fn, strategy, dataset, num_steps,
           gradient_accumulation_steps=1):
    """`num_steps` train steps with AdamW and an active clip.

    Returns:
        (per-step losses, initial weights, final weights).
    """
    model = build_model(make_model, example_input, strategy)
    initial_weights = [v.numpy() for v in model.weights]
    with strategy.scope():
        schedule = optimizer_lib.learning_rate_schedule(1e-2, 1e-3, 0, num_steps)
        optimizer = optimizer_lib.make_adamw(model, schedule, 0.9, 0.95, 0.1)
        optimizer.build(model.trainable_variables)
    trainer = Trainer(strategy, model, optimizer, loss_fn, gradient_clip_norm=GRADIENT_CLIP_NORM,
                      gradient_accumulation_steps=gradient_accumulation_steps)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    step_losses, gradient_norms = [], []
    for _ in range(num_steps):
        outputs = trainer.train_step(iterator)
        step_losses.append(float(outputs["loss"]))
        gradient_norms.append(float(outputs["gradient_norm"]))
    assert min(gradient_norms) > GRADIENT_CLIP_NORM  # The clip is active at every step.
    return step_losses, initial_weights, [v.numpy() for v in model.weights]


def _check_same_training(model_name, dataset, num_steps, num_replicas,
                         gradient_accumulation_steps=1):
    """Trains on one device and on `num_replicas`; the losses and weights agree."""
    if model_name in CLASSIFIERS:
        model = (CLASSIFIERS[model_name][1], CLASSIFIER_INPUT,
                 losses.classification_cross_entropy)
    else:
        model = (tiny_language_model, LANGUAGE_MODEL_INPUT, losses.token_cross_entropy)
    reference_losses, initial_weights, reference_weights = _train(
        *model, replica_strategy(1), dataset, num_steps
    )
    step_losses, _, weights = _train(*model, replica_strategy(num_replicas), dataset, num_steps,
                                     gradient_accumulation_steps)
    np.testing.assert_allclose(step_losses, reference_losses, rtol=0, atol=TOLERANCE)
    for got, want in zip(weights, reference_weights):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    # Training moved the weights by far more than the tolerance: the comparison can fail.
    moved = max(np.max(np.abs(a - b)) for a, b in zip(reference_weights, initial_weights))
    assert moved > 100 * TOLERANCE


def test_training_on_a_final_partial_batch_matches_one_device():
    # 10 examples: a full batch, then 2: [1, 1, 0, 0] on 4 replicas. The empty replicas (an
    # LSTM on a batch of 0) add nothing, and the mean is over the 2 real examples.
    features, labels, mask = classifier_examples(10, num_classes=2, seed=1)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels, mask)).batch(GLOBAL_BATCH_SIZE)
    _check_same_training("lstm_classifier", dataset, num_steps=2, num_replicas=4)


def test_gradient_accumulation_on_a_final_partial_batch_matches_one_device():
    # 10 windows: 8, then 2, one on each of 2 replicas, which the trainer splits into 2
    # micro-batches (regression: the reshape into equal micro-batches failed; the trainer now
    # pads a replica's batch with mask-0 rows).
    dataset = tf.data.Dataset.from_tensor_slices(language_model_windows(10)).batch(
        GLOBAL_BATCH_SIZE
    )
    _check_same_training("tiny_language_model", dataset, num_steps=2, num_replicas=2,
                         gradient_accumulation_steps=2)


def test_training_on_repeated_data_not_a_multiple_of_the_batch_matches_one_device():
    # 13 windows, repeated then batched: batches straddle the epoch boundaries (the second holds
    # 5 windows of epoch 1 and 3 of epoch 2), on 4 replicas with 2 micro-batches of 1 each.
    dataset = tf.data.Dataset.from_tensor_slices(language_model_windows(13)).repeat().batch(
        GLOBAL_BATCH_SIZE
    )
    _check_same_training("tiny_language_model", dataset, num_steps=4, num_replicas=4,
                         gradient_accumulation_steps=2)


@pytest.mark.parametrize("num_replicas, gradient_accumulation_steps", [(2, 1), (4, 1), (2, 2)])
def test_dropout_on_a_final_partial_batch_matches_one_device(num_replicas,
                                                             gradient_accumulation_steps):
    # 15 examples: 8, then 7, split [4, 3] over 2 replicas and [2, 2, 2, 1] over 4. A replica's
    # first row is what the replicas before it hold (4, not 1 x 3), so every example draws the
    # one-device masks (regression: with replica_id x local rows, rows 3 and 4 shared a mask and
    # the loss differed by 2.8e-3). With accumulation, replica 1's 3 rows become micro-batches
    # of 2 and 1 (+ a mask-0 row).
    features, labels, mask = classifier_examples(15, num_classes=2, seed=2)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels, mask)).batch(GLOBAL_BATCH_SIZE)
    _check_same_training("transformer_classifier_dropout", dataset, num_steps=2,
                         num_replicas=num_replicas,
                         gradient_accumulation_steps=gradient_accumulation_steps)
