"""The one place that writes a run's files: chief-aware, atomic.

Layout of a model directory:

    MODEL_DIR/
      config.json            resolved configuration
      training_data.json     sha256 of the training split, so a resume on other data is refused
      tokenizer/             vocabulary (language models, classifiers)
      checkpoints/           tf.train.CheckpointManager: model, optimizer (and its step)
      logs/train/, logs/validation/   TensorBoard event files
      results.json           final figures

Under MultiWorkerMirroredStrategy every worker must take part in saving a checkpoint (the save
runs collective ops), but only the chief's copy is kept: the others write to a temporary
directory that `close()` removes. Summaries and JSON files are written by the chief alone,
through `keras_llm.training.atomic_files`.
"""

import hashlib
import json
import os
import shutil
import tempfile

import tensorflow as tf

from keras_llm.training import atomic_files
from keras_llm.training.checkpointing import checkpoint_step, latest_checkpoint
from keras_llm.training.strategy import is_chief


class ModelDirectoryError(ValueError):
    """The model directory holds a run this configuration cannot resume."""


def check_model_dir_path(model_dir):
    """Raises ModelDirectoryError if `--model_dir` names an existing file, not a folder."""
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ModelDirectoryError(f"--model_dir={model_dir} is an existing file, not a folder.")


def check_resumable(model_dir, config, data_fields, kind):
    """Fails if `model_dir` holds checkpoints that `config` cannot resume.

    Resuming is automatic when the saved config.json has the same `model` section, the same
    `data_fields` (the data itself, and what decides the tokenizer and the input shapes) and the
    same global `--batch_size` and `--seed` (which decide the data position of a step);
    anything else would load mismatched weights, or continue another corpus's data order with
    this one's, so it stops before training and before any file is overwritten. Other settings
    (learning rate, steps, data_dir, ...) may change on resume; `RunDirectory.write_config`
    logs them.

    Args:
        model_dir: str, the --model_dir.
        config: the run's config as nested dicts (as config.json holds it).
        data_fields: names in config["data"] that must match too.
        kind: the task of this run, "language-model" or "classifier".

    Raises:
        ModelDirectoryError: `model_dir` is a file, holds checkpoints without config.json, a run
            of the other task, or checkpoints this run cannot resume (naming the differing
            fields as flags).
    """
    check_model_dir_path(model_dir)
    if not latest_checkpoint(model_dir):
        return
    saved_path = os.path.join(model_dir, "config.json")
    if not os.path.exists(saved_path):
        raise ModelDirectoryError(
            f"{model_dir} holds checkpoints but no config.json; use another --model_dir.")
    with open(saved_path, encoding="utf-8") as file:
        saved = json.load(file)
    # A classifier's data section names a dataset, a language model's a corpus.
    saved_kind = "classifier" if "dataset" in saved.get("data", {}) else "language-model"
    if saved_kind != kind:
        raise ModelDirectoryError(
            f"--model_dir={model_dir} holds a {saved_kind} run; use another --model_dir for "
            f"this {kind} run.")
    compared = [("model", name) for name in config["model"]]
    compared += [("data", name) for name in data_fields]
    differences = [
        f"--{name}: saved {saved.get(section, {}).get(name)!r}, requested "
        f"{config[section][name]!r}"
        for section, name in compared if saved.get(section, {}).get(name) != config[section][name]
    ]
    if differences:
        raise ModelDirectoryError(
            f"--model_dir={model_dir} holds a checkpoint of another {kind} run; it differs in "
            + "; ".join(differences) + ". Use a new --model_dir, or the saved settings to resume."
        )
    # The data position of a checkpoint is its step: batch `step` of the order `--seed` shuffles
    # with `--batch_size` rows per batch. Another batch size would skip or repeat part of the
    # epoch (and with --epochs, change the schedule's length so the learning rate jumps);
    # another seed would continue a different order. Both are refused rather than half-honoured.
    changed = [
        f"--{name}={saved.get('train', {}).get(name)!r} saved, --{name}={config['train'][name]!r} "
        "requested"
        for name in RESUME_TRAIN_FIELDS
        if name in saved.get("train", {}) and saved["train"][name] != config["train"][name]
    ]
    if changed:
        saved_flags = " ".join(f"--{name}={saved['train'][name]}" for name in RESUME_TRAIN_FIELDS
                               if name in saved["train"])
        raise ModelDirectoryError(
            f"--model_dir={model_dir} cannot resume with another global batch size or seed ("
            + "; ".join(changed) + "): the checkpoint's data position and learning-rate schedule "
            f"belong to the saved values. Resume with {saved_flags}, or start a new run with a "
            "new --model_dir."
        )


# Train settings a resume must share with the saved run (see `check_resumable`).
RESUME_TRAIN_FIELDS = ("batch_size", "seed")


TRAINING_DATA_FILE = "training_data.json"


def training_data_fingerprint(texts, labels=None):
    """sha256 (hex) of a training split: its texts, and labels if given, in order.

    Two splits get the same fingerprint only if they hold the same examples in the same order,
    which is what resuming at a data position needs.
    """
    digest = hashlib.sha256()
    for index, text in enumerate(texts):
        # Lengths first, so ("ab", "c") and ("a", "bc") differ.
        label = "" if labels is None else str(labels[index])
        for part in (label, text):
            encoded = part.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
    return digest.hexdigest()


