"""Exports of small real runs: layout, signatures, reloaded outputs, edge requests."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_llm import config as config_lib
from keras_llm.data.classification_dataset import encode_texts
from keras_llm.data.features import model_inputs
from keras_llm.evaluation.trained_runs import load_trained_classifier, load_trained_language_model
from keras_llm.export.exporter import ExportError, export_run, next_version
from keras_llm.generation.decoding import generate
from keras_llm.training.classifier import train_classifier
from keras_llm.training.language_model import train_language_model
from tests.conftest import shared_data_path, tiny_language_model_config
from tests.training.test_classifier import _files_config


def _quiet(*args, **kwargs):
    pass


def _chnsenticorp_slice(directory, rows=200):
    """The first `rows` reviews of each ChnSentiCorp split (with the header), in `directory`."""
    directory.mkdir()
    for split in ("train", "dev", "test"):
        lines = (shared_data_path("chnsenticorp") / f"{split}.tsv").read_text(
            encoding="utf-8").splitlines(keepends=True)
        (directory / f"{split}.tsv").write_text("".join(lines[:rows + 1]), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Few-step runs on real data: a GPT and an LSTM language model on Tiny Shakespeare, an
    LSTM classifier on an SST-2 slice and a Transformer on a ChnSentiCorp slice."""
    root = tmp_path_factory.mktemp("runs")
    gpt = tiny_language_model_config(shared_data_path("tinyshakespeare"), train_steps=4,
                                     warmup_steps=1, eval_batches=1, sample_length=0,
                                     eval_interval=4, checkpoint_interval=4)
    lstm = dataclasses.replace(gpt, model=dataclasses.replace(gpt.model, architecture="lstm",
                                                              num_layers=1))
    train_language_model(gpt, str(root / "gpt"), log=_quiet)
    mirrored = dataclasses.replace(gpt, train=dataclasses.replace(gpt.train, strategy="mirrored"))
    train_language_model(mirrored, str(root / "gpt_mirrored"), log=_quiet)
    train_language_model(lstm, str(root / "lstm"), log=_quiet)
    (root / "sst2_data").mkdir()
    sst2 = _files_config(root / "sst2_data", "lstm_baseline", epochs=1, warmup_steps=1)
    train_classifier(sst2, str(root / "sst2"), log=_quiet)
    chinese = config_lib.ClassifierConfig(
        preset="test",
        data=config_lib.ClassificationDataConfig(
            dataset="chnsenticorp", data_dir=str(_chnsenticorp_slice(root / "chn_data")),
            vocabulary_size=500, sequence_length=32),
        model=config_lib.ClassifierModelConfig(architecture="transformer", num_layers=1,
                                               num_heads=2, hidden_dim=16),
        train=config_lib.TrainConfig(strategy="one_device", batch_size=32, epochs=1,
                                     warmup_steps=1, log_interval=10))
    train_classifier(chinese, str(root / "chinese"), log=_quiet)
    return root


@pytest.fixture(scope="module")
def exports(runs):
    base = runs / "exports"
    return {name: export_run(str(runs / name), str(base), log=_quiet)
            for name in ("gpt", "gpt_mirrored", "lstm", "sst2", "chinese")}


def _load(path):
    return tf.saved_model.load(path)


def test_layout_is_tf_servings_and_versions_count_up(runs, exports):
    assert exports["gpt"] == str(runs / "exports" / "gpt" / "1")
    assert sorted(os.listdir(runs / "exports" / "gpt")) == ["1"]  # no temporary folder left
    assert next_version(str(runs / "exports" / "gpt")) == 2
    with pytest.raises(ExportError, match="already exists"):
        export_run(str(runs / "gpt"), str(runs / "exports"), version=1, log=_quiet)
    with pytest.raises(ExportError, match="model_name"):
        export_run(str(runs / "gpt"), str(runs / "exports"), model_name="../x", log=_quiet)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_language_model_signatures_keep_dtypes_and_dynamic_dimensions(exports, name):
    signatures = _load(exports[name]).signatures
    assert sorted(signatures) == ["generate", "score", "serving_default"]
    generate_inputs = signatures["generate"].structured_input_signature[1]
    assert generate_inputs["prompt"] == tf.TensorSpec([None], tf.string, "prompt")
    assert generate_inputs["seed"] == tf.TensorSpec([], tf.int32, "seed")
    outputs = signatures["generate"].structured_outputs
    assert outputs["text"].dtype == tf.string and outputs["text"].shape.as_list() == [None]
    assert outputs["token_ids"].dtype == tf.int32
    assert outputs["token_ids"].shape.as_list() == [None, None]
    assert signatures["serving_default"].structured_input_signature[1]["token_ids"] == \
        tf.TensorSpec([None, None], tf.int32, "token_ids")


def _random_ids(batch, length, vocabulary_size, seed):
    return np.random.default_rng(seed).integers(1, vocabulary_size, (batch, length)).astype("int32")


