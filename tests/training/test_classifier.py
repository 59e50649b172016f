"""End-to-end classifier runs on a slice of the shared SST-2, and the bad-input paths."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest

from keras_llm import config as config_lib, config_validation, presets
from keras_llm.data.labelled_files import DataError
from keras_llm.evaluation.trained_runs import (
    evaluate_file,
    load_trained_classifier,
    load_trained_language_model,
)
from keras_llm.training.classifier import train_classifier
from keras_llm.training.run_directory import ModelDirectoryError
from tests.conftest import event_tags, shared_data_path


def _quiet(*args, **kwargs):
    pass


def _slice(source, target, rows):
    with open(source, encoding="utf-8") as file:
        lines = file.readlines()[:rows]
    target.write_text("".join(lines), encoding="utf-8")
    return lines


def _replace_row(path, index, row):
    """Replaces the 0-based `index`-th line of a data file with `row` (ending in a newline)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[index] = row
    path.write_text("".join(lines), encoding="utf-8")


def _files_config(tmp_path, preset="lstm_baseline", **train):
    sst2 = shared_data_path("sst2")
    for split, rows in (("train", 640), ("dev", 120), ("test", 150)):
        _slice(sst2 / f"{split}.tsv", tmp_path / f"{split}.tsv", rows)
    config = presets.classifier_config(preset)
    data = dataclasses.replace(
        config.data, dataset="files", data_dir=str(tmp_path), train_file="train.tsv",
        validation_file="dev.tsv", test_file="test.tsv", text_column="1", label_column="0",
        header="false", vocabulary_size=2000, sequence_length=48,
    )
    train_options = dict(epochs=2, strategy="one_device", log_interval=10)
    train_options.update(train)
    return dataclasses.replace(config, data=data,
                               train=dataclasses.replace(config.train, **train_options))


@pytest.mark.parametrize("preset", ["lstm_baseline", "transformer"])
def test_classifier_run_reports_consistent_metrics(tmp_path, preset):
    model_dir = str(tmp_path / "run")
    results = train_classifier(_files_config(tmp_path, preset, warmup_steps=5), model_dir, log=_quiet)

    assert results["task"] == "classification" and results["classes"] == ["0", "1"]
    assert results["steps"] == 2 * math.ceil(640 / 32)
    test = results["test"]
    matrix = np.array(test["confusion_matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == 150  # Every test example counted once.
    # Metrics recomputed by hand from the confusion matrix (positive class "1" = index 1).
    true_positive, false_positive, false_negative = matrix[1, 1], matrix[0, 1], matrix[1, 0]
    assert test["accuracy"] == pytest.approx(np.trace(matrix) / 150)
    precision = true_positive / max(true_positive + false_positive, 1)
    recall = true_positive / max(true_positive + false_negative, 1)
    assert test["precision"] == pytest.approx(precision)
    assert test["recall"] == pytest.approx(recall)
    assert test["f1"] == pytest.approx(
        0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    assert 1 <= results["selected_step"] <= results["steps"]
    assert os.path.exists(os.path.join(model_dir, "labels.json"))

    # TensorBoard: validation scalars and confusion-matrix images.
    tags = event_tags(os.path.join(model_dir, "logs", "validation"))
    assert {"accuracy", "precision", "recall", "f1", "loss", "confusion_matrix"} <= tags
    assert {"loss", "learning_rate", "gradient_norm", "examples_per_second"} <= event_tags(
        os.path.join(model_dir, "logs", "train"))

    # experiments.evaluate's function scores the same test file with the reported checkpoint.
    report, table = evaluate_file(model_dir, str(tmp_path / "test.tsv"), text_column=1,
                                  label_column=0, header=False)
    assert report["confusion_matrix"] == test["confusion_matrix"]
    assert "confusion matrix" in table
    # Without reader options the file is read as the run's files were (columns 1/0, no header).
    report, _ = evaluate_file(model_dir, str(tmp_path / "test.tsv"))
    assert report["confusion_matrix"] == test["confusion_matrix"]
    if preset == "lstm_baseline":
        _check_evaluate_reader_options(tmp_path, model_dir, test["confusion_matrix"])


def _check_evaluate_reader_options(tmp_path, model_dir, expected_matrix):
    rows = [line.rstrip("\n").split("\t")
            for line in (tmp_path / "test.tsv").read_text(encoding="utf-8").splitlines(True)]
    # Another format, named by the suffix: the run's header setting does not apply to it.
    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text("".join(json.dumps({"sentence": text, "label": label}) + "\n"
                             for label, text in rows), encoding="utf-8")
    report, _ = evaluate_file(model_dir, str(jsonl), text_column="sentence", label_column="label")
    assert report["confusion_matrix"] == expected_matrix
    # A run on the sst2 layout reads SST-2 files with no options, and with options equal to the
    # layout's own (the layout names its columns).
    config_path = os.path.join(model_dir, "config.json")
    with open(config_path, encoding="utf-8") as file:
        saved = json.load(file)
    saved["data"]["dataset"] = "sst2"
    with open(config_path, "w", encoding="utf-8") as file:
        json.dump(saved, file)
    for options in ({}, {"file_format": "tsv"}, {"text_column": "sentence", "label_column": "label"},
                    {"header": False}):
        report, _ = evaluate_file(model_dir, str(tmp_path / "test.tsv"), **options)
        assert report["confusion_matrix"] == expected_matrix, options
    # --skip_bad_rows: a row with a label the model never saw is skipped and reported.
    unseen = tmp_path / "unseen.tsv"
    unseen.write_text("7\tan unseen label\n" + (tmp_path / "test.tsv").read_text(encoding="utf-8"),
                      encoding="utf-8")
    report, table = evaluate_file(model_dir, str(unseen), skip_bad_rows=True)
    assert report["skipped_rows"] == 1 and report["confusion_matrix"] == expected_matrix
    assert table.startswith(f"{unseen}: kept 150 rows, skipped 1 bad row") and "line 1: unseen label" in table
    only_unseen = tmp_path / "only_unseen.tsv"
    only_unseen.write_text("7\tone\n8\ttwo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"only_unseen\.tsv: no row left to evaluate\..*skipped 2"):
        evaluate_file(model_dir, str(only_unseen), skip_bad_rows=True)


def test_unseen_label_in_dev_names_file_and_line(tmp_path):
    config = _files_config(tmp_path)
    _replace_row(tmp_path / "dev.tsv", 4, "7\tan unseen label\n")
    with pytest.raises(DataError, match=r"dev\.tsv, line 5: unseen label"):
        train_classifier(config, str(tmp_path / "run"), log=_quiet)
    assert not (tmp_path / "run").exists()

    skipped = dataclasses.replace(config, data=dataclasses.replace(config.data, skip_bad_rows=True),
                                  train=dataclasses.replace(config.train, epochs=1))
    messages = []
    results = train_classifier(skipped, str(tmp_path / "run"), log=messages.append)
    assert results["validation"]["num_examples"] == 119  # The unseen-label row is not counted.
    assert any("unseen label" in str(message) for message in messages)
    assert results["test"]["num_examples"] == 150


def test_bad_row_fails_with_file_and_line_or_is_skipped(tmp_path):
    config = _files_config(tmp_path)
    _replace_row(tmp_path / "train.tsv", 9, "1\tone field too many\textra\n")
    with pytest.raises(DataError, match=r"train\.tsv, line 10: extra column"):
        train_classifier(config, str(tmp_path / "run"), log=_quiet)
    messages = []
    skipped = dataclasses.replace(config, data=dataclasses.replace(config.data, skip_bad_rows=True),
                                  train=dataclasses.replace(config.train, epochs=1))
    train_classifier(skipped, str(tmp_path / "run2"), log=messages.append)
    assert any("line 10" in str(message) for message in messages)


def test_invalid_classifier_flags_are_all_reported():
    config = presets.classifier_config("transformer")
    bad = dataclasses.replace(
        config, model=dataclasses.replace(config.model, hidden_dim=30, num_heads=4),
        data=dataclasses.replace(config.data, dataset="nope"))
    with pytest.raises(ValueError) as error:
        config_validation.validate_classifier(bad)
    assert "--hidden_dim must be divisible by --num_heads=4; got 30" in str(error.value)
    assert "--dataset must be sst2 or chnsenticorp" in str(error.value)
    with pytest.raises(ValueError, match="not a classifier preset"):
        presets.classifier_config("cnn")


def test_validation_is_carved_from_train_never_taken_from_test(tmp_path):
    config = _files_config(tmp_path, epochs=1)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  validation_file=None))
    results = train_classifier(config, str(tmp_path / "run"), log=_quiet)
    assert results["validation"]["num_examples"] == 64  # 10 % of the 640 training rows.
    assert results["test"]["num_examples"] == 150


def test_keep_best_must_be_a_metric_of_the_task():
    config = presets.classifier_config("lstm_baseline")
    bad = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                keep_best="perplexity"))
    with pytest.raises(ValueError, match="--keep_best must be empty, loss, accuracy"):
        config_validation.validate_classifier(bad)
    language_model = presets.language_model_config("shakespeare_char")
    bad = dataclasses.replace(language_model, train=dataclasses.replace(
        language_model.train, keep_best="accuracy"))
    with pytest.raises(ValueError, match="--keep_best must be empty, loss or perplexity"):
        config_validation.validate(bad)


