"""`train_classifier(config, model_dir)`: one text-classification run, end to end.

Reads the splits, learns the label mapping and a WordPiece vocabulary from the training split
only, trains with the shared loop (validation once per epoch), then evaluates the test split:
accuracy, precision, recall, F1 and the confusion matrix, printed as a table, logged to
TensorBoard (scalars and a confusion-matrix image) and written to `MODEL_DIR/results.json`.
"""

import json
import os

import numpy as np
import tensorflow as tf

from keras_llm import config as config_lib
from keras_llm.data.labelled_files import (
    DataError,
    LabelVocabulary,
    format_from_suffix,
    layout_reader_options,
    read_dataset,
    read_labelled_file,
    split_validation,
)
from keras_llm.data.tokenizers import WordPieceTokenizer, load_tokenizer
from keras_llm.evaluation.classification_metrics import (
    classification_report,
    confusion_matrix_image,
    format_report,
)
from keras_llm.models.builders import build_classifier
from keras_llm.training import loop, losses
from keras_llm.training.checkpointing import reported_checkpoint, restore_model
from keras_llm.training.run_directory import (
    RunDirectory,
    check_resumable,
    check_training_data,
    save_directory_atomically,
    training_data_fingerprint,
)
from keras_llm.training.strategy import make_strategy
from keras_llm.training.trainer import Trainer
from keras_llm.training.training_state import create_training_state


# --header flag value -> `read_labelled_file(header=...)`.
HEADER_FLAG_VALUES = {"auto": None, "true": True, "false": False}


def column_from_flag(value):
    """A --text_column / --label_column value: a 0-based index if all digits, else a name."""
    return int(value) if value.isdigit() else value


def file_reader_options(data_config):
    """The `read_labelled_file` options a run's files were read with.

    A named file layout (`sst2`, `chnsenticorp`) gives its own columns and header; `files` gives
    the configured `--file_format`, `--text_column`, `--label_column` and `--header`; class-folder
    layouts (`directory`, `imdb`) give only the encoding, so the reader's defaults apply.
    """
    options = {"encoding": data_config.encoding, "errors": data_config.errors}
    layout = layout_reader_options(data_config.dataset)
    if layout is not None:
        options.update(layout)
    elif data_config.dataset == "files":
        options.update(
            file_format=data_config.file_format,
            text_column=column_from_flag(data_config.text_column),
            label_column=column_from_flag(data_config.label_column),
            header=HEADER_FLAG_VALUES[data_config.header],
        )
    return options


def read_splits(data_config):
    """Reads the dataset's splits as `LabelledTexts`, with the reader options of the config."""
    options = {"encoding": data_config.encoding, "errors": data_config.errors,
               "skip_bad_rows": data_config.skip_bad_rows}
    if data_config.dataset != "files":
        return _with_validation(read_dataset(data_config.dataset, data_config.data_dir, **options))
    options.update(file_reader_options(data_config))
    return _with_validation(read_dataset(
        "files", data_config.data_dir, train_file=data_config.train_file,
        validation_file=data_config.validation_file, test_file=data_config.test_file, **options))


def _with_validation(splits):
    """Carves a seeded 10 % validation split from train when the data has none.

    Validation chooses the best epoch; doing that on the test split would report an optimistic
    test score.
    """
    if "validation" not in splits:
        splits = dict(splits)
        splits["train"], splits["validation"] = split_validation(splits["train"],
                                                                 validation_split=0.1)
    return splits


def encode_texts(tokenizer, texts, sequence_length):
    """Tokenizes and truncates texts.

    Returns:
        int32 `tf.RaggedTensor` (num_texts, None), at most `sequence_length` ids per row; texts
        that tokenize to nothing keep one [UNK] so every example has a real token.
    """
    ids = tokenizer.tokenize(tf.constant(texts, tf.string))[:, :sequence_length]
    empty = ids.row_lengths() == 0
    if bool(tf.reduce_any(empty)):
        filler = tf.ragged.constant([[tokenizer.unk_id]], dtype=ids.dtype)
        ids = tf.where(empty[:, None], tf.tile(filler, [ids.nrows(), 1]).to_tensor(), ids.to_tensor())
        ids = tf.RaggedTensor.from_tensor(ids, padding=tokenizer.pad_id)
    return tf.cast(ids, tf.int32)


