"""The step-based training loop shared by language models and classifiers.

Resume, progress lines, TensorBoard scalars, periodic evaluation and checkpoints, and the
non-finite-loss guard live here once; what is trained and how it is evaluated come in as
arguments.
"""

import json
import math
import os
import time

import numpy as np
import tensorflow as tf

from keras_llm.training.run_directory import write_json_atomically


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the message names the step and the last checkpoint."""


def format_duration(seconds):
    """Formats seconds as e.g. '1h02m', '3m05s' or '12s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def restore_or_initialize(checkpoint_manager, step_counter, log=print):
    """Restores the latest checkpoint if there is one; returns the step it was saved at (or 0).

    `step_counter` is the variable the checkpoint restores the step into (the optimizer's
    iteration count), so the learning-rate schedule continues where it stopped.
    """
    latest = checkpoint_manager.latest_checkpoint
    if latest is None:
        return 0
    checkpoint_manager.checkpoint.restore(latest).assert_existing_objects_matched()
    step = int(step_counter.numpy())
    log(f"Resumed from {latest} at step {step}.")
    return step


def run_training(trainer, train_dataset_fn, evaluate_fn, checkpoint_manager, run_directory, *,
                 train_steps, eval_interval, log_interval, checkpoint_interval, examples_per_step,
                 units_per_step, unit_name="tokens", log_perplexity=True, best=None, log=print):
    """Trains from the current optimizer step up to `train_steps`.

    Args:
        trainer: a `keras_llm.training.trainer.Trainer`.
        train_dataset_fn: `start_step -> tf.data.Dataset` of global batches that begins at that
            step (deterministic, so a resumed run sees the batches an uninterrupted one would).
        evaluate_fn: `step -> dict of float` (e.g. loss, perplexity, accuracy), called every
            `eval_interval` steps and at the end; logged under `validation/`.
        checkpoint_manager: a `tf.train.CheckpointManager` whose step counter is the optimizer's
            iteration count.
        run_directory: a `RunDirectory` (chief-aware writers).
        train_steps: the total number of optimizer steps.
        eval_interval, log_interval, checkpoint_interval: in steps.
        examples_per_step: global batch size, for the progress line.
        units_per_step: tokens (or examples) per step, for the throughput figures.
        unit_name: "tokens" or "examples".
        log_perplexity: also log exp(loss) (language models).
        best: optional `BestCheckpoint`; after each evaluation it keeps the checkpoint with the
            best validation metric (early-stopping model selection).
        log: a print-like function.

    Returns:
        dict: "train_loss" (mean over the last log window, nats), "validation" (the last
        `evaluate_fn` result), "units_per_second", "steps", "start_step", "wall_seconds".

    Raises:
        NonFiniteLossError: the loss became NaN or Inf; names the step and the last checkpoint.
    """
    strategy = trainer.strategy
    start_step = int(trainer.optimizer.iterations.numpy())
    train_writer = run_directory.summary_writer("train")
    validation_writer = run_directory.summary_writer("validation")
    validation = {}
    start_time = time.perf_counter()
    if start_step >= train_steps:
        log(f"Already trained for {start_step} >= --train_steps={train_steps} steps.")
        validation = _evaluate(evaluate_fn, start_step, validation_writer, log)
        return _summary(math.nan, validation, 0.0, start_step, start_step, start_time)

    dataset = strategy.experimental_distribute_dataset(train_dataset_fn(start_step))
    iterator = iter(dataset)
    window_losses, window_start, timed_seconds, timed_steps = [], None, 0.0, 0
    last_loss = math.nan
    for step in range(start_step + 1, train_steps + 1):
        step_start = time.perf_counter()
        outputs = trainer.train_step(iterator)
        loss = float(outputs["loss"])  # Fetching it each step catches a NaN within the step.
        step_seconds = time.perf_counter() - step_start
        if step > start_step + 1:  # The first step traces and compiles; keep it out of timing.
            timed_seconds += step_seconds
            timed_steps += 1
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"The training loss is {loss} at step {step}. Last good checkpoint: "
                f"{checkpoint_manager.latest_checkpoint or 'none (no checkpoint saved yet)'}. "
                "Try a lower --learning_rate or a --gradient_clip_norm."
            )
        window_losses.append(loss)
        last_loss = loss
        if step % log_interval == 0 or step == train_steps:
            units_per_second = units_per_step * timed_steps / timed_seconds if timed_seconds else 0.0
            mean_loss = float(np.mean(window_losses))
            scalars = {
                "loss": mean_loss,
                "learning_rate": float(outputs["learning_rate"]),
                "gradient_norm": float(outputs["gradient_norm"]),
                f"{unit_name}_per_second": units_per_second,
            }
            if log_perplexity:
                scalars["perplexity"] = math.exp(min(mean_loss, 50.0))
            with train_writer.as_default(step=step):
                for name, value in scalars.items():
                    tf.summary.scalar(name, value)
            seconds_per_step = timed_seconds / timed_steps if timed_steps else step_seconds
            eta = format_duration(seconds_per_step * (train_steps - step))
            log(
                f"step {step}/{train_steps} | loss {mean_loss:.4f} | lr {scalars['learning_rate']:.2e}"
                f" | grad norm {scalars['gradient_norm']:.3f} | {units_per_second:,.0f} {unit_name}/s"
                f" | {1000 * seconds_per_step:.1f} ms/step | ETA {eta}"
            )
            last_loss, window_losses = mean_loss, []
        if step % checkpoint_interval == 0 or step == train_steps:
            checkpoint_manager.save(checkpoint_number=step)
        if step % eval_interval == 0 or step == train_steps:
            validation = _evaluate(evaluate_fn, step, validation_writer, log)
            if best is not None:
                best.update(step, validation, log)
    train_writer.flush()
    validation_writer.flush()
    units_per_second = units_per_step * timed_steps / timed_seconds if timed_seconds else 0.0
    return _summary(last_loss, validation, units_per_second, train_steps, start_step, start_time)


