"""`run_training` on a tiny model: NaN stop and rollback, stop requests, settings."""

import dataclasses
import os
import signal
import time

import numpy as np
import pytest

from keras_llm.training import loop
from keras_llm.training.interruption import TrainingInterrupted
from tests.training.tiny_training import dataset, train_config, training_state


def _settings(**overrides):
    values = dict(train_steps=6, eval_interval=3, log_interval=1, checkpoint_interval=2,
                  units_per_step=4, unit_name="examples", log_perplexity=False)
    values.update(overrides)
    return loop.RunSettings(**values)


def _run(tmp_path, settings, nan_at_step=None, evaluate=None, lines=None):
    state, trainer, run_directory = training_state(tmp_path, train_config(),
                                                   settings.train_steps)
    built = []

    def train_dataset(start_step):
        built.append(start_step)
        return dataset(start_step, nan_at_step if len(built) == 1 else None)

    summary = loop.run_training(
        trainer, train_dataset, evaluate or (lambda step: {"loss": 1.0}), state, run_directory,
        settings, log=(lines.append if lines is not None else lambda *a: None))
    return summary, state, built


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _settings().train_steps = 3


def test_a_non_finite_loss_stops_naming_the_step_and_the_checkpoint(tmp_path):
    with pytest.raises(loop.NonFiniteLossError) as error:
        _run(tmp_path, _settings(), nan_at_step=5)
    checkpoint = os.path.join(tmp_path, "checkpoints", "ckpt-4")
    assert str(error.value).startswith(
        f"The training loss is nan (gradient norm nan) at step 5. Last good checkpoint: "
        f"{checkpoint}.")


def test_rollback_lowers_the_rate_through_the_schedule_scale(tmp_path):
    lines = []
    summary, state, built = _run(tmp_path, _settings(nan_recoveries=2, nan_learning_rate_factor=0.1),
                                 nan_at_step=5, lines=lines)
    assert summary["nan_rollbacks"] == 1 and summary["steps"] == 6
    assert built == [0, 4]  # The data is rebuilt at the restored step.
    assert float(state.checkpoint.learning_rate_scale.numpy()) == pytest.approx(0.1)
    # The optimizer's rate is the schedule's: the configured 0.05 times the scale.
    assert float(state.optimizer.learning_rate) == pytest.approx(0.005)
    assert any(line.endswith("rolled back to " + os.path.join(tmp_path, "checkpoints", "ckpt-4")
                             + " (step 4) with the learning rate times 0.1 (rollback 1 of at "
                             "most 2).") for line in lines)
    assert all(np.all(np.isfinite(w.numpy())) for w in state.model.weights)