def classification_dataset(ids, labels, global_batch_size, seed=None, start_step=0):
    """Batches (features, labels, mask), each batch padded to its longest text.

    Args:
        ids: int32 `tf.RaggedTensor` (num_examples, None) from `encode_texts`.
        labels: int array (num_examples,).
        global_batch_size: examples per batch over all replicas.
        seed: None for evaluation (one ordered pass, the last batch may be partial); an int
            for training (endless, shuffled per epoch with that seed, skipping the first
            `start_step` batches so a resumed run continues exactly).

    Returns:
        `tf.data.Dataset` of ({"token_ids": int32 (batch, seq_len), "padding_mask": bool
        (batch, seq_len)}, labels int32 (batch,), mask float32 (batch,)); padding is on the
        right with id 0.
    """
    dataset = tf.data.Dataset.from_tensor_slices((ids, tf.constant(labels, tf.int32)))
    if seed is not None:
        count = int(ids.nrows())
        dataset = (dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()
                   .skip(start_step * global_batch_size))

    def to_batch(token_ids, batch_labels):
        token_ids = token_ids.to_tensor(default_value=0)  # (batch, longest text in the batch)
        features = {"token_ids": token_ids, "padding_mask": token_ids != 0}
        return features, batch_labels, tf.ones_like(batch_labels, tf.float32)

    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return (dataset.ragged_batch(global_batch_size)
            .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE).with_options(options))


def confusion_metrics_fn(num_classes):
    """Returns a `Trainer` metrics_fn summing the confusion matrix (rows true, columns predicted)."""

    def metrics(labels, logits, mask):
        if logits.shape[-1] == 1:
            predictions = tf.cast(logits[:, 0] > 0.0, tf.int32)  # sigmoid(logit) > 0.5
        else:
            predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
        matrix = tf.math.confusion_matrix(labels, predictions, num_classes=num_classes,
                                          weights=mask, dtype=tf.float32)
        return {"confusion_matrix": matrix}

    return metrics


def _report(totals, labels_vocabulary):
    matrix = np.rint(totals["confusion_matrix"]).astype(np.int64)
    report = classification_report(matrix, labels_vocabulary.names, labels_vocabulary.positive_index)
    report["loss"] = float(totals["loss"])
    return report, matrix


