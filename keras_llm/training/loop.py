"""The step-based training loop shared by language models and classifiers.

Resume, progress lines, TensorBoard scalars, periodic evaluation and checkpoints, the
non-finite-loss guard (with optional rollback) and the stop on SIGINT/SIGTERM live here once;
what is trained and how it is evaluated come in as arguments.
"""

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_llm.training.checkpointing import restore_checkpoint
from keras_llm.training.interruption import StopSignals, TrainingInterrupted
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


def restore_or_initialize(checkpoint, run_directory, step_counter, log=print):
    """Restores the run's latest checkpoint if there is one; returns its step (or 0).

    Every worker restores the checkpoint in the model directory (`run_directory.
    latest_checkpoint()`): a worker other than the chief saves into a temporary directory, so its
    own manager lists nothing, and restoring from there would resume the chief alone.
    `step_counter` is the variable the checkpoint restores the step into (the optimizer's
    iteration count), so the learning-rate schedule continues where it stopped. Every object of
    `checkpoint` must be in the file; the file may hold more (a weight average this run does not
    keep).
    """
    latest = run_directory.latest_checkpoint()
    if latest is None:
        return 0
    checkpoint.restore(latest).expect_partial().assert_existing_objects_matched()
    step = int(step_counter.numpy())
    log(f"Resumed from {latest} at step {step}.")
    return step