class BestCheckpoint:
    """Keeps the checkpoint with the best value of one validation metric.

    Lives in `MODEL_DIR/best/` (a `tf.train.CheckpointManager` keeping one checkpoint, and
    `best.json` with the step and the validation figures), so the choice survives a resume.

    Args:
        checkpoint: the run's `tf.train.Checkpoint`.
        run_directory: a `RunDirectory` (the chief keeps the files; others a temporary copy).
        metric: key of the evaluation dict, e.g. "accuracy" or "loss".
        mode: "max" or "min".
    """

    def __init__(self, checkpoint, run_directory, metric, mode="max"):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}.")
        self.metric, self.mode = metric, mode
        self.run_directory = run_directory
        directory = os.path.join(run_directory.path, "best")
        self.manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1)
        self.summary_path = os.path.join(directory, "best.json")
        self.summary = None
        if os.path.exists(self.summary_path):
            with open(self.summary_path, encoding="utf-8") as file:
                self.summary = json.load(file)

    def update(self, step, validation, log=print):
        value = validation[self.metric]
        if self.summary is not None:
            previous = self.summary["validation"][self.metric]
            if (value <= previous) if self.mode == "max" else (value >= previous):
                return
        self.manager.save(checkpoint_number=step)
        self.summary = {"step": step, "validation": validation}
        if self.run_directory.is_chief:
            write_json_atomically(self.summary_path, self.summary)
        log(f"step {step}: best validation {self.metric} so far ({value:.4f}), kept in "
            f"{self.manager.directory}")

    def restore(self, log=print):
        """Restores the best checkpoint into the model; returns its summary (or None)."""
        if self.manager.latest_checkpoint is None:
            return None
        self.manager.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
        log(f"Restored the best checkpoint (step {self.summary['step']}, validation "
            f"{self.metric} {self.summary['validation'][self.metric]:.4f}).")
        return self.summary


def _evaluate(evaluate_fn, step, writer, log):
    results = evaluate_fn(step)
    with writer.as_default(step=step):
        for name, value in results.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                tf.summary.scalar(name, value)
    shown = " | ".join(
        f"{name} {value:.4f}" for name, value in results.items() if isinstance(value, float)
    )
    log(f"step {step} validation | {shown}")
    return results


def _summary(train_loss, validation, units_per_second, steps, start_step, start_time):
    return {
        "train_loss": train_loss,
        "validation": validation,
        "units_per_second": units_per_second,
        "steps": steps,
        "start_step": start_step,
        "wall_seconds": time.perf_counter() - start_time,
    }


def resolve_train_steps(train_config, examples_per_epoch):
    """Returns (train_steps, eval_interval) once the size of the training split is known.

    With `--epochs` > 0, `train_steps = epochs * ceil(examples_per_epoch / batch_size)` and the
    evaluation runs once per epoch; otherwise the config's own values are returned.

    Raises:
        ValueError: `--warmup_steps` is not below the resolved number of steps.
    """
    if not train_config.epochs:
        return train_config.train_steps, train_config.eval_interval
    steps_per_epoch = -(-examples_per_epoch // train_config.batch_size)
    train_steps = train_config.epochs * steps_per_epoch
    if train_config.learning_rate_schedule != "constant" and train_config.warmup_steps >= train_steps:
        raise ValueError(
            f"--warmup_steps={train_config.warmup_steps} must be below the {train_steps} steps of "
            f"--epochs={train_config.epochs} x {steps_per_epoch} steps per epoch."
        )
    return train_steps, steps_per_epoch
