"""Replica equivalence: the same global batches give the same model on 1, 2 and 4 replicas.

Each case trains `NUM_STEPS` steps of `Trainer.train_step` with the project's AdamW (weight
decay > 0, warmup + cosine schedule) and a gradient clip below the real gradient norm, so the
clip changes every step (asserted). Every strategy reads the same `tf.data` pipeline batched
with the GLOBAL batch size through `strategy.experimental_distribute_dataset`, which splits each
global batch over the replicas. The one-replica run (`OneDeviceStrategy`) is the reference.

Tolerance: `TOLERANCE = 1e-5` (issue 4). Float32 sums taken in another order (per-replica
partial sums, then the all-reduce) differ in the last bits; over these 10 steps the largest
difference we measured was about 4e-7 in weights and 2.4e-7 in losses.

Uses the four logical CPU devices that `tests/conftest.py` creates for the session.
"""

import dataclasses
import functools
import math
from typing import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data.language_model_dataset import training_dataset
from keras_llm.config import ClassifierModelConfig, ModelConfig
from keras_llm.data.features import model_inputs
from keras_llm.models.builders import build_classifier, build_language_model
from keras_llm.training import losses
from keras_llm.training import optimizer as optimizer_lib
from keras_llm.training.trainer import Trainer
from tests.conftest import TinyLanguageModel, replica_strategy

NUM_STEPS = 10
GLOBAL_BATCH_SIZE = 8  # 8, 4 and 2 examples per replica on 1, 2 and 4 replicas.
SEQUENCE_LENGTH = 8
VOCABULARY_SIZE = 50
SEED = 1234
TOLERANCE = 1e-5

# AdamW and schedule: warm up over 2 steps, then cosine decay; weight decay large enough that
# counting it once per replica would move the weights far beyond TOLERANCE.
LEARNING_RATE = 1e-2
MIN_LEARNING_RATE = 1e-3
WARMUP_STEPS = 2
BETA_1 = 0.9
BETA_2 = 0.95
WEIGHT_DECAY = 0.1


# ----------------------------------------------------------------------------------- data


def language_model_batches():
    """Seeded (token_ids, targets, mask) global batches from the real training pipeline."""
    token_ids = np.random.RandomState(0).randint(0, VOCABULARY_SIZE, size=400)
    return training_dataset(token_ids, SEQUENCE_LENGTH, GLOBAL_BATCH_SIZE, seed=0)


def classifier_examples(num_examples, num_classes, seed=0, masked_every=5):
    """Right-padded random texts: ({"token_ids", "padding_mask"}, labels, mask) as numpy arrays.

    Lengths run from 1 to SEQUENCE_LENGTH; every `masked_every`-th example has mask 0 (it
    must add nothing to the loss, while the mean is still over the global count).
    """
    rng = np.random.RandomState(seed)
    lengths = rng.randint(1, SEQUENCE_LENGTH + 1, size=num_examples)
    padding_mask = np.arange(SEQUENCE_LENGTH)[None, :] < lengths[:, None]  # (N, T) bool
    token_ids = rng.randint(1, VOCABULARY_SIZE, size=(num_examples, SEQUENCE_LENGTH))
    token_ids = (token_ids * padding_mask).astype(np.int32)  # (N, T), 0 at padding
    labels = rng.randint(0, num_classes, size=num_examples).astype(np.int32)  # (N,)
    mask = np.ones(num_examples, np.float32)  # (N,)
    if masked_every:
        mask[::masked_every] = 0.0
    return {"token_ids": token_ids, "padding_mask": padding_mask}, labels, mask


def classifier_batches(num_classes):
    features, labels, mask = classifier_examples(GLOBAL_BATCH_SIZE * NUM_STEPS, num_classes)
    return tf.data.Dataset.from_tensor_slices((features, labels, mask)).batch(
        GLOBAL_BATCH_SIZE, drop_remainder=True
    )