@pytest.mark.parametrize("name", ["gpt", "lstm"])
@pytest.mark.parametrize("batch, length", [(1, 7), (3, 33)])
def test_reloaded_outputs_equal_the_in_memory_model(runs, exports, name, batch, length):
    model, tokenizer, _, _ = load_trained_language_model(str(runs / name))
    loaded = _load(exports[name]).signatures
    ids = _random_ids(batch, length, tokenizer.vocabulary_size, seed=length)
    log_probabilities = loaded["serving_default"](token_ids=tf.constant(ids))["log_probabilities"]
    context = ids[:, -model.max_context:] if model.max_context else ids
    expected = tf.nn.log_softmax(model(model_inputs(context))[:, -1, :]).numpy()
    np.testing.assert_allclose(log_probabilities.numpy(), expected, atol=1e-5)
    # score: the mean negative log-likelihood over windows, recomputed here with the model.
    texts = ["".join(tokenizer.detokenize(tf.constant(row)).numpy().decode()) for row in ids]
    scored = loaded["score"](text=tf.constant(texts))
    for row, text in enumerate(texts):
        row_ids = tokenizer.tokenize(tf.constant(text)).numpy()
        window = model.max_context or len(row_ids) - 1
        total = 0.0
        for start in range(0, len(row_ids) - 1, window):
            chunk = row_ids[start:start + window + 1]
            logits = model(model_inputs(chunk[None, :-1].astype("int32"))).numpy()[0]
            log_softmax = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
                -1, keepdims=True)) - logits.max(-1, keepdims=True)
            total += log_softmax[np.arange(len(chunk) - 1), chunk[1:]].sum()
        assert int(scored["num_tokens"][row]) == len(row_ids) - 1
        np.testing.assert_allclose(float(scored["log_likelihood"][row]), total, rtol=1e-5,
                                   atol=1e-3)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_greedy_generate_equals_eager_generation_token_for_token(runs, exports, name):
    model, tokenizer, _, _ = load_trained_language_model(str(runs / name))
    prompts = ["ROMEO:", "To be, or not to be, that is the question: whether 'tis nobler"]
    out = _load(exports[name]).signatures["generate"](
        prompt=tf.constant(prompts), max_new_tokens=tf.constant(40), temperature=tf.constant(0.0),
        top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(0))
    for row, prompt in enumerate(prompts):
        ids = tokenizer.tokenize(tf.constant([prompt])).to_tensor()
        eager = generate(model, ids, 40, temperature=0.0, use_cache=False).numpy()[0, ids.shape[1]:]
        assert out["token_ids"].numpy()[row].tolist() == eager.tolist()
        assert out["text"].numpy()[row].decode() == tokenizer.detokenize(
            tf.constant(eager)).numpy().decode()
    assert out["num_generated"].numpy().tolist() == [40, 40]


def test_same_seed_gives_the_same_text_on_every_load(exports):
    request = dict(prompt=tf.constant(["ROMEO:"]), max_new_tokens=tf.constant(20),
                   temperature=tf.constant(1.0), top_k=tf.constant(10), top_p=tf.constant(0.9),
                   seed=tf.constant(7))
    first = _load(exports["gpt"]).signatures["generate"](**request)["text"].numpy()
    assert _load(exports["gpt"]).signatures["generate"](**request)["text"].numpy() == first


@pytest.mark.parametrize("prompt", ["x", "A" * 10_000, "春眠不觉晓 🌸", "\n"])
def test_edge_prompts_get_a_valid_response(exports, prompt):
    out = _load(exports["gpt"]).signatures["generate"](
        prompt=tf.constant([prompt]), max_new_tokens=tf.constant(5), temperature=tf.constant(0.0),
        top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(0))
    assert out["token_ids"].shape == (1, 5)


def test_invalid_utf8_and_zero_new_tokens(exports):
    generate_fn = _load(exports["gpt"]).signatures["generate"]
    out = generate_fn(prompt=tf.constant([b"ROMEO \xff\xfe:"]), max_new_tokens=tf.constant(0),
                      temperature=tf.constant(1.0), top_k=tf.constant(5), top_p=tf.constant(0.5),
                      seed=tf.constant(1))
    assert out["token_ids"].shape == (1, 0) and out["text"].numpy().tolist() == [b""]


