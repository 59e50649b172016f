"""The step-based training loop shared by language models and classifiers.

Resume, progress lines, TensorBoard scalars, periodic evaluation and checkpoints, the
non-finite-loss guard (with optional rollback) and the stop on SIGINT/SIGTERM live here once;
what is trained and how it is evaluated come in as arguments, how often and how long as a
`RunSettings`. Restoring and rolling back are `checkpointing.TrainingCheckpoint`'s.
"""

import dataclasses
import math
import os
import time

import numpy as np
import tensorflow as tf

from keras_llm.progress import format_duration
from keras_llm.training.interruption import StopSignals, TrainingInterrupted


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the message names the step and the last checkpoint."""


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How `run_training` runs: its length, intervals, reporting and NaN recovery.

    Attributes:
        train_steps: the total number of optimizer steps.
        eval_interval: evaluate (and maybe keep the best checkpoint) every this many steps.
        log_interval: print a progress line and write train scalars every this many steps.
        checkpoint_interval: save a checkpoint every this many steps.
        units_per_step: tokens (or examples) per step, for the throughput figures.
        unit_name: "tokens" or "examples", in the progress line and the `<unit>_per_second`
            scalar.
        log_perplexity: also log exp(loss) (language models).
        nan_recoveries: int >= 0, the most rollbacks on a non-finite loss; 0 stops at the first.
        nan_learning_rate_factor: float in (0, 1), the learning rate's factor at each rollback.
        steps_per_execution: int >= 1, the most steps one `Trainer.train_steps` call runs. A
            call never crosses a log, evaluation or checkpoint step nor the last step, so
            those happen at the same steps whatever this is.
        flops_per_step: model FLOPs of one step (forward and backward, see
            `keras_llm.training.flops`), for the model FLOPs utilization; 0: not reported.
        peak_flops_per_second: the hardware's float32 peak to compare with; 0: MFU not reported.
    """

    train_steps: int
    eval_interval: int
    log_interval: int
    checkpoint_interval: int
    units_per_step: int
    unit_name: str = "tokens"
    log_perplexity: bool = True
    nan_recoveries: int = 0
    nan_learning_rate_factor: float = 0.5
    steps_per_execution: int = 1
    flops_per_step: float = 0.0
    peak_flops_per_second: float = 0.0


def chunk_length(step, settings):
    """Steps the next `Trainer.train_steps` call runs after `step` completed steps.

    At most `settings.steps_per_execution`, and never past the next multiple of the log,
    evaluation or checkpoint interval nor `settings.train_steps`: the loop acts between calls.
    E.g. step 40, steps_per_execution 16, log_interval 50 -> 10 (steps 41..50).
    """
    length = min(settings.steps_per_execution, settings.train_steps - step)
    for interval in (settings.log_interval, settings.eval_interval, settings.checkpoint_interval):
        length = min(length, interval - step % interval)
    return length


def evaluations_left(step, settings):
    """Evaluations still to run once `step` steps are done, the one at `step` included: one at
    every multiple of `settings.eval_interval` from `step` on, and one after the last step.

    E.g. step 250, eval_interval 250, train_steps 2000 -> 8 (steps 250, 500, ..., 2000);
    step 251 -> 7; train_steps 2100 -> one more, after step 2100.
    """
    interval, last = settings.eval_interval, settings.train_steps
    at_intervals = last // interval - (max(step, 1) - 1) // interval if step <= last else 0
    return at_intervals + (1 if last % interval and step <= last else 0)