LANGUAGE_MODEL_INPUT = model_inputs(np.zeros((1, SEQUENCE_LENGTH), np.int32))
CLASSIFIER_INPUT = {
    "token_ids": np.ones((1, SEQUENCE_LENGTH), np.int32),
    "padding_mask": np.ones((1, SEQUENCE_LENGTH), bool),
}


# ---------------------------------------------------------------------------------- cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One model and its data.

    make_model: () -> keras.Model, called after keras.utils.set_random_seed in the scope.
    example_input: features whose call creates the model's variables.
    make_dataset: () -> tf.data.Dataset of global batches.
    loss_fn: (targets, logits, mask) -> (loss_sum, count).
    gradient_clip_norm: below the reference run's gradient norm at every step (asserted).
    num_outputs: vocabulary size or number of classes; the untrained loss is about its log.
    """

    make_model: Callable
    example_input: object
    make_dataset: Callable
    loss_fn: Callable
    gradient_clip_norm: float
    num_outputs: int = VOCABULARY_SIZE


def gpt_case(dropout=0.0):
    return Case(
        lambda: build_language_model(ModelConfig(
            architecture="gpt", sequence_length=SEQUENCE_LENGTH, num_layers=1, num_heads=2,
            hidden_dim=16, dropout=dropout), VOCABULARY_SIZE),
        LANGUAGE_MODEL_INPUT, language_model_batches, losses.token_cross_entropy,
        gradient_clip_norm=0.5,
    )


def lstm_language_model_case(num_layers=1, dropout=0.0):
    return Case(
        lambda: build_language_model(ModelConfig(
            architecture="lstm", hidden_dim=16, num_layers=num_layers, dropout=dropout),
            VOCABULARY_SIZE),
        LANGUAGE_MODEL_INPUT, language_model_batches, losses.token_cross_entropy,
        gradient_clip_norm=0.1,
    )


def classifier_case(num_classes=2, **model):
    return Case(
        lambda: build_classifier(ClassifierModelConfig(**model), VOCABULARY_SIZE,
                                 SEQUENCE_LENGTH, num_classes=num_classes),
        CLASSIFIER_INPUT, functools.partial(classifier_batches, num_classes),
        losses.classification_cross_entropy, gradient_clip_norm=0.05, num_outputs=num_classes,
    )


CASES = {
    "gpt": gpt_case(),
    "lstm_language_model": lstm_language_model_case(),
    "lstm_classifier": classifier_case(architecture="lstm", embedding_dim=16, hidden_dim=16),
    "bidirectional_lstm_classifier_3_classes": classifier_case(
        3, architecture="bilstm", embedding_dim=16, hidden_dim=16),
    "transformer_classifier": classifier_case(
        architecture="transformer", num_layers=1, num_heads=2, hidden_dim=16),
    # With dropout: each example's masks follow its row of the global batch, not the replica or
    # micro-batch holding it (keras_llm.layers.replica_invariant_dropout). With Keras's Dropout,
    # every replica drew the same masks for its share, and these cases' tests failed.
    "gpt_dropout": gpt_case(dropout=0.2),
    # One Dropout layer, applied after each of the 2 layers: two masks per step.
    "lstm_language_model_dropout": lstm_language_model_case(num_layers=2, dropout=0.2),
    # Also word dropout: one draw per token.
    "transformer_classifier_dropout": classifier_case(
        architecture="transformer", num_layers=1, num_heads=2, hidden_dim=16, dropout=0.2,
        token_dropout=0.2),
}


@dataclasses.dataclass
class Run:
    initial_weights: list  # numpy arrays, model.weights before the first step
    steps: list  # one dict per step: "loss", "gradient_norm", "learning_rate" (floats)
    final_weights: list
    weight_names: list


def variable_names(variables):
    """Variable paths without the model's own name, which Keras uniquifies (lstm_classifier_2/)."""
    return [v.path.split("/", 1)[-1] for v in variables]


