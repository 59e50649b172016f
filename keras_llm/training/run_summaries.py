"""What a run writes to TensorBoard once, beside the step-by-step scalars: HParams, the
resolved configuration as a table, final metrics, and the token-embedding projector.

All of it goes into `MODEL_DIR/logs/` itself (the run's root writer, chief only), so:

- every run is one HParams *session*, and any set of runs under one `tensorboard --logdir`
  (e.g. a sweep's folder) compares on the HParams dashboard; a session's metric
  `validation.loss` is the scalar of that tag in `logs/`, written by `write_final_metrics`
  from the run's results.json figures (the best checkpoint's, with `--keep_best`);
- the projector finds its `projector_config.pbtxt`, checkpoint and `metadata.tsv` in a folder
  that holds event files, as its plugin requires.

Keras 3's `TensorBoard(embeddings_freq=...)` writes the embedding as `.weights.h5` while its
projector config names a TF checkpoint (keras-team/keras#20210), and the HParams
`KerasCallback` needs `Model.fit`; this module follows the TF2 recipes instead
(`tensorboard.plugins.hparams.api`, `tf.train.Checkpoint` + `projector.visualize_embeddings`).
"""

import os

import tensorflow as tf
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api as hp

from keras_llm import config as config_lib
from keras_llm.sweep.leaderboard import metric_value

LANGUAGE_MODEL_METRICS = config_lib.LANGUAGE_MODEL_METRICS
CLASSIFIER_METRICS = config_lib.CLASSIFIER_METRICS
# The embedding's name in the projector checkpoint; the projector config names its tensor.
EMBEDDING_NAME = "token_embedding"
PROJECTOR_TENSOR = f"{EMBEDDING_NAME}/.ATTRIBUTES/VARIABLE_VALUE"


def hparams_from_config(config_dict):
    """The HParams of a resolved config: one per flag, named as the flag.

    Args:
        config_dict: the config as nested dicts (config.json): top-level `preset` and the
            sections `data`, `model`, `train` of field -> value.

    Returns:
        dict flag name -> bool, int, float or str; fields whose value is None (e.g. a default
        `intermediate_dim`) are left out, as HParams values cannot be None.
    """
    values = {}
    for name, value in config_dict.items():
        items = value.items() if isinstance(value, dict) else [(name, value)]
        for field, field_value in items:
            if field_value is not None:
                values[field] = field_value
    return values


def write_hparams(writer, config_dict, metrics, step=0):
    """Writes `hp.hparams_config` (every flag, `metrics`) and `hp.hparams` of this run.

    Args:
        writer: the run's root summary writer (`RunDirectory.summary_writer("")`).
        config_dict: the resolved config as nested dicts.
        metrics: dotted metric tags, e.g. `LANGUAGE_MODEL_METRICS`.
        step: int, the step the session starts at.
    """
    values = hparams_from_config(config_dict)
    with writer.as_default(step=step):
        hp.hparams_config(hparams=[hp.HParam(name) for name in sorted(values)],
                          metrics=[hp.Metric(tag, display_name=tag) for tag in metrics])
        hp.hparams(values)
    writer.flush()


def config_markdown(config_dict):
    """The resolved config as a Markdown table: section, flag (in backticks, so Markdown keeps
    "--"), value."""
    rows = ["| section | flag | value |", "|---|---|---|"]
    for section, values in config_dict.items():
        items = values.items() if isinstance(values, dict) else [(section, values)]
        for name, value in sorted(items):
            rows.append(f"| {section if isinstance(values, dict) else ''} | `--{name}` | "
                        f"{'' if value is None else str(value).replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def write_config_text(writer, config_dict, step=0):
    """Writes the `config` text summary (`config_markdown`) at `step`."""
    with writer.as_default(step=step):
        tf.summary.text("config", config_markdown(config_dict))
    writer.flush()


def write_final_metrics(writer, results, metrics, step):
    """Writes each metric of `metrics` found in `results` as a scalar of that tag at `step`.

    Returns:
        dict tag -> float of what was written.
    """
    written = {}
    with writer.as_default(step=step):
        for tag in metrics:
            value = metric_value(results, tag)
            if value is not None:
                tf.summary.scalar(tag, value)
                written[tag] = value
    writer.flush()
    return written


def metadata_label(token):
    """A vocabulary entry as one visible metadata.tsv cell: "\\n" for a newline, "␣" for a
    space; tabs and other control characters escaped."""
    if token == " ":
        return "␣"
    return token.encode("unicode_escape").decode("ascii") if not token.isprintable() else token


def write_projector(log_dir, embeddings, vocabulary):
    """Writes the token embeddings for TensorBoard's projector, labelled by the vocabulary.

    Files in `log_dir`: `embedding.ckpt-N.*` and `checkpoint` (a `tf.train.Checkpoint` holding
    one variable, `EMBEDDING_NAME`), `metadata.tsv` (one label per row, no header: the
    projector's single-column format) and `projector_config.pbtxt`.

    Args:
        log_dir: str, the run's `MODEL_DIR/logs` (it must hold event files for the plugin).
        embeddings: float array `(vocabulary_size, embedding_dim)`.
        vocabulary: list of str, id -> token, `len(vocabulary) == vocabulary_size`.

    Raises:
        ValueError: the vocabulary and the embedding rows differ in number.
    """
    embeddings = tf.convert_to_tensor(embeddings, tf.float32)
    if len(vocabulary) != embeddings.shape[0]:
        raise ValueError(f"The vocabulary has {len(vocabulary)} tokens but the embedding has "
                         f"{embeddings.shape[0]} rows.")
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "metadata.tsv"), "w", encoding="utf-8") as file:
        file.writelines(metadata_label(token) + "\n" for token in vocabulary)
    checkpoint = tf.train.Checkpoint(**{EMBEDDING_NAME: tf.Variable(embeddings)})
    checkpoint.save(os.path.join(log_dir, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = PROJECTOR_TENSOR
    embedding.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(log_dir, config)


class RunSummaries:
    """The once-per-run summaries of one run, written by the chief alone.

    Args:
        run_directory: the run's `RunDirectory` (a non-chief gets a no-op writer and writes
            no projector files).
        config_dict: the resolved config as nested dicts.
        metrics: the task's metric tags (`LANGUAGE_MODEL_METRICS`, `CLASSIFIER_METRICS`).
    """

    def __init__(self, run_directory, config_dict, metrics):
        self.run_directory = run_directory
        self.config_dict = config_dict
        self.metrics = metrics

    @property
    def writer(self):
        # Opened on first use: a writer creates its event file at once, and a finished run
        # that is rerun writes nothing here.
        return self.run_directory.summary_writer("")

    def start(self, step):
        """HParams and the config table, at the step training starts (or resumes) from."""
        write_hparams(self.writer, self.config_dict, self.metrics, step)
        write_config_text(self.writer, self.config_dict, step)

    def finish(self, results, step, model, vocabulary):
        """The final metrics of `results` at `step`, and the projector of the model's token
        embedding (`model.backbone.token_embedding`)."""
        write_final_metrics(self.writer, results, self.metrics, step)
        if self.run_directory.is_chief:
            embeddings = model.backbone.token_embedding.embeddings
            write_projector(self.run_directory.file("logs"), tf.convert_to_tensor(embeddings),
                            list(vocabulary))
