"""The TensorBoard dashboards of a real (tiny) run, read back from its event files."""

import collections
import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from keras_llm import config as config_lib
from keras_llm.training.language_model import train_language_model
from keras_llm.training.run_summaries import (config_markdown, hparams_from_config,
                                              metadata_label)
from tests.conftest import tiny_language_model_config


def read_events(directory):
    """{tag: [(step, value proto, plugin name)]} of the event files directly in `directory`,
    and the number of event files."""
    events = collections.defaultdict(list)
    paths = glob.glob(os.path.join(directory, "events.out.tfevents.*"))
    for path in paths:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                events[value.tag].append((event.step, value, value.metadata.plugin_data.plugin_name))
    return events, len(paths)


def scalar(value):
    return float(tf.make_ndarray(value.tensor))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.conftest import SHARED_DATA

    data_dir = SHARED_DATA / "tinyshakespeare"
    if not data_dir.exists():
        pytest.skip(f"shared dataset not found: {data_dir}")
    model_dir = str(tmp_path_factory.mktemp("dashboards") / "run")
    config = tiny_language_model_config(
        data_dir, train_steps=6, eval_interval=3, log_interval=3, checkpoint_interval=3,
        sample_length=0, histogram_every=3, profile_steps="2,3", eval_batches=2)
    results = train_language_model(config, model_dir, log=lambda *a: None)
    return config, model_dir, results