def build(case, strategy, weight_decay=WEIGHT_DECAY, warmup_steps=WARMUP_STEPS):
    """Creates model and optimizer in `strategy`'s scope, seeded so every strategy starts equal."""
    keras.utils.set_random_seed(SEED)
    with strategy.scope():
        model = case.make_model()
        model(case.example_input)  # Creates the variables.
        schedule = optimizer_lib.learning_rate_schedule(
            LEARNING_RATE, MIN_LEARNING_RATE, warmup_steps, NUM_STEPS
        )
        optimizer = optimizer_lib.make_adamw(model, schedule, BETA_1, BETA_2, weight_decay)
        optimizer.build(model.trainable_variables)
    return model, optimizer


def train(case, num_replicas, gradient_accumulation_steps=1, jit_compile=False, chunks=None):
    """Trains NUM_STEPS steps; `chunks`: steps per `Trainer.train_steps` call (None: one
    `train_step` call per step)."""
    strategy = replica_strategy(num_replicas)
    assert strategy.num_replicas_in_sync == num_replicas
    model, optimizer = build(case, strategy)
    initial_weights = [v.numpy() for v in model.weights]
    trainer = Trainer(strategy, model, optimizer, case.loss_fn,
                      gradient_clip_norm=case.gradient_clip_norm,
                      gradient_accumulation_steps=gradient_accumulation_steps,
                      jit_compile=jit_compile)
    iterator = iter(strategy.experimental_distribute_dataset(case.make_dataset()))
    steps = []
    if chunks is None:
        for _ in range(NUM_STEPS):
            outputs = trainer.train_step(iterator)
            steps.append({name: float(value) for name, value in outputs.items()})
    else:
        assert sum(chunks) == NUM_STEPS
        for chunk in chunks:
            outputs = trainer.train_steps(iterator, tf.constant(chunk))
            assert outputs["loss"].shape == (chunk,)
            steps += [{"loss": float(loss), "gradient_norm": float(norm), "learning_rate": math.nan}
                      for loss, norm in zip(outputs["loss"], outputs["gradient_norm"])]
            # The last step's rate; the others are checked through the weights they produced.
            steps[-1]["learning_rate"] = float(outputs["learning_rate"])
    assert int(optimizer.iterations.numpy()) == NUM_STEPS
    return Run(initial_weights, steps, [v.numpy() for v in model.weights],
               variable_names(model.weights))


@functools.lru_cache(maxsize=None)
def reference_run(case_name):
    """The one-replica run of a case (computed once per test session)."""
    return train(CASES[case_name], num_replicas=1)


def expected_learning_rate(step):
    """Hand-computed rate at optimizer step `step`: nanoGPT's linear warmup (above 0 from the
    first step), then cosine to the minimum."""
    if step < WARMUP_STEPS:
        return LEARNING_RATE * (step + 1) / (WARMUP_STEPS + 1)
    progress = (step - WARMUP_STEPS) / (NUM_STEPS - WARMUP_STEPS)
    return MIN_LEARNING_RATE + (LEARNING_RATE - MIN_LEARNING_RATE) * 0.5 * (
        1 + math.cos(math.pi * progress)
    )


def max_abs_difference(arrays, others):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(arrays, others))