def test_a_stop_request_saves_at_that_step(tmp_path):
    def evaluate(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # Handled by the loop's StopSignals.
        return {"loss": 1.0}

    with pytest.raises(TrainingInterrupted) as error:
        _run(tmp_path, _settings(checkpoint_interval=5), evaluate=evaluate)
    checkpoint = os.path.join(tmp_path, "checkpoints", "ckpt-3")
    assert (error.value.signal_name, error.value.step) == ("SIGTERM", 3)
    assert error.value.checkpoint_path == checkpoint and os.path.exists(checkpoint + ".index")


# ------------------------------------------------------------ several steps per compiled call


@pytest.mark.parametrize("step, expected", [
    (0, 4),  # steps_per_execution 4
    (4, 2),  # the checkpoint at 6 ends the call (the log at 12, the evaluation at 9)
    (6, 3),  # the evaluation at 9
    (9, 3),  # the log and checkpoint at 12
    (12, 2),  # the last step, 14
])
def test_a_call_ends_at_every_step_the_loop_acts_on(step, expected):
    settings = _settings(train_steps=14, steps_per_execution=4, log_interval=12, eval_interval=9,
                         checkpoint_interval=6)
    assert loop.chunk_length(step, settings) == expected


def test_chunked_steps_give_the_losses_and_weights_of_one_step_per_call(tmp_path):
    lines_one, lines_chunked = [], []
    one, state_one, _ = _run(tmp_path / "one", _settings(), lines=lines_one)
    chunked, state_chunked, _ = _run(tmp_path / "chunked", _settings(steps_per_execution=4),
                                     lines=lines_chunked)
    assert chunked["train_loss"] == one["train_loss"]
    for a, b in zip(state_one.model.weights, state_chunked.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # log_interval 1: one progress line per step, with the same loss, however steps are called.
    losses = [[line.split(" | ")[1] for line in lines if line.startswith("step ")
               and "validation" not in line] for lines in (lines_one, lines_chunked)]
    assert losses[0] == losses[1] and len(losses[0]) == 6


def test_a_non_finite_loss_inside_a_call_names_its_own_step(tmp_path):
    # One call runs steps 1-6; step 5 is NaN: the error names step 5, not the call's last.
    with pytest.raises(loop.NonFiniteLossError) as error:
        _run(tmp_path, _settings(steps_per_execution=8, log_interval=6, eval_interval=6,
                                 checkpoint_interval=6), nan_at_step=5)
    assert str(error.value).startswith(
        "The training loss is nan (gradient norm nan) at step 5. Last good checkpoint: none")


def test_rollback_inside_a_call_restarts_from_the_checkpoint(tmp_path):
    summary, state, built = _run(
        tmp_path, _settings(steps_per_execution=8, log_interval=6, eval_interval=6,
                            checkpoint_interval=6, nan_recoveries=1), nan_at_step=5)
    # With recoveries and no checkpoint, step 0 is saved first; the call of steps 1-6 is
    # rolled back to it and run again on rebuilt data.
    assert summary["nan_rollbacks"] == 1 and summary["steps"] == 6 and built == [0, 0]
    assert all(np.all(np.isfinite(w.numpy())) for w in state.model.weights)


def test_progress_line_reports_step_time_and_model_flops_utilization(tmp_path):
    lines = []
    summary, _, _ = _run(tmp_path, _settings(flops_per_step=2e6, peak_flops_per_second=1e9),
                         lines=lines)
    progress = [line for line in lines if line.startswith("step 6/6")][0]
    assert " ms/step | MFU " in progress
    seconds = summary["milliseconds_per_step"] / 1000
    assert summary["model_flops_utilization"] == pytest.approx(2e6 / seconds / 1e9)


def test_model_flops_utilization_is_flops_over_time_over_peak():
    settings = _settings(flops_per_step=4.0e9, peak_flops_per_second=160e9)
    # 4 GFLOP in 50 ms is 80 GFLOP/s: half of a 160 GFLOP/s peak.
    assert loop.model_flops_utilization(settings, 0.050) == pytest.approx(0.5)
    assert loop.model_flops_utilization(_settings(), 0.050) is None


def test_a_one_step_run_reports_no_speed_it_did_not_measure(tmp_path):
    # Its only call traces and compiles: "0 examples/s" was printed before.
    lines = []
    summary, _, _ = _run(tmp_path, _settings(train_steps=1), lines=lines)
    [progress] = [line for line in lines if line.startswith("step 1/1 |")]
    assert "speed: not measured (the first call traces and compiles)" in progress
    assert "examples/s" not in progress and "ms/step" not in progress
    assert summary["units_per_second"] == 0.0 and summary["model_flops_utilization"] is None


def test_later_lines_report_the_timed_calls_speed(tmp_path):
    lines = []
    summary, _, _ = _run(tmp_path, _settings(train_steps=3), lines=lines)
    last = [line for line in lines if line.startswith("step 3/3 |")][0]
    assert f"{summary['units_per_second']:,.0f} examples/s" in last
    assert f"{summary['milliseconds_per_step']:.1f} ms/step" in last


# ---------------------------------------------------------------------------------- the ETA

@pytest.mark.parametrize("step, train_steps, expected", [
    (0, 2000, 8),  # 250, 500, ..., 2000
    (249, 2000, 8),
    (250, 2000, 8),  # The evaluation at 250 runs after that step's progress line.
    (251, 2000, 7),
    (2000, 2000, 1),
    (0, 2100, 9),  # ... 2000, and one after the last step, 2100
    (2050, 2100, 1),
    (2100, 2100, 1),
])
def test_evaluations_left_count_the_one_at_this_step_and_after_the_last(step, train_steps,
                                                                        expected):
    settings = _settings(train_steps=train_steps, eval_interval=250)
    assert loop.evaluations_left(step, settings) == expected


def test_the_eta_counts_the_evaluations_still_to_run(tmp_path):
    # 6 steps, evaluations after steps 2, 4 and 6, each 2 s: steps take milliseconds here, so
    # the ETA is the evaluations'. The first evaluation also traces, so its time is not used:
    # until the second has run, the ETA says how many evaluations it leaves out.
    def evaluate(step):
        time.sleep(2.0)
        return {"loss": 1.0}

    lines = []
    _run(tmp_path, _settings(eval_interval=2), evaluate=evaluate, lines=lines)
    eta = {int(line.split("/")[0].split()[1]): line.split(" | ETA ")[1]
           for line in lines if line.startswith("step ") and " | ETA " in line}
    # Step 1's call traces: its seconds size that line's step part.
    assert eta[1].endswith(" + 3 evaluations") and eta[2] == "0s + 3 evaluations"
    assert eta[3] == "0s + 2 evaluations" and eta[4] == "0s + 2 evaluations"
    assert eta[5] == "2s" and eta[6] == "2s"  # The one at step 6, at the one at step 4's time.