def run_training(trainer, train_dataset_fn, evaluate_fn, state, run_directory, settings, *,
                 best=None, log=print, dashboards=None):
    """Trains from the current optimizer step up to `settings.train_steps`.

    Steps run in calls of up to `settings.steps_per_execution` steps (`Trainer.train_steps`)
    that end at every log, evaluation and checkpoint step, so those, resume and rollback see
    the same steps whatever the chunk length; a stop signal is honoured at the end of a call.

    Non-finite loss: every step's loss and gradient norm are fetched after each call; if one is
    NaN or Inf (the updates from that step on have then spoiled the weights), training stops with
    `NonFiniteLossError`, or, while fewer than `settings.nan_recoveries` rollbacks were made,
    restores the last checkpoint (model, optimizer, step, dropout state), multiplies the
    learning rate's scale by `settings.nan_learning_rate_factor`, rebuilds the data at the
    restored step and goes on. With `nan_recoveries` > 0 a run that has no checkpoint yet saves
    one at its first step, so there is always one to roll back to.

    Stop signals: SIGINT or SIGTERM (see `keras_llm.training.interruption`) end the loop after
    the current call's last step with a checkpoint at that step and `TrainingInterrupted`; under
    multi-worker training every worker stops after the same step.

    Args:
        trainer: a `keras_llm.training.trainer.Trainer`.
        train_dataset_fn: `start_step -> tf.data.Dataset` of global batches that begins at that
            step (deterministic, so a resumed run sees the batches an uninterrupted one would).
        evaluate_fn: `step -> dict of float` (e.g. loss, perplexity, accuracy), called every
            `eval_interval` steps and at the end; logged under `validation/`.
        state: the run's `TrainingState`: its `checkpoint` (a `TrainingCheckpoint`, restored
            on rollback, whose learning-rate scale a rollback lowers) and `manager` (a
            `tf.train.CheckpointManager` whose step counter is the optimizer's iteration count).
        run_directory: a `RunDirectory` (chief-aware writers).
        settings: a `RunSettings`.
        best: optional `BestCheckpoint`; after each evaluation it keeps the checkpoint with the
            best validation metric (early-stopping model selection).
        log: a print-like function.
        dashboards: optional `keras_llm.training.dashboards.Dashboards`, called before and after
            every step (histograms, weight norm, graph, profile) and closed at the end.

    Returns:
        dict: "train_loss" (mean over the last log window, nats), "validation" (the last
        `evaluate_fn` result), "units_per_second", "steps", "start_step", "wall_seconds",
        "nan_rollbacks" (rollbacks made in this call), "milliseconds_per_step" (mean over the
        timed steps: all but the first call's, which traces), "model_flops_utilization"
        (fraction of `settings.peak_flops_per_second`, or None when not known).

    Raises:
        NonFiniteLossError: the loss or gradient norm became NaN or Inf (again, after
            `nan_recoveries` rollbacks); names the step and the last checkpoint.
        TrainingInterrupted: a stop signal arrived; names the signal, the step and the checkpoint.
    """
    strategy = trainer.strategy
    checkpoint_manager = state.manager
    train_steps, nan_recoveries = settings.train_steps, settings.nan_recoveries
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
    # The latest evaluation's duration sizes the ETA; not the first's, which also traces (11.5 s
    # against 4 s for the next ones on the main job).
    evaluations_run, evaluation_seconds = 0, None
    last_loss, rollbacks, first_step = math.nan, 0, start_step + 1
    step = start_step
    try:
        with StopSignals(strategy) as stop:
            while step < train_steps:
                num_steps = chunk_length(step, settings)
                if dashboards is not None:
                    num_steps = min(num_steps, dashboards.next_stop(step) - step)
                    dashboards.before_step(step + 1)
                call_start = time.perf_counter()
                outputs = trainer.train_steps(iterator, tf.constant(num_steps, tf.int32))
                # Fetching them after each call catches a non-finite value within the call.
                step_losses = outputs["loss"].numpy().tolist()
                gradient_norms = outputs["gradient_norm"].numpy().tolist()
                step_seconds = (time.perf_counter() - call_start) / num_steps
                first_call = step < first_step  # It traces and compiles; keep it out of timing.
                bad = [i for i, (loss, norm) in enumerate(zip(step_losses, gradient_norms))
                       if not (math.isfinite(loss) and math.isfinite(norm))]
                if bad:
                    # The updates from the first bad step on have spoiled the weights.
                    loss, gradient_norm = step_losses[bad[0]], gradient_norms[bad[0]]
                    problem = (f"The training loss is {loss} (gradient norm {gradient_norm}) at "
                               f"step {step + bad[0] + 1}")
                    if rollbacks >= nan_recoveries:
                        after = (f" after {rollbacks} rollback(s) (--max_nan_recoveries="
                                 f"{nan_recoveries})" if rollbacks else "")
                        raise NonFiniteLossError(
                            f"{problem}{after}. Last good checkpoint: "
                            f"{last_checkpoint or 'none (no checkpoint saved yet)'}. Try a lower "
                            "--learning_rate, a --gradient_clip_norm, or --recover_from_nan."
                        )
                    rollbacks += 1
                    nan_learning_rate_factor = settings.nan_learning_rate_factor
                    step = state.checkpoint.roll_back(last_checkpoint, nan_learning_rate_factor)
                    log(f"{problem}; rolled back to {last_checkpoint} (step {step}) with the "
                        f"learning rate times {nan_learning_rate_factor:g} (rollback {rollbacks} "
                        f"of at most {nan_recoveries}).")
                    iterator = iter(
                        strategy.experimental_distribute_dataset(train_dataset_fn(step)))
                    window_losses, first_step = [], step + 1
                    continue
                step += num_steps
                if not first_call:
                    timed_seconds += step_seconds * num_steps
                    timed_steps += num_steps
                window_losses += step_losses
                last_loss = step_losses[-1]
                if dashboards is not None:
                    dashboards.after_step(step)
                if step % settings.log_interval == 0 or step == train_steps:
                    last_loss = _log_progress(
                        train_writer, log, step, settings, window_losses,
                        learning_rate=float(outputs["learning_rate"]),
                        gradient_norm=gradient_norms[-1],
                        seconds_per_step=(timed_seconds / timed_steps if timed_steps
                                          else step_seconds),
                        measured=bool(timed_seconds),
                        evaluations=(evaluations_left(step, settings), evaluation_seconds))
                    window_losses = []
                if step % settings.checkpoint_interval == 0 or step == train_steps:
                    last_checkpoint = checkpoint_manager.save(checkpoint_number=step)
                    saved_step = step
                if step % settings.eval_interval == 0 or step == train_steps:
                    evaluation_start = time.perf_counter()
                    validation = _evaluate(evaluate_fn, step, validation_writer, log)
                    if best is not None:
                        best.update(step, validation, log)
                    evaluations_run += 1
                    if evaluations_run > 1:
                        evaluation_seconds = time.perf_counter() - evaluation_start
                # After the last step the run is complete: nothing to resume.
                if step < train_steps and stop.stop_requested():
                    if saved_step != step:
                        last_checkpoint = checkpoint_manager.save(checkpoint_number=step)
                    # Name the run's copy: a worker other than the chief saved a temporary one.
                    path = os.path.join(run_directory.file("checkpoints"),
                                        os.path.basename(last_checkpoint))
                    raise TrainingInterrupted(stop.signal_name, step, path)
    finally:
        if dashboards is not None:
            dashboards.close()
        train_writer.flush()
        validation_writer.flush()
    units_per_second = (settings.units_per_step * timed_steps / timed_seconds if timed_seconds
                        else 0.0)
    seconds_per_step = timed_seconds / timed_steps if timed_steps else 0.0
    return _summary(last_loss, validation, units_per_second, train_steps, start_step, start_time,
                    rollbacks, seconds_per_step, model_flops_utilization(settings, seconds_per_step))