def check_same_run(run, reference):
    assert run.weight_names == reference.weight_names
    # Same seed, same creation order: bitwise-identical initial weights on every strategy.
    for name, a, b in zip(run.weight_names, run.initial_weights, reference.initial_weights):
        np.testing.assert_array_equal(a, b, err_msg=f"initial {name}")
    for step, (got, want) in enumerate(zip(run.steps, reference.steps)):
        assert abs(got["loss"] - want["loss"]) <= TOLERANCE, (step, got, want)
        assert abs(got["gradient_norm"] - want["gradient_norm"]) <= TOLERANCE, (step, got, want)
        if not math.isnan(got["learning_rate"]):  # Chunked runs report the last step's only.
            assert got["learning_rate"] == pytest.approx(want["learning_rate"], rel=1e-6)
    for name, a, b in zip(run.weight_names, run.final_weights, reference.final_weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE, err_msg=f"final {name}")
    # Training moved the weights by far more than the tolerance: the comparison can fail.
    assert max_abs_difference(reference.final_weights, reference.initial_weights) > 100 * TOLERANCE


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_reference_run_is_sane(case_name):
    """The one-replica run: schedule as hand-computed, clip active at every step, finite loss."""
    case, run = CASES[case_name], reference_run(case_name)
    for step, outputs in enumerate(run.steps):
        assert outputs["learning_rate"] == pytest.approx(expected_learning_rate(step), rel=1e-5)
        # The clip matters: it scales every step's gradient down.
        assert outputs["gradient_norm"] > case.gradient_clip_norm, (step, outputs)
        assert math.isfinite(outputs["loss"]) and outputs["loss"] > 0
    # Random initial weights predict close to uniformly: about ln(number of outputs) nats.
    assert run.steps[0]["loss"] == pytest.approx(math.log(case.num_outputs), rel=0.1)


# Every model runs on more than one replica in the default tier: GPT (with gradient
# accumulation, below) and the LSTM classifier on 4 replicas (2 examples, then 1 per micro-batch),
# the others on 2; the rest of the matrix runs with -m slow. Tracing a 4-replica step costs 3-6 s
# of CPU per model, and the full matrix takes about 80 s on 2 cores.
DEFAULT_REPLICAS = {
    "gpt": None,  # 4 replicas with gradient accumulation, in the default tier below.
    "lstm_language_model": 2,
    "lstm_classifier": 4,
    "bidirectional_lstm_classifier_3_classes": 2,
    "transformer_classifier": 2,
    "gpt_dropout": 4,
    "lstm_language_model_dropout": 2,
    "transformer_classifier_dropout": 2,
}


def _replica_params():
    params = []
    for case_name in sorted(CASES):
        for num_replicas in (2, 4):
            marks = () if num_replicas == DEFAULT_REPLICAS[case_name] else pytest.mark.slow
            params.append(pytest.param(case_name, num_replicas, marks=marks,
                                       id=f"{case_name}-{num_replicas}_replicas"))
    return params


@pytest.mark.parametrize("case_name, num_replicas", _replica_params())
def test_same_losses_and_weights_as_one_replica(case_name, num_replicas):
    check_same_run(train(CASES[case_name], num_replicas), reference_run(case_name))


@pytest.mark.parametrize("case_name, num_replicas", [
    pytest.param("gpt", 1, marks=pytest.mark.slow, id="gpt-1_replica"),
    pytest.param("gpt", 4, id="gpt-4_replicas"),
    pytest.param("gpt_dropout", 1, marks=pytest.mark.slow, id="gpt_dropout-1_replica"),
    pytest.param("gpt_dropout", 2, id="gpt_dropout-2_replicas"),
])
def test_gradient_accumulation_matches_one_replica_without_it(case_name, num_replicas):
    # Two micro-batches per replica (4 and 1 examples on 1 and 4 replicas) give the same update
    # as the whole global batch on one replica, with the clip seeing the same global gradient;
    # with dropout, each micro-batch draws its own examples' masks (2 x 4 rows on 1 replica,
    # 2 x 2 on 2).
    run = train(CASES[case_name], num_replicas, gradient_accumulation_steps=2)
    check_same_run(run, reference_run(case_name))


def test_dropout_under_xla_matches_one_replica_under_xla():
    # XLA turns Philox's words into floats with other bits than TensorFlow's kernel, so compiled
    # and uncompiled runs draw different masks: the reference is the compiled one-replica run.
    reference = train(CASES["gpt_dropout"], 1, jit_compile=True, chunks=(4, 6))
    check_same_run(train(CASES["gpt_dropout"], 2, jit_compile=True, chunks=(4, 6)), reference)


