"""`BestCheckpoint`: keeps the checkpoint with the best validation metric (model selection)."""

import json
import os

import tensorflow as tf

from keras_llm.training import atomic_files

# Metrics where lower is better; every other metric (accuracy, f1, ...) is maximized.
MINIMIZED_METRICS = ("loss", "perplexity")


class BestCheckpoint:
    """Keeps the checkpoint with the best value of one validation metric.

    Lives in `MODEL_DIR/best/` (a `tf.train.CheckpointManager` keeping one checkpoint, and
    `best.json` with the step and the validation figures), so the choice survives a resume.

    Args:
        checkpoint: the run's `checkpointing.TrainingCheckpoint`.
        run_directory: a `RunDirectory` (the chief keeps the files; others a temporary copy).
        metric: key of the evaluation dict, e.g. "accuracy" or "loss".
        mode: "max" or "min"; None: "min" for `MINIMIZED_METRICS`, else "max".

    Raises:
        ValueError: `mode` is not "max", "min" or None.
    """

    def __init__(self, checkpoint, run_directory, metric, mode=None):
        if mode is None:
            mode = "min" if metric in MINIMIZED_METRICS else "max"
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}.")
        self.metric, self.mode = metric, mode
        self.checkpoint = checkpoint
        self.run_directory = run_directory
        # Every worker saves (a collective op) into its own directory, but all of them read the
        # chief's choice and checkpoint in MODEL_DIR/best, so they agree after a resume too.
        self.manager = tf.train.CheckpointManager(
            checkpoint.checkpoint, os.path.join(run_directory.path, "best"), max_to_keep=1)
        self.chief_directory = run_directory.file("best")
        self.summary_path = os.path.join(self.chief_directory, "best.json")
        self.summary = None
        if os.path.exists(self.summary_path):
            with open(self.summary_path, encoding="utf-8") as file:
                self.summary = json.load(file)

    def update(self, step, validation, log=print):
        """Saves the checkpoint at `step` if `validation[metric]` beats the best so far."""
        value = validation[self.metric]
        if self.summary is not None:
            previous = self.summary["validation"][self.metric]
            if (value <= previous) if self.mode == "max" else (value >= previous):
                return
        self.manager.save(checkpoint_number=step)
        self.summary = {"step": step, "validation": validation}
        if self.run_directory.is_chief:
            atomic_files.write_json(self.summary_path, self.summary)
        log(f"step {step}: best validation {self.metric} so far ({value:.4f}), kept in "
            f"{self.manager.directory}")

    def restore(self, log=print):
        """Restores the best checkpoint into the model; returns its summary (or None)."""
        best = tf.train.latest_checkpoint(self.chief_directory)
        if best is None or self.summary is None:
            return None
        self.checkpoint.restore(best)
        log(f"Restored the best checkpoint (step {self.summary['step']}, validation "
            f"{self.metric} {self.summary['validation'][self.metric]:.4f}).")
        return self.summary