def test_run_directories_of_the_other_task_are_named_as_such(tmp_path):
    language_model_dir, classifier_dir = tmp_path / "lm", tmp_path / "classifier"
    for directory, config in ((language_model_dir, presets.language_model_config("shakespeare_char")),
                              (classifier_dir, presets.classifier_config("transformer"))):
        directory.mkdir()
        (directory / "config.json").write_text(config_lib.to_json(config), encoding="utf-8")
    with pytest.raises(ValueError, match=r"holds a language-model run .*expected a classifier run"):
        load_trained_classifier(str(language_model_dir))
    with pytest.raises(ValueError, match=r"holds a classifier run .*expected a language-model run"):
        load_trained_language_model(str(classifier_dir))
    # Training into the other task's run directory is refused by name too, before any write.
    checkpoints = language_model_dir / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n', encoding="utf-8")
    (checkpoints / "ckpt-1.index").write_bytes(b"")
    with pytest.raises(ModelDirectoryError, match=r"holds a language-model run; use another "
                                                  r"--model_dir for this classifier run"):
        train_classifier(presets.classifier_config("lstm_baseline"), str(language_model_dir),
                         log=_quiet)
    # A config.json that is neither keeps the unknown-field error, naming the file.
    (classifier_dir / "config.json").write_text('{"model": {"colour": 1}}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"config\.json.*unknown field"):
        load_trained_classifier(str(classifier_dir))


def test_resuming_on_another_training_split_is_refused(tmp_path):
    config = _files_config(tmp_path, epochs=1)
    model_dir = tmp_path / "run"
    train_classifier(config, str(model_dir), log=_quiet)
    before = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    train = tmp_path / "train.tsv"
    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    train.write_text("".join(lines[1:] + lines[:1]), encoding="utf-8")  # Same rows, other order.
    more = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=2))
    with pytest.raises(ModelDirectoryError, match=r"was trained on another training split"):
        train_classifier(more, str(model_dir), log=_quiet)
    assert {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()} == before