def check_training_data(model_dir, fingerprint):
    """Fails if `model_dir`'s checkpoints were trained on another training split.

    Resuming continues the data order at the checkpoint's step; on other data that position
    means nothing, and the tokenizer saved with the run was learned from the old data. Moving
    the same data elsewhere (another --data_dir) is fine: the fingerprint is of the contents.

    Args:
        model_dir: str, the --model_dir.
        fingerprint: `training_data_fingerprint` of this run's training split.

    Raises:
        ModelDirectoryError: the saved fingerprint differs; nothing has been written.
    """
    path = os.path.join(model_dir, TRAINING_DATA_FILE)
    if not (latest_checkpoint(model_dir) and os.path.exists(path)):
        return  # A new run, or one from before this check: this run records its data.
    with open(path, encoding="utf-8") as file:
        saved = json.load(file).get("sha256")
    if saved != fingerprint:
        raise ModelDirectoryError(
            f"--model_dir={model_dir} was trained on another training split (sha256 "
            f"{str(saved)[:12]}... in {path}, {fingerprint[:12]}... now): resuming would continue "
            "its data order and tokenizer on other data. Use a new --model_dir, or the same data.")


class RunDirectory:
    """Where this worker writes: MODEL_DIR on the chief, a temporary directory elsewhere.

    Args:
        model_dir: str, the model directory given by the user.
        strategy: the run's `tf.distribute.Strategy`; decides whether this worker is the chief.
    """

    def __init__(self, model_dir, strategy):
        self.model_dir = model_dir
        self.is_chief = is_chief(strategy)
        self._temporary = None if self.is_chief else tempfile.mkdtemp(prefix="keras_llm-worker-")
        self.path = model_dir if self.is_chief else self._temporary
        self._writers = {}
        os.makedirs(self.path, exist_ok=True)

    @property
    def checkpoint_dir(self):
        return os.path.join(self.path, "checkpoints")

    def latest_checkpoint(self):
        """The run's newest checkpoint, in the model directory: what every worker restores.

        A worker that is not the chief saves into its temporary directory, so its own
        CheckpointManager never sees the run's checkpoints; restoring from there would resume the
        chief alone, leaving the other workers at step 0 with their initial weights.

        Returns:
            str checkpoint prefix (e.g. MODEL_DIR/checkpoints/ckpt-250), or None.
        """
        return latest_checkpoint(self.model_dir)

    def file(self, name):
        """Path of `name` in the user's model directory (read it on any worker)."""
        return os.path.join(self.model_dir, name)

    def write_json(self, name, value):
        """Writes `MODEL_DIR/name` atomically on the chief (`atomic_files.write_json`)."""
        if self.is_chief:
            atomic_files.write_json(self.file(name), value)

    def save_directory(self, name, save_fn):
        """Saves the folder `MODEL_DIR/name` atomically on the chief, unless it already exists."""
        if self.is_chief and not os.path.isdir(self.file(name)):
            atomic_files.save_directory(save_fn, self.file(name))

    def write_config(self, config, train_steps, log=print):
        """Writes config.json; when resuming with other settings, says which ones changed.

        A run whose latest checkpoint is already at `train_steps` or later will train nothing,
        so its config.json, which describes that checkpoint, is left as it is.
        """
        path = self.file("config.json")
        step = checkpoint_step(self.latest_checkpoint())
        if step is not None and step >= train_steps and os.path.exists(path):
            log(f"The checkpoint is at step {step} >= {train_steps} steps: nothing to train; "
                "config.json is left as it was.")
            return
        if os.path.exists(path):
            with open(path, encoding="utf-8") as file:
                saved = json.load(file)
            changes = [
                f"--{name}: {saved.get(section, {}).get(name)!r} -> {value!r}"
                for section, values in config.items() if isinstance(values, dict)
                for name, value in values.items() if saved.get(section, {}).get(name) != value
            ]
            if changes:
                log("Resuming with changed settings (config.json updated): " + "; ".join(changes))
        self.write_json("config.json", config)

    def write_training_data(self, fingerprint):
        """Writes training_data.json (see `check_training_data`) on the chief."""
        self.write_json(TRAINING_DATA_FILE, {"sha256": fingerprint})

    def write_results(self, results, trained, log=print):
        """Writes results.json, unless this invocation trained nothing and one already exists
        (resuming a finished run must not replace its figures with empty ones)."""
        if not trained and os.path.exists(self.file("results.json")):
            log("Nothing was trained; results.json is left as it was.")
        else:
            self.write_json("results.json", results)

    def summary_writer(self, name):
        """A TensorBoard writer for `logs/<name>` (`""`: `logs/` itself) on the chief, a no-op
        writer elsewhere. One writer per folder: asking again returns the same writer, so a
        folder gets one event file per process, not one per caller."""
        if not self.is_chief:
            return tf.summary.create_noop_writer()
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(
                os.path.join(self.model_dir, "logs", name))
        return self._writers[name]

    def close(self):
        if self._temporary:
            shutil.rmtree(self._temporary, ignore_errors=True)