def test_hparams_config_table_and_final_metrics(tiny_run):
    config, model_dir, results = tiny_run
    events, files = read_events(os.path.join(model_dir, "logs"))
    assert files == 1  # One run, one writer for logs/ itself.
    assert set(events) == {"_hparams_/experiment", "_hparams_/session_start_info", "config",
                           "validation.loss", "validation.perplexity", "train.loss",
                           "tokens_per_second"}
    # The final metrics are results.json's figures at the last step.
    for tag, expected in [("validation.loss", results["validation"]["loss"]),
                          ("validation.perplexity", results["validation"]["perplexity"]),
                          ("train.loss", results["train"]["loss"])]:
        [(step, value, plugin)] = events[tag]
        assert (step, plugin) == (6, "scalars")
        assert scalar(value) == pytest.approx(expected, rel=1e-6)
    # One HParam per flag, valued as config.json says.
    saved = json.load(open(os.path.join(model_dir, "config.json")))
    [(_, value, _)] = events["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(
        value.metadata.plugin_data.content).session_start_info.hparams
    assert hparams["learning_rate"].number_value == pytest.approx(3e-3)
    assert hparams["num_layers"].number_value == 2
    assert hparams["tokenizer"].string_value == "character"
    assert hparams["histogram_every"].number_value == 3
    assert set(hparams) == set(hparams_from_config(saved))
    assert "intermediate_dim" not in hparams  # None: not an HParams value.
    [(_, value, _)] = events["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        value.metadata.plugin_data.content).experiment
    assert [m.name.tag for m in experiment.metric_infos] == list(
        config_lib.LANGUAGE_MODEL_METRICS)
    [(step, value, plugin)] = events["config"]
    text = tf.make_ndarray(value.tensor).item().decode()
    assert plugin == "text" and step == 0
    assert "| train | `--learning_rate` | 0.003 |" in text
    assert text == config_markdown(saved)


def test_train_scalars_histograms_and_graph(tiny_run):
    config, model_dir, _ = tiny_run
    events, files = read_events(os.path.join(model_dir, "logs", "train"))
    assert files == 1
    for tag in ("loss", "learning_rate", "gradient_norm", "tokens_per_second", "perplexity",
                "milliseconds_per_step", "weight_norm"):
        assert [step for step, _, _ in events[tag]] == [3, 6], tag
    assert all(scalar(value) > 0 for _, value, _ in events["milliseconds_per_step"])
    # weight_norm at step 6 is the norm of the weights checkpointed at step 6.
    path = os.path.join(model_dir, "checkpoints", "ckpt-6")
    reader = tf.train.load_checkpoint(path)
    weights = [reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
               if name.startswith("model/weights/")]
    expected = np.sqrt(sum(float(np.sum(np.square(w.astype(np.float64)))) for w in weights))
    assert scalar(events["weight_norm"][-1][1]) == pytest.approx(expected, rel=1e-5)

    weight_tags = [tag for tag in events if tag.startswith("weights/")]
    gradient_tags = [tag for tag in events if tag.startswith("gradients/")]
    assert len(weight_tags) == len(weights) == len(gradient_tags)
    assert {tag for tag in events if tag.startswith("activations/")} == {
        "activations/block_0", "activations/block_1", "activations/logits"}
    for tag in weight_tags + gradient_tags + ["activations/logits"]:
        assert [step for step, _, plugin in events[tag]] == [3, 6], tag
        assert {plugin for _, _, plugin in events[tag]} == {"histograms"}
    # A histogram counts every element: the token embedding has vocabulary x 32 of them.
    embedding = reader.get_tensor(next(name for name, _ in tf.train.list_variables(path)
                                       if "token_embedding" in name
                                       and name.startswith("model/weights/")))
    # (Keras numbers the model's name, gpt_language_model_<n>, after earlier models in a process.)
    [tag] = [tag for tag in weight_tags if tag.endswith("/token_embedding/embeddings")]
    [histogram] = [tf.make_ndarray(value.tensor) for step, value, _ in events[tag] if step == 6]
    assert histogram[:, 2].sum() == embedding.size
    assert histogram[0, 0] == pytest.approx(embedding.min()) and \
        histogram[-1, 1] == pytest.approx(embedding.max())
    # The train step's graph, traced once, at the first step.
    [(step, value, plugin)] = events["train_step"]
    assert (step, plugin) == (1, "graph_run_metadata_graph")


def test_attention_maps_profile_and_projector(tiny_run):
    config, model_dir, _ = tiny_run
    events, _ = read_events(os.path.join(model_dir, "logs", "validation"))
    sequence_length, num_heads = config.model.sequence_length, config.model.num_heads
    [(step, value, _)] = [e for e in events["attention/text"] if e[0] == 6]
    text = tf.make_ndarray(value.tensor).item().decode()
    # The first validation window: the 32 characters after the 90 % split of the corpus.
    corpus = open(os.path.join(config.data.data_dir, "input.txt"), encoding="utf-8").read()
    assert text == "```\n" + corpus[int(len(corpus) * 0.9):][:sequence_length] + "\n```"
    for layer in range(config.model.num_layers):
        images = events[f"attention/layer_{layer}"]
        assert [step for step, _, _ in images] == [3, 6]
        width, height = (int(x) for x in tf.make_ndarray(images[0][1].tensor)[:2])
        # Heads side by side, 4 pixels per token, 4-pixel gaps (attention_maps.attention_image).
        assert (width, height) == (num_heads * (4 * sequence_length + 4) - 4,
                                   4 * sequence_length)

    profiles = glob.glob(os.path.join(model_dir, "logs", "plugins", "profile", "*", "*.xplane.pb"))
    assert len(profiles) == 1 and os.path.getsize(profiles[0]) > 0

    logs = os.path.join(model_dir, "logs")
    vocabulary = json.load(open(os.path.join(model_dir, "tokenizer", "vocabulary.json")))
    labels = open(os.path.join(logs, "metadata.tsv"), encoding="utf-8").read().split("\n")[:-1]
    assert labels == [metadata_label(token) for token in vocabulary]
    assert labels[:4] == ["[PAD]", "[UNK]", "\\n", "␣"]
    projector_config = open(os.path.join(logs, "projector_config.pbtxt")).read()
    assert 'tensor_name: "token_embedding/.ATTRIBUTES/VARIABLE_VALUE"' in projector_config
    assert 'metadata_path: "metadata.tsv"' in projector_config
    saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(logs)).get_tensor(
        "token_embedding/.ATTRIBUTES/VARIABLE_VALUE")
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints", "ckpt-6"))
    name = next(name for name, _ in tf.train.list_variables(
        os.path.join(model_dir, "checkpoints", "ckpt-6"))
        if "token_embedding" in name and name.startswith("model/weights/"))
    np.testing.assert_array_equal(saved, reader.get_tensor(name))
    assert saved.shape == (len(vocabulary), config.model.hidden_dim)