class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule times a variable factor: `schedule(step) * scale`.

    Args:
        schedule: a `keras.optimizers.schedules.LearningRateSchedule`.
        scale: a float32 scalar `tf.Variable`, read at every step (so assigning it changes the
            rate of an already compiled train step).
    """

    def __init__(self, schedule, scale):
        self.schedule = schedule
        self.scale = scale

    def __call__(self, step):
        return self.schedule(step) * tf.cast(self.scale, tf.float32)

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "scale": float(self.scale.numpy())}


def learning_rate_scale(optimizer, checkpoint, strategy):
    """The variable a non-finite-loss rollback multiplies to lower the learning rate.

    With a constant rate it is the optimizer's own rate variable (checkpoints hold it as
    `optimizer/_learning_rate`). With a schedule, the schedule is wrapped once in
    `ScaledSchedule` with a new variable (1.0) that `checkpoint` tracks as
    `learning_rate_scale`, so a lowered rate survives an interruption and resume. The checkpoint
    may already have been restored: `tf.train.Checkpoint` then restores the new variable as it
    is attached; a checkpoint written before this variable existed leaves it at 1.0.

    Call it before the train step is first traced: the traced step reads the schedule it saw.

    Returns:
        A scalar variable; `assign` changes the rate of the next steps.
    """
    # Keras 3 keeps the schedule object only here; `optimizer.learning_rate` is its value.
    rate = optimizer._learning_rate
    if isinstance(rate, ScaledSchedule):
        return rate.scale
    if not isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return rate
    with strategy.scope():
        scale = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="learning_rate_scale")
    checkpoint.learning_rate_scale = scale
    optimizer.learning_rate = ScaledSchedule(rate, scale)
    return scale


def run_training(trainer, train_dataset_fn, evaluate_fn, checkpoint_manager, run_directory, *,
                 train_steps, eval_interval, log_interval, checkpoint_interval, examples_per_step,
                 units_per_step, unit_name="tokens", log_perplexity=True, best=None,
                 nan_recoveries=0, nan_learning_rate_factor=0.5, log=print):
    """Trains from the current optimizer step up to `train_steps`.

    Non-finite loss: the loss and the gradient norm are fetched after every step; if either is
    NaN or Inf (the update just applied has then spoiled the weights), training stops with
    `NonFiniteLossError`, or, while fewer than `nan_recoveries` rollbacks were made, restores the
    last checkpoint (model, optimizer, step, dropout state), multiplies the learning rate by
    `nan_learning_rate_factor`, rebuilds the data at the restored step and goes on. With
    `nan_recoveries` > 0 a run that has no checkpoint yet saves one at its first step, so there
    is always one to roll back to.

    Stop signals: SIGINT or SIGTERM (see `keras_llm.training.interruption`) end the loop after
    the current step with a checkpoint at that step and `TrainingInterrupted`; under
    multi-worker training every worker stops after the same step.

    Args:
        trainer: a `keras_llm.training.trainer.Trainer` whose train step has not been traced yet.
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
        nan_recoveries: int >= 0, the most rollbacks on a non-finite loss; 0 stops at the first.
        nan_learning_rate_factor: float in (0, 1), the learning rate's factor at each rollback.
        log: a print-like function.

    Returns:
        dict: "train_loss" (mean over the last log window, nats), "validation" (the last
        `evaluate_fn` result), "units_per_second", "steps", "start_step", "wall_seconds",
        "nan_rollbacks" (rollbacks made in this call).

    Raises:
        NonFiniteLossError: the loss or gradient norm became NaN or Inf (again, after
            `nan_recoveries` rollbacks); names the step and the last checkpoint.
        TrainingInterrupted: a stop signal arrived; names the signal, the step and the checkpoint.
    """
    strategy = trainer.strategy
    scale = learning_rate_scale(trainer.optimizer, checkpoint_manager.checkpoint, strategy)
    start_step = int(trainer.optimizer.iterations.numpy())
    train_writer = run_directory.summary_writer("train")
    validation_writer = run_directory.summary_writer("validation")
    validation = {}
    start_time = time.perf_counter()
    if start_step >= train_steps:
        log(f"Already trained for {start_step} >= --train_steps={train_steps} steps.")
        validation = _evaluate(evaluate_fn, start_step, validation_writer, log)
        return _summary(math.nan, validation, 0.0, start_step, start_step, start_time, 0)

    # What a rollback restores: this worker's newest save, or the checkpoint the run resumed
    # from (a worker other than the chief saves elsewhere, so its manager does not list it).
    last_checkpoint = checkpoint_manager.latest_checkpoint or run_directory.latest_checkpoint()
    saved_step = start_step if last_checkpoint else None
    if nan_recoveries and last_checkpoint is None:
        last_checkpoint = checkpoint_manager.save(checkpoint_number=start_step)
        saved_step = start_step

    iterator = iter(strategy.experimental_distribute_dataset(train_dataset_fn(start_step)))
    window_losses, timed_seconds, timed_steps = [], 0.0, 0
    last_loss, rollbacks, first_step = math.nan, 0, start_step + 1
    step = start_step
    try:
        with StopSignals(strategy) as stop:
            while step < train_steps:
                step += 1
                step_start = time.perf_counter()
                outputs = trainer.train_step(iterator)
                # Fetching them each step catches a non-finite value within the step.
                loss, gradient_norm = float(outputs["loss"]), float(outputs["gradient_norm"])
                step_seconds = time.perf_counter() - step_start
                if step > first_step:  # A first step traces and compiles; keep it out of timing.
                    timed_seconds += step_seconds
                    timed_steps += 1
                if not (math.isfinite(loss) and math.isfinite(gradient_norm)):
                    problem = (f"The training loss is {loss} (gradient norm {gradient_norm}) at "
                               f"step {step}")
                    if rollbacks >= nan_recoveries:
                        after = (f" after {rollbacks} rollback(s) (--max_nan_recoveries="
                                 f"{nan_recoveries})" if rollbacks else "")
                        raise NonFiniteLossError(
                            f"{problem}{after}. Last good checkpoint: "
                            f"{last_checkpoint or 'none (no checkpoint saved yet)'}. Try a lower "
                            "--learning_rate, a --gradient_clip_norm, or --recover_from_nan."
                        )
                    rollbacks += 1
                    step = _roll_back(checkpoint_manager.checkpoint, last_checkpoint, scale,
                                      nan_learning_rate_factor, trainer.optimizer.iterations)
                    log(f"{problem}; rolled back to {last_checkpoint} (step {step}) with the "
                        f"learning rate times {nan_learning_rate_factor:g} (rollback {rollbacks} "
                        f"of at most {nan_recoveries}).")
                    iterator = iter(
                        strategy.experimental_distribute_dataset(train_dataset_fn(step)))
                    window_losses, first_step = [], step + 1
                    continue
                window_losses.append(loss)
                last_loss = loss
                if step % log_interval == 0 or step == train_steps:
                    last_loss = _log_progress(
                        train_writer, log, step, train_steps, window_losses, outputs,
                        seconds_per_step=(timed_seconds / timed_steps if timed_steps
                                          else step_seconds),
                        units_per_second=(units_per_step * timed_steps / timed_seconds
                                          if timed_seconds else 0.0),
                        unit_name=unit_name, log_perplexity=log_perplexity)
                    window_losses = []
                if step % checkpoint_interval == 0 or step == train_steps:
                    last_checkpoint = checkpoint_manager.save(checkpoint_number=step)
                    saved_step = step
                if step % eval_interval == 0 or step == train_steps:
                    validation = _evaluate(evaluate_fn, step, validation_writer, log)
                    if best is not None:
                        best.update(step, validation, log)
                # After the last step the run is complete: nothing to resume.
                if step < train_steps and stop.stop_requested():
                    if saved_step != step:
                        last_checkpoint = checkpoint_manager.save(checkpoint_number=step)
                    # Name the run's copy: a worker other than the chief saved a temporary one.
                    path = os.path.join(run_directory.file("checkpoints"),
                                        os.path.basename(last_checkpoint))
                    raise TrainingInterrupted(stop.signal_name, step, path)
    finally:
        train_writer.flush()
        validation_writer.flush()
    units_per_second = units_per_step * timed_steps / timed_seconds if timed_seconds else 0.0
    return _summary(last_loss, validation, units_per_second, train_steps, start_step, start_time,
                    rollbacks)


def _log_progress(writer, log, step, train_steps, window_losses, outputs, *, seconds_per_step,
                  units_per_second, unit_name, log_perplexity):
    """Writes the train scalars and prints the progress line; returns the window's mean loss."""
    mean_loss = float(np.mean(window_losses))
    scalars = {
        "loss": mean_loss,
        "learning_rate": float(outputs["learning_rate"]),
        "gradient_norm": float(outputs["gradient_norm"]),
        f"{unit_name}_per_second": units_per_second,
    }
    if log_perplexity:
        scalars["perplexity"] = math.exp(min(mean_loss, 50.0))
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.scalar(name, value)
    eta = format_duration(seconds_per_step * (train_steps - step))
    log(
        f"step {step}/{train_steps} | loss {mean_loss:.4f} | lr {scalars['learning_rate']:.2e}"
        f" | grad norm {scalars['gradient_norm']:.3f} | {units_per_second:,.0f} {unit_name}/s"
        f" | {1000 * seconds_per_step:.1f} ms/step | ETA {eta}"
    )
    return mean_loss


