"""`train_classifier(config, model_dir)`: one text-classification run, end to end.

Reads the splits, learns the label mapping and a WordPiece vocabulary from the training split
only, trains with the shared loop (validation once per epoch), then evaluates the test split:
accuracy, precision, recall, F1 and the confusion matrix, printed as a table, logged to
TensorBoard (scalars and a confusion-matrix image) and written to `MODEL_DIR/results.json`.
"""

import os

import numpy as np
import tensorflow as tf

from keras_llm.data.classification_dataset import (
    classification_dataset,
    encode_text_list,
    example_features,
    read_splits,
)
from keras_llm.data.features import model_inputs
from keras_llm.data.label_vocabulary import LabelVocabulary
from keras_llm.data.tokenizers import load_tokenizer
from keras_llm.data.wordpiece_tokenizer import WordPieceTokenizer
from keras_llm.evaluation.classification_metrics import confusion_matrix_image, format_report
from keras_llm.evaluation.confusion_metrics import confusion_metrics_fn, report_from_totals
from keras_llm.evaluation.misclassified import class_probabilities, mistakes_markdown
from keras_llm.models.builders import build_classifier
from keras_llm.progress import dataset_batches, evaluate_with_progress
from keras_llm.training import losses, run_setup
from keras_llm.training.dashboards import probe_batch, write_attention_maps
from keras_llm.training.run_directory import check_training_data, training_data_fingerprint
from keras_llm.training.run_summaries import CLASSIFIER_METRICS
from keras_llm.training.trainer import Trainer
from keras_llm.training.training_state import create_training_state


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
    strategy = run_setup.begin_run(config, model_dir, "classifier")
    data, model_config, train = config.data, config.model, config.train
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
    ids = {name: encode_text_list(tokenizer, split.texts, data.sequence_length,
                                  f"tokenizing {name}")
           for name, split in splits.items()}
    num_train = len(splits["train"])
    train_steps, eval_interval = run_setup.resolve_train_steps(train, num_train)
    if (finished := run_setup.finished_results(model_dir, train_steps, log)) is not None:
        return finished

    run_directory = run_setup.open_run_directory(config, model_dir, strategy, train_steps,
                                                 fingerprint, log)
    if run_directory.is_chief:
        label_vocabulary.save(labels_path)
    run_directory.save_directory("tokenizer", tokenizer.save)

    state = create_training_state(
        strategy,
        lambda: build_classifier(model_config, tokenizer.vocabulary_size, data.sequence_length,
                                 label_vocabulary.num_classes),
        example_features(), train, train_steps, run_directory, log,
    )
    model = state.model
    log(f"{model_config.architecture}: {model.count_params():,} parameters, vocabulary "
        f"{tokenizer.vocabulary_size}, classes {label_vocabulary.names}, "
        + ", ".join(f"{len(split):,} {name}" for name, split in splits.items())
        + f" examples, {train_steps} steps, {replicas} replica(s) ({type(strategy).__name__}).")

    trainer = Trainer(strategy, model, state.optimizer, losses.classification_cross_entropy,
                      train.gradient_clip_norm, train.gradient_accumulation_steps,
                      metrics_fn=confusion_metrics_fn(label_vocabulary.num_classes),
                      weight_average=state.weight_average,
                      jit_compile=run_setup.resolve_jit_compile(train, "classifier"))

    def evaluation_split(name):
        """The split `name` distributed, and its number of batches (for the progress ETA)."""
        dataset = classification_dataset(ids[name], encoded_labels[name], train.batch_size)
        return strategy.experimental_distribute_dataset(dataset), dataset_batches(dataset)

    def evaluate_split(name, split):
        distributed, num_batches = split
        return evaluate_with_progress(trainer, distributed, name, num_batches)

    validation_data = evaluation_split("validation")
    validation_writer = run_directory.summary_writer("validation")
    # Unshuffled validation batches: the histograms' batch; its first text's attention is shown.
    probe = probe_batch(classification_dataset(ids["validation"], encoded_labels["validation"],
                                               train.batch_size))

    def evaluate(step):
        report, matrix = report_from_totals(evaluate_split("validation", validation_data),
                                            label_vocabulary)
        with validation_writer.as_default(step=step):
            tf.summary.image("confusion_matrix",
                             confusion_matrix_image(matrix, label_vocabulary.names))
        if run_directory.is_chief:  # Chief-only extras: the mistakes and the attention maps.
            with trainer.evaluation_weights():
                probabilities = validation_probabilities(model, ids["validation"])
                write_attention_maps(validation_writer, model, probe[0], step, tokenizer)
            with validation_writer.as_default(step=step):
                tf.summary.text("misclassified", mistakes_markdown(
                    splits["validation"].texts, encoded_labels["validation"], probabilities,
                    label_vocabulary.names))
        return {name: report[name]
                for name in ("loss", "accuracy", "precision", "recall", "f1", "num_examples")}

    def train_dataset(start_step):
        return classification_dataset(ids["train"], encoded_labels["train"], train.batch_size,
                                      seed=train.seed, start_step=start_step)

    best = run_setup.make_best_checkpoint(train, state, run_directory)
    settings = run_setup.run_settings(
        train, train_steps, eval_interval, train.batch_size, unit_name="examples",
        log_perplexity=False, checkpoint_interval=min(train.checkpoint_interval, eval_interval))
    summaries, dashboards = run_setup.start_dashboards(config, run_directory, trainer, state,
                                                       train_steps, CLASSIFIER_METRICS, probe)
    summary = run_setup.run_training_or_close(run_directory, trainer, train_dataset, evaluate,
                                              state, settings, best=best, log=log,
                                              dashboards=dashboards)
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
        "milliseconds_per_step": summary["milliseconds_per_step"],
        "num_replicas": replicas,
        "nan_rollbacks": summary["nan_rollbacks"],
        "strategy": train.strategy,
    }
    if "test" in splits:
        report, matrix = report_from_totals(evaluate_split("test", evaluation_split("test")),
                                            label_vocabulary)
        log("test\n" + format_report(report, label_vocabulary.names))
        with run_directory.summary_writer("test").as_default(step=summary["steps"]):
            for name in ("loss", "accuracy", "precision", "recall", "f1"):
                tf.summary.scalar(name, report[name])
            tf.summary.image("confusion_matrix",
                             confusion_matrix_image(matrix, label_vocabulary.names))
        results["test"] = report
    results["wall_seconds"] = summary["wall_seconds"]
    run_directory.write_results(results, summary["start_step"] < summary["steps"], log)
    if summary["start_step"] < summary["steps"]:  # A finished run keeps its final summaries.
        with trainer.evaluation_weights():
            summaries.finish(results, summary["steps"], model, tokenizer.vocabulary)
    run_directory.close()
    return results


def validation_probabilities(model, ids, batch_size=256):
    """Class probabilities `(num_texts, num_classes)` of the model on ragged token ids
    `(num_texts, None)`, in inference mode, batch by batch on this worker alone."""
    parts = []
    for start in range(0, int(ids.nrows()), batch_size):
        rows = ids[start:start + batch_size]
        token_ids = rows.to_tensor(default_value=0)  # (batch, longest), right-padded with PAD 0
        padding_mask = tf.sequence_mask(rows.row_lengths(), tf.shape(token_ids)[1])
        logits = model(model_inputs(token_ids, padding_mask), training=False)
        parts.append(class_probabilities(np.asarray(logits)))
    return np.concatenate(parts)