def model_flops_utilization(settings, seconds_per_step):
    """Model FLOP/s over the peak: a fraction, or None when either figure is not known."""
    if not (settings.flops_per_step and settings.peak_flops_per_second and seconds_per_step):
        return None
    return settings.flops_per_step / seconds_per_step / settings.peak_flops_per_second


def _log_progress(writer, log, step, settings, window_losses, *, learning_rate, gradient_norm,
                  seconds_per_step, measured, evaluations=(0, None)):
    """Writes the train scalars and prints the progress line; returns the window's mean loss.

    `measured`: whether `seconds_per_step` comes from timed calls. Before the first timed call
    (only the first, tracing call ran, e.g. a 1-step run) it is that call's time, tracing
    included: it sizes the ETA, but no throughput, step time or MFU is reported from it.
    `evaluations`: (evaluations still to run, the latest one's seconds or None). The ETA counts
    them at the latest one's duration; until one that did not trace has run (the second), it
    names how many it leaves out ("ETA 15s + 8 evaluations").
    """
    mean_loss = float(np.mean(window_losses))
    unit_name = settings.unit_name
    scalars = {"loss": mean_loss, "learning_rate": learning_rate, "gradient_norm": gradient_norm}
    if settings.log_perplexity:
        scalars["perplexity"] = math.exp(min(mean_loss, 50.0))
    speed = " | speed: not measured (the first call traces and compiles)"
    if measured:
        units_per_second = settings.units_per_step / seconds_per_step
        scalars[f"{unit_name}_per_second"] = units_per_second
        scalars["milliseconds_per_step"] = 1000 * seconds_per_step
        utilization = model_flops_utilization(settings, seconds_per_step)
        if utilization is not None:
            scalars["model_flops_utilization"] = utilization
        mfu = f" | MFU {100 * utilization:.1f}%" if utilization is not None else ""
        speed = (f" | {units_per_second:,.0f} {unit_name}/s"
                 f" | {1000 * seconds_per_step:.1f} ms/step{mfu}")
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.scalar(name, value)
    evaluations_to_run, evaluation_seconds = evaluations
    eta_seconds = seconds_per_step * (settings.train_steps - step)
    if evaluation_seconds is not None:
        eta_seconds += evaluations_to_run * evaluation_seconds
    eta = format_duration(eta_seconds)
    if evaluation_seconds is None and evaluations_to_run:
        eta += f" + {evaluations_to_run} evaluation{'s' if evaluations_to_run > 1 else ''}"
    log(
        f"step {step}/{settings.train_steps} | loss {mean_loss:.4f} | lr {learning_rate:.2e}"
        f" | grad norm {gradient_norm:.3f}{speed} | ETA {eta}"
    )
    return mean_loss


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
             nan_rollbacks, seconds_per_step=0.0, utilization=None):
    return {
        "milliseconds_per_step": 1000 * seconds_per_step,
        "model_flops_utilization": utilization,
        "train_loss": train_loss,
        "validation": validation,
        "units_per_second": units_per_second,
        "steps": steps,
        "start_step": start_step,
        "wall_seconds": time.perf_counter() - start_time,
        "nan_rollbacks": nan_rollbacks,
    }