@pytest.mark.parametrize("num_replicas", [1, 2])
def test_several_steps_per_call_give_the_same_steps(num_replicas):
    # Trainer.train_steps (steps_per_execution) runs the same step in a tf.range loop: the same
    # per-step losses and gradient norms, and the same weights, in chunks of any length.
    run = train(CASES["gpt"], num_replicas, chunks=(3, 1, 6))
    check_same_run(run, reference_run("gpt"))


@pytest.mark.parametrize("case_name, num_replicas", [
    ("gpt", 1),  # XLA compiles the whole step (forward, backward, clip, AdamW).
    ("gpt", 2),  # XLA compiles forward and backward; all-reduce and update stay outside.
    ("lstm_language_model", 1),  # --jit_compile=auto compiles the LSTM language model too.
    ("lstm_language_model", 2),
])
def test_jit_compile_matches_the_uncompiled_step(case_name, num_replicas):
    # XLA fuses and reorders float32 arithmetic, so the figures agree to rounding, not bitwise:
    # within the replica tolerance over NUM_STEPS steps of AdamW.
    run = train(CASES[case_name], num_replicas, jit_compile=True, chunks=(4, 6))
    check_same_run(run, reference_run(case_name))


# ------------------------------------------------------- weight decay and regularization


def tiny_language_model(kernel_regularizer=None):
    """Embedding -> Dense: the cheapest model with an (undecayed) embedding, a decayed kernel
    and an undecayed bias; it traces in a fraction of the time of the real models."""
    return TinyLanguageModel(VOCABULARY_SIZE, kernel_regularizer)


SINGLE_STEP_WEIGHT_DECAY = 0.5  # Large: decay counted 4 times would be ~1.5e-2 * |w| off.
# What AdamW must decay: matrices, not embeddings or biases (nanoGPT's configure_optimizers).
DECAYED = {"output_projection/kernel"}


def _adam_step(weights, gradient, learning_rate, step, decayed):
    """Hand-written AdamW update of one variable whose moments are zero (Loshchilov & Hutter
    2019), in Keras's order: decoupled decay `w -= w * weight_decay * lr`, then Adam with the
    bias correction folded into the step size, `alpha = lr * sqrt(1 - beta_2^t) / (1 -
    beta_1^t)`, `w -= alpha * m / (sqrt(v) + epsilon)`, t = step + 1.
    """
    if decayed:
        weights = weights - weights * SINGLE_STEP_WEIGHT_DECAY * learning_rate
    t = step + 1
    m = (1 - BETA_1) * gradient
    v = (1 - BETA_2) * gradient**2
    alpha = learning_rate * math.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
    return weights - alpha * m / (np.sqrt(v) + 1e-7)  # 1e-7: Keras's default epsilon.


def _cosine_learning_rate(step):
    """The schedule with warmup_steps=0: cosine from LEARNING_RATE to the minimum over NUM_STEPS."""
    cosine = 0.5 * (1 + math.cos(math.pi * step / NUM_STEPS))
    return MIN_LEARNING_RATE + (LEARNING_RATE - MIN_LEARNING_RATE) * cosine


