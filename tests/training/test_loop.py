"""`run_training` on a tiny model: NaN stop and rollback, stop requests, settings."""

import dataclasses
import os
import signal

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