def train_classifier(config, model_dir, log=print):
    """Trains and evaluates the classifier `config` describes.

    Args:
        config: `keras_llm.config.ClassifierConfig`; validated here.
        model_dir: str; receives config.json, labels.json, tokenizer/, checkpoints/, logs/ and
            results.json.
        log: a print-like function.

    Returns:
        The dict written to results.json: {"task": "classification", "validation": {...},
        "test": {"accuracy", "precision", "recall", "f1", "confusion_matrix", ...},
        "wall_seconds", ...}.

    Raises:
        ValueError: bad configuration, bad data (`DataError`, naming file and line) or a model
            directory holding another model, before anything is written.
    """
    config_lib.validate_classifier(config)
    data, model_config, train = config.data, config.model, config.train
    check_resumable(model_dir, json.loads(config_lib.to_json(config)),
                    ("dataset", "vocabulary_size", "lower_case", "sequence_length"), "classifier")
    strategy = make_strategy(train.strategy, train.num_cpu_devices, train.cluster_timeout_seconds,
                             train.cluster_resolver)
    replicas = strategy.num_replicas_in_sync
    splits = read_splits(data)
    fingerprint = training_data_fingerprint(splits["train"].texts, splits["train"].labels)
    check_training_data(model_dir, fingerprint)
    labels_path = os.path.join(model_dir, "labels.json")
    label_vocabulary = (LabelVocabulary.load(labels_path) if os.path.exists(labels_path)
                        else LabelVocabulary.from_labels(splits["train"].labels))
    if data.skip_bad_rows:
        splits = {name: label_vocabulary.filter_known(split) for name, split in splits.items()}
    for split in splits.values():
        if split.skipped:  # Nothing is dropped silently.
            log(split.skipped_summary())
    encoded_labels = {name: label_vocabulary.encode(split) for name, split in splits.items()}
    tokenizer_dir = os.path.join(model_dir, "tokenizer")
    tokenizer = (load_tokenizer(tokenizer_dir) if os.path.isdir(tokenizer_dir) else
                 WordPieceTokenizer.from_texts(splits["train"].texts, data.vocabulary_size,
                                               lower_case=data.lower_case))
    ids = {name: encode_texts(tokenizer, split.texts, data.sequence_length)
           for name, split in splits.items()}
    num_train = len(splits["train"])
    train_steps, eval_interval = loop.resolve_train_steps(train, num_train)
    if train.batch_size % (replicas * train.gradient_accumulation_steps):
        raise ValueError(
            f"--batch_size={train.batch_size} must be divisible by the {replicas} replica(s) times "
            f"--gradient_accumulation_steps={train.gradient_accumulation_steps}."
        )

    run_directory = RunDirectory(model_dir, strategy)
    run_directory.write_config(json.loads(config_lib.to_json(config)), train_steps, log)
    run_directory.write_training_data(fingerprint)
    if run_directory.is_chief:
        label_vocabulary.save(labels_path)
        if not os.path.isdir(tokenizer_dir):
            save_directory_atomically(tokenizer.save, tokenizer_dir)

    state = create_training_state(
        strategy,
        lambda: build_classifier(model_config, tokenizer.vocabulary_size, data.sequence_length,
                                 label_vocabulary.num_classes),
        {"token_ids": tf.ones((1, 4), tf.int32), "padding_mask": tf.ones((1, 4), tf.bool)},
        train, train_steps, run_directory, log,
    )
    model, optimizer, checkpoint, manager = (state.model, state.optimizer, state.checkpoint,
                                             state.manager)
    log(f"{model_config.architecture}: {model.count_params():,} parameters, vocabulary "
        f"{tokenizer.vocabulary_size}, classes {label_vocabulary.names}, "
        + ", ".join(f"{len(split):,} {name}" for name, split in splits.items())
        + f" examples, {train_steps} steps, {replicas} replica(s) ({type(strategy).__name__}).")

    trainer = Trainer(strategy, model, optimizer, losses.classification_cross_entropy,
                      train.gradient_clip_norm, train.gradient_accumulation_steps,
                      metrics_fn=confusion_metrics_fn(label_vocabulary.num_classes),
                      weight_average=state.weight_average)

    def evaluation_dataset(name):
        dataset = classification_dataset(ids[name], encoded_labels[name], train.batch_size)
        return strategy.experimental_distribute_dataset(dataset)

    validation_data = evaluation_dataset("validation")
    validation_writer = run_directory.summary_writer("validation")

    def evaluate(step):
        report, matrix = _report(trainer.evaluate(validation_data), label_vocabulary)
        with validation_writer.as_default(step=step):
            tf.summary.image("confusion_matrix",
                             confusion_matrix_image(matrix, label_vocabulary.names))
        return {name: report[name]
                for name in ("loss", "accuracy", "precision", "recall", "f1", "num_examples")}

    def train_dataset(start_step):
        return classification_dataset(ids["train"], encoded_labels["train"], train.batch_size,
                                      seed=train.seed, start_step=start_step)

    best = (loop.BestCheckpoint(checkpoint, run_directory, train.keep_best,
                                "min" if train.keep_best == "loss" else "max")
            if train.keep_best else None)
    try:
        summary = loop.run_training(
            trainer, train_dataset, evaluate, manager, run_directory,
            train_steps=train_steps, eval_interval=eval_interval, log_interval=train.log_interval,
            checkpoint_interval=min(train.checkpoint_interval, eval_interval),
            examples_per_step=train.batch_size, units_per_step=train.batch_size,
            unit_name="examples", log_perplexity=False, best=best, log=log,
            nan_recoveries=train.max_nan_recoveries if train.recover_from_nan else 0,
            nan_learning_rate_factor=train.nan_learning_rate_factor,
        )
    except BaseException:  # Interrupted or failed: still remove a worker's temporary files.
        run_directory.close()
        raise
    chosen = best.restore(log) if best is not None else None
    results = {
        "task": "classification",
        "preset": config.preset,
        "architecture": model_config.architecture,
        "dataset": data.dataset,
        "classes": label_vocabulary.names,
        "steps": summary["steps"],
        "epochs": summary["steps"] / -(-num_train // train.batch_size),
        "resumed_from_step": summary["start_step"],
        "parameters": int(model.count_params()),
        "train": {"loss": summary["train_loss"]},
        "validation": chosen["validation"] if chosen else summary["validation"],
        "selected_step": chosen["step"] if chosen else summary["steps"],
        "examples_per_second": summary["units_per_second"],
        "num_replicas": replicas,
        "nan_rollbacks": summary["nan_rollbacks"],
        "strategy": train.strategy,
    }
    if "test" in splits:
        report, matrix = _report(trainer.evaluate(evaluation_dataset("test")), label_vocabulary)
        log("test\n" + format_report(report, label_vocabulary.names))
        with run_directory.summary_writer("test").as_default(step=summary["steps"]):
            for name in ("loss", "accuracy", "precision", "recall", "f1"):
                tf.summary.scalar(name, report[name])
            tf.summary.image("confusion_matrix",
                             confusion_matrix_image(matrix, label_vocabulary.names))
        results["test"] = report
    results["wall_seconds"] = summary["wall_seconds"]
    run_directory.write_results(results, summary["start_step"] < summary["steps"], log)
    run_directory.close()
    return results


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
    model({"token_ids": tf.ones((1, 4), tf.int32), "padding_mask": tf.ones((1, 4), tf.bool)})
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
    ids = encode_texts(tokenizer, data.texts, config.data.sequence_length)
    strategy = tf.distribute.get_strategy()
    trainer = Trainer(strategy, model, None, losses.classification_cross_entropy,
                      metrics_fn=confusion_metrics_fn(labels.num_classes))
    dataset = classification_dataset(ids, labels.encode(data), batch_size)
    report, _ = _report(trainer.evaluate(dataset), labels)
    report["skipped_rows"] = len(data.skipped)
    table = format_report(report, labels.names)
    return report, (data.skipped_summary() + "\n\n" + table) if data.skipped else table
