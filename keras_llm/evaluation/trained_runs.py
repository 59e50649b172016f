"""A finished (or interrupted) run, read back: its model, and evaluating a file with it.

Readers rebuild the model from the run's config.json and tokenizer/, then restore the weights
(no optimizer) of the checkpoint the run reported: `best/` if it kept one, else the latest; when
the run kept a weight average, the model gets the averages (`checkpointing.restore_model`).
Used by `experiments.sample`, `experiments.evaluate` and (later) export.
"""

import os

import tensorflow as tf

from keras_llm import config as config_lib
from keras_llm.data.classification_dataset import (
    classification_dataset,
    encode_text_list,
    example_features,
)
from keras_llm.data.features import model_inputs
from keras_llm.data.label_vocabulary import LabelVocabulary
from keras_llm.data.labelled_datasets import file_reader_options
from keras_llm.data.labelled_files import DataError, format_from_suffix, read_labelled_file
from keras_llm.data.tokenizers import load_tokenizer
from keras_llm.evaluation.classification_metrics import format_report
from keras_llm.evaluation.confusion_metrics import confusion_metrics_fn, report_from_totals
from keras_llm.models.builders import build_classifier, build_language_model
from keras_llm.progress import dataset_batches, evaluate_with_progress
from keras_llm.training import losses
from keras_llm.training.checkpointing import restore_model
from keras_llm.training.trainer import Trainer


def reported_checkpoint(model_dir):
    """The checkpoint a run reported its results from: `best/` if the run kept one, else the latest.

    Returns:
        str, a checkpoint prefix such as MODEL_DIR/best/ckpt-40.

    Raises:
        FileNotFoundError: `model_dir` holds no checkpoint.
    """
    for folder in ("best", "checkpoints"):
        path = tf.train.latest_checkpoint(os.path.join(model_dir, folder))
        if path:
            return path
    raise FileNotFoundError(f"No checkpoint in {os.path.join(model_dir, 'checkpoints')}.")


def load_trained_language_model(model_dir):
    """Rebuilds a trained language model from its run directory.

    Returns:
        (model, tokenizer, config, step): the model restored from the checkpoint the run
        reported (`best/` if it kept one, else the latest), its
        tokenizer, its `LanguageModelConfig` and the step of the checkpoint.

    Raises:
        FileNotFoundError: no config.json, tokenizer or checkpoint in `model_dir`.
        ValueError: `model_dir` holds a classifier run.
    """
    config = config_lib.load_run_config(model_dir, config_lib.LanguageModelConfig)
    latest = reported_checkpoint(model_dir)
    tokenizer = load_tokenizer(os.path.join(model_dir, "tokenizer"))
    model = build_language_model(config.model, tokenizer.vocabulary_size)
    model(model_inputs(tf.zeros((1, config.model.sequence_length), tf.int32)))
    step = restore_model(model, latest)
    return model, tokenizer, config, step


def load_trained_classifier(model_dir):
    """Rebuilds a trained classifier from its run directory.

    Returns:
        (model, tokenizer, label_vocabulary, config), the model restored from the checkpoint
        the run reported (`best/` if it kept one, else the latest).

    Raises:
        FileNotFoundError: config.json, labels.json, tokenizer/ or a checkpoint is missing.
        ValueError: `model_dir` holds a language-model run.
    """
    config = config_lib.load_run_config(model_dir, config_lib.ClassifierConfig)
    latest = reported_checkpoint(model_dir)
    labels = LabelVocabulary.load(os.path.join(model_dir, "labels.json"))
    tokenizer = load_tokenizer(os.path.join(model_dir, "tokenizer"))
    model = build_classifier(config.model, tokenizer.vocabulary_size, config.data.sequence_length,
                             labels.num_classes)
    model(example_features())
    restore_model(model, latest)
    return model, tokenizer, labels, config


def evaluate_file(model_dir, path, batch_size=64, **reader_options):
    """Evaluates a trained classifier on a labelled file.

    The file is read as the run's own files were (`file_reader_options` of its config): a model
    trained with `--dataset=sst2` reads another SST-2-style file with no options. Options given
    here override those. The format is the one given, else the one the file's suffix names, else
    the run's; when it is not the run's, the run's header setting and column names (which
    described files of that other format) are dropped, and so are the column names when
    `header=True` (the header row names the columns). With `skip_bad_rows`, rows with labels the model was not trained
    on are skipped too, and the table starts with a summary of every skipped row.

    Args:
        model_dir: str, a classifier run directory.
        path: str, the labelled TSV, CSV or JSON Lines file.
        batch_size: int, examples per evaluation batch.
        **reader_options: `read_labelled_file` options (file_format, text_column, label_column,
            header, encoding, errors, skip_bad_rows).

    Returns:
        The metrics report of `classification_report` plus "loss", and the printable table.

    Raises:
        FileNotFoundError: the run lacks config.json, labels.json, tokenizer/ or a checkpoint.
        ValueError: `model_dir` holds a language-model run, or bad options.
        DataError: a bad row (naming file and line), a label the model was not trained on, or
            (with `skip_bad_rows`) no row left.
    """
    model, tokenizer, labels, config = load_trained_classifier(model_dir)
    options = file_reader_options(config.data)
    run_format = options.get("file_format", "auto")
    if run_format == "auto" and config.data.train_file:  # Files read by their suffix.
        run_format = format_from_suffix(config.data.train_file) or run_format
    file_format = reader_options.get("file_format", "auto")
    if file_format == "auto":
        file_format = format_from_suffix(path) or run_format
    if file_format != run_format:
        options.pop("header", None)
        options.pop("column_names", None)
    if reader_options.get("header"):  # The header row names the columns.
        options.pop("column_names", None)
    options.update(reader_options, file_format=file_format)
    data = read_labelled_file(path, **options)
    if options.get("skip_bad_rows"):
        data = labels.filter_known(data)
        if not len(data):
            raise DataError(f"{path}: no row left to evaluate. {data.skipped_summary()}", path=path)
    ids = encode_text_list(tokenizer, data.texts, config.data.sequence_length)
    strategy = tf.distribute.get_strategy()
    trainer = Trainer(strategy, model, None, losses.classification_cross_entropy,
                      metrics_fn=confusion_metrics_fn(labels.num_classes))
    dataset = classification_dataset(ids, labels.encode(data), batch_size)
    report, _ = report_from_totals(
        evaluate_with_progress(trainer, dataset, os.path.basename(path), dataset_batches(dataset)),
        labels)
    report["skipped_rows"] = len(data.skipped)
    table = format_report(report, labels.names)
    return report, (data.skipped_summary() + "\n\n" + table) if data.skipped else table