def test_no_histograms_profile_by_default(tiny_shakespeare_dir, tmp_path):
    config = tiny_language_model_config(tiny_shakespeare_dir, train_steps=2, eval_interval=2,
                                        log_interval=2, sample_length=0, eval_batches=1,
                                        warmup_steps=1)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, num_layers=1))
    train_language_model(config, str(tmp_path / "run"), log=lambda *a: None)
    events, _ = read_events(str(tmp_path / "run" / "logs" / "train"))
    assert not [tag for tag in events if tag.split("/")[0] in ("weights", "gradients",
                                                                "activations")]
    assert "weight_norm" in events and "train_step" in events
    assert not os.path.exists(tmp_path / "run" / "logs" / "plugins")


def test_classifier_mistakes_and_attention(tmp_path):
    from keras_llm.training.classifier import train_classifier
    from tests.training.test_classifier import _files_config

    config = _files_config(tmp_path, "transformer", epochs=0, train_steps=4, eval_interval=2,
                           warmup_steps=1, log_interval=2, checkpoint_interval=2, keep_best="")
    model_dir = tmp_path / "run"
    results = train_classifier(config, str(model_dir), log=lambda *a: None)
    events, files = read_events(str(model_dir / "logs" / "validation"))
    assert files == 1  # The loop's and the task's summaries share one writer.
    assert [step for step, _, _ in events["misclassified"]] == [2, 4]
    assert [step for step, _, _ in events["attention/layer_0"]] == [2, 4]
    assert "attention/layer_1" not in events  # The preset has one encoder block.
    table = tf.make_ndarray(events["misclassified"][-1][1].tensor).item().decode()
    rows = table.splitlines()[2:]
    validation = results["validation"]
    mistakes = round((1 - validation["accuracy"]) * validation["num_examples"])
    assert len(rows) == min(10, mistakes) > 0
    labels = {}
    for line in (tmp_path / "dev.tsv").read_text(encoding="utf-8").splitlines():
        label, text = line.split("\t")
        labels[" ".join(text.split())] = label
    confidences = []
    for row in rows:
        text, true, predicted, p0, p1 = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert labels[text.replace("\\|", "|")] == true != predicted
        assert predicted == ("1" if float(p1) > float(p0) else "0")
        assert float(p0) + float(p1) == pytest.approx(1.0, abs=2e-4)
        confidences.append(max(float(p0), float(p1)))
    assert confidences == sorted(confidences, reverse=True)
    root, _ = read_events(str(model_dir / "logs"))
    assert {"validation.accuracy", "test.accuracy", "test.f1"} <= set(root)
    assert scalar(root["test.accuracy"][0][1]) == pytest.approx(results["test"]["accuracy"])


def test_rerunning_a_finished_run_writes_no_new_session(tiny_run):
    # Last in this file: it reruns the module's finished run, which returns its saved results.
    config, model_dir, results = tiny_run
    logs = os.path.join(model_dir, "logs")
    before = sorted(os.listdir(logs))
    lines = []
    again = train_language_model(config, model_dir, log=lines.append)
    assert again["steps"] == 6 and again["validation"] == results["validation"]
    assert sum("already finished at step 6" in line for line in lines) == 1
    assert sorted(os.listdir(logs)) == before  # No second event file, projector checkpoint.
    events, files = read_events(logs)
    assert files == 1 and len(events["_hparams_/session_start_info"]) == 1