@pytest.mark.parametrize("num_replicas", [1, 4])
def test_adamw_steps_match_hand_computed_update(num_replicas):
    """Step 0 has no gradient (every mask 0), so only weight decay moves the weights, once, not
    once per replica; step 1 is a hand-written AdamW step on the clipped mean gradient."""
    case = Case(tiny_language_model, LANGUAGE_MODEL_INPUT, None, losses.token_cross_entropy,
                gradient_clip_norm=0.1)
    strategy = replica_strategy(num_replicas)
    model, optimizer = build(case, strategy, weight_decay=SINGLE_STEP_WEIGHT_DECAY, warmup_steps=0)
    names = variable_names(model.trainable_variables)
    assert names == ["token_embedding/embeddings", "output_projection/kernel",
                     "output_projection/bias"]
    trainer = Trainer(strategy, model, optimizer, case.loss_fn,
                      gradient_clip_norm=case.gradient_clip_norm)
    batches = [[np.array(features["token_ids"]), np.array(targets), np.array(mask)]
               for features, targets, mask in language_model_batches().take(2).as_numpy_iterator()]
    batches[0][2][:] = 0.0  # The first global batch has no real target.
    token_ids, targets, mask = (np.concatenate(parts) for parts in zip(*batches))
    dataset = tf.data.Dataset.from_tensor_slices((token_ids, targets, mask)).batch(GLOBAL_BATCH_SIZE)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    w0 = [v.numpy() for v in model.trainable_variables]
    outputs = trainer.train_step(iterator)
    assert float(outputs["loss"]) == 0.0 and float(outputs["gradient_norm"]) == 0.0
    learning_rate = _cosine_learning_rate(0)
    assert float(outputs["learning_rate"]) == pytest.approx(learning_rate, rel=1e-6)
    w1 = [v.numpy() for v in model.trainable_variables]
    for name, before, after in zip(names, w0, w1):
        if name in DECAYED:
            # Once: w (1 - lr wd). Once per replica would be w (1 - lr wd)^4 on 4 replicas.
            np.testing.assert_allclose(after, before * (1 - learning_rate * SINGLE_STEP_WEIGHT_DECAY),
                                       rtol=1e-6, atol=1e-9, err_msg=name)
            assert np.max(np.abs(after - before)) > 100 * TOLERANCE
        else:
            np.testing.assert_array_equal(after, before, err_msg=name)

    # Step 1 without the trainer or a strategy: a fresh model holding w1, the mean next-token
    # cross-entropy over the global batch, its gradient clipped to the global norm.
    reference = tiny_language_model()
    reference(LANGUAGE_MODEL_INPUT)
    reference.set_weights(w1)
    batch_ids, batch_targets, _ = batches[1]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            batch_targets, reference(batch_ids), from_logits=True
        ))
    # Densify the embedding's IndexedSlices: their values repeat rows, so their norm is not
    # the gradient's norm.
    gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, reference.trainable_variables)]
    clipped, norm = tf.clip_by_global_norm(gradients, case.gradient_clip_norm)
    assert float(norm) > case.gradient_clip_norm  # The clip is active.

    outputs = trainer.train_step(iterator)
    assert float(outputs["loss"]) == pytest.approx(float(loss), rel=1e-6)
    assert float(outputs["gradient_norm"]) == pytest.approx(float(norm), rel=1e-5)
    learning_rate = _cosine_learning_rate(1)
    assert float(outputs["learning_rate"]) == pytest.approx(learning_rate, rel=1e-6)
    for name, before, gradient, variable in zip(names, w1, clipped, model.trainable_variables):
        expected = _adam_step(before, gradient.numpy(), learning_rate, step=1,
                              decayed=name in DECAYED)
        np.testing.assert_allclose(variable.numpy(), expected, rtol=0, atol=1e-6, err_msg=name)


def test_regularization_loss_counted_once():
    """A kernel regularizer (in model.losses) on 4 replicas x 2 micro-batches equals one replica.

    Every replica and micro-batch adds model.losses and the all-reduce sums them, so the trainer
    must divide them by 8 here; counted 8 times, the gradient norms and the weights after 10
    steps differ far beyond TOLERANCE.
    """
    case = Case(functools.partial(tiny_language_model, keras.regularizers.L2(0.05)),
                LANGUAGE_MODEL_INPUT, language_model_batches, losses.token_cross_entropy,
                gradient_clip_norm=0.05)
    reference = train(case, num_replicas=1)
    assert all(step["gradient_norm"] > case.gradient_clip_norm for step in reference.steps)
    check_same_run(train(case, num_replicas=4, gradient_accumulation_steps=2), reference)