@pytest.mark.parametrize("inputs, message", [
    (dict(prompt=[""]), "prompt"),
    (dict(prompt=tf.constant([], tf.string)), "batch is empty"),
    (dict(prompt=["a"] * 9, max_new_tokens=4096), "split the batch"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(max_new_tokens=1_000_000), "max_new_tokens"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=float("nan")), "top_p"),
])
def test_invalid_requests_are_invalid_argument_naming_the_input(exports, inputs, message):
    request = dict(prompt=["ROMEO:"], max_new_tokens=3, temperature=1.0, top_k=0, top_p=1.0,
                   seed=0)
    request.update(inputs)
    dtypes = dict(prompt=tf.string, max_new_tokens=tf.int32, temperature=tf.float32,
                  top_k=tf.int32, top_p=tf.float32, seed=tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _load(exports["gpt"]).signatures["generate"](
            **{key: tf.constant(value, dtypes[key]) for key, value in request.items()})


@pytest.mark.parametrize("name", ["sst2", "chinese"])
def test_classifier_serves_raw_text_as_trained(runs, exports, name):
    model, tokenizer, labels, config = load_trained_classifier(str(runs / name))
    texts = ["A gripping, beautifully made film.", "", "这家酒店很好 🌸", "x" * 10_000,
             "dull and far too long"]
    signatures = _load(exports[name]).signatures
    assert sorted(signatures) == ["classify_token_ids", "serving_default"]
    out = signatures["serving_default"](text=tf.constant(texts))
    ids = encode_texts(tokenizer, texts, config.data.sequence_length).to_tensor()
    logits = model(model_inputs(ids, ids != 0)).numpy()
    positive = 1 / (1 + np.exp(-logits[:, 0]))
    np.testing.assert_allclose(out["probabilities"].numpy()[:, 1], positive, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1.0, atol=1e-6)
    expected = [labels.names[int(p > 0.5)] for p in positive]
    assert [label.decode() for label in out["label"].numpy()] == expected
    np.testing.assert_allclose(out["score"].numpy(), np.maximum(positive, 1 - positive), atol=1e-5)
    by_ids = signatures["classify_token_ids"](token_ids=ids, padding_mask=ids != 0)
    np.testing.assert_allclose(by_ids["probabilities"], out["probabilities"], atol=1e-6)


@pytest.mark.parametrize("token_ids, padding_mask, message", [
    ([[10**6]], [[True]], "token_ids must be in"),
    ([[5, 6, 7]], [[True, True]], "same shape"),
    ([[0, 0]], [[False, False]], "at least one real token"),
    ([[5] * 49], [[True] * 49], "sequence_length=48"),
    ([[0, 0]], [[True, True]], "exactly where token_ids are not 0"),
    ([[0, 5, 6]], [[False, True, True]], "right-padded"),
    (np.zeros((0, 3), "int32"), np.zeros((0, 3), bool), "batch is empty"),
])
def test_classifier_rejects_bad_token_ids(exports, token_ids, padding_mask, message):
    # Each request breaks one rule. The checks are parallel graph ops, so a check that itself
    # fails on what another rejects (comparing tensors of different shapes) shows as
    # TensorFlow's own error in some calls only: before the fix, the first ~97 calls of a
    # loaded signature gave our message and every later one "Incompatible shapes".
    classify = _load(exports["sst2"]).signatures["classify_token_ids"]
    for _ in range(200):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            classify(token_ids=tf.constant(token_ids, tf.int32),
                     padding_mask=tf.constant(padding_mask, tf.bool))


def test_rejected_requests_allocate_nothing_first(exports):
    # A huge max_new_tokens is refused before any buffer sized by it exists: at once.
    import time
    generate_fn = _load(exports["gpt"]).signatures["generate"]

    def refuse():
        with pytest.raises(tf.errors.InvalidArgumentError, match="max_new_tokens"):
            generate_fn(prompt=tf.constant(["ROMEO:"]), max_new_tokens=tf.constant(2**31 - 1),
                        temperature=tf.constant(0.0), top_k=tf.constant(0),
                        top_p=tf.constant(1.0), seed=tf.constant(0))

    refuse()  # The first call also instantiates the loaded function (over 2 s on a busy machine).
    start = time.perf_counter()
    refuse()
    assert time.perf_counter() - start < 2.0  # It took 22 s and 9 GB before the fix.


def test_score_and_next_token_refuse_what_they_cannot_answer(exports):
    signatures = _load(exports["gpt"]).signatures
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least two tokens"):
        signatures["score"](text=tf.constant(["ROMEO:", "a"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="batch is empty"):
        signatures["serving_default"](token_ids=tf.zeros((0, 3), tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 65536 tokens"):
        signatures["score"](text=tf.constant(["To be. " * 10_000]))  # 70,000 characters


def test_a_killed_exports_staging_folder_is_removed_by_the_next(runs, exports):
    stale = runs / "exports" / "gpt" / ".tmp-9-killed"
    (stale / "9").mkdir(parents=True)
    os.utime(stale, (0, 0))  # Untouched for decades.
    fresh = runs / "exports" / "gpt" / ".tmp-8-running"
    fresh.mkdir()
    export_run(str(runs / "gpt"), str(runs / "exports"), check=False, log=_quiet)
    assert not stale.exists() and fresh.exists()


def test_an_export_of_a_mirrored_run_equals_one_of_a_single_device_run(exports):
    ids = tf.constant(_random_ids(3, 20, 60, seed=1))
    single = _load(exports["gpt"]).signatures["serving_default"](token_ids=ids)
    mirrored = _load(exports["gpt_mirrored"]).signatures["serving_default"](token_ids=ids)
    np.testing.assert_allclose(mirrored["log_probabilities"], single["log_probabilities"],
                               atol=1e-5)