def _roll_back(checkpoint, path, scale, factor, step_counter):
    """Restores `path` into `checkpoint`'s objects, lowers the rate; returns the restored step.

    The scale is read before the restore (which resets it to the checkpoint's value), so
    repeated rollbacks to the same checkpoint keep lowering it.
    """
    lowered = float(scale.numpy()) * factor
    # The checkpoint was written by this run (or resumed from, and checked then).
    restore_checkpoint(checkpoint, path)
    scale.assign(lowered)
    return int(step_counter.numpy())


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
        # Every worker saves (a collective op) into its own directory, but all of them read the
        # chief's choice and checkpoint in MODEL_DIR/best, so they agree after a resume too.
        self.manager = tf.train.CheckpointManager(
            checkpoint, os.path.join(run_directory.path, "best"), max_to_keep=1)
        self.chief_directory = run_directory.file("best")
        self.summary_path = os.path.join(self.chief_directory, "best.json")
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
        best = tf.train.latest_checkpoint(self.chief_directory)
        if best is None or self.summary is None:
            return None
        restore_checkpoint(self.manager.checkpoint, best)
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


def _summary(train_loss, validation, units_per_second, steps, start_step, start_time,
             nan_rollbacks):
    return {
        "train_loss": train_loss,
        "validation": validation,
        "units_per_second": units_per_second,
        "steps": steps,
        "start_step": start_step,
        "wall_seconds": time.perf_counter() - start_time,
        "nan_rollbacks": nan_rollbacks,
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
