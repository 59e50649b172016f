"""Fault tolerance: a run stopped by SIGTERM/SIGINT resumes exactly; a NaN loss stops or rolls back.

The interrupted runs receive a real signal, sent to this process from the `log` callback when
it prints the progress line of step k (`log_interval=1`), so the step the signal lands in is
deterministic. An uninterrupted run of the same config is the reference: after the resume, the
final weights, the dropout state, and the learning rate and loss of every step must equal it.
The slow tests do the same through `python -m experiments.train_lm`, on one device and on two
workers of which only one is signalled. NaN losses are injected through a poisoned batch.
"""

import dataclasses
import glob
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_llm import config_validation, presets
from keras_llm.data import language_model_dataset
from keras_llm.training.interruption import StopSignals, TrainingInterrupted
from keras_llm.training.language_model import train_language_model
from keras_llm.training.loop import NonFiniteLossError
from keras_llm.training.optimizer import learning_rate_schedule
from tests.conftest import REPO_ROOT, shared_data_path, tiny_language_model_config

TRAIN_STEPS = 12
SCALE_KEY = "learning_rate_scale/.ATTRIBUTES/VARIABLE_VALUE"


def _config(data_dir, model=None, **train):
    """12 steps, a progress line every step, no periodic checkpoint or evaluation before the end."""
    settings = dict(train_steps=TRAIN_STEPS, warmup_steps=3, log_interval=1,
                    checkpoint_interval=1000, eval_interval=1000, eval_batches=1, sample_length=0)
    settings.update(train)
    config = tiny_language_model_config(data_dir, **settings)
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **(model or {})))


def _quiet(*args):
    pass


def _signal_at(step, signum, lines):
    """A `log` that keeps the lines and sends `signum` to this process at step `step`'s line."""

    def log(line):
        lines.append(line)
        if line.startswith(f"step {step}/"):
            os.kill(os.getpid(), signum)

    return log


def _checkpoint(model_dir, prefix):
    """{name: value} of the latest checkpoint's tensors whose names start with `prefix`."""
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if name.startswith(prefix)}


def _max_difference(a, b):
    assert sorted(a) == sorted(b) and a
    return max(float(np.max(np.abs(a[name] - b[name]))) for name in a)


def _scalars(model_dir, tag):
    """{step: value} of a TensorBoard scalar in MODEL_DIR/logs/train (all event files)."""
    values = {}
    for path in sorted(glob.glob(os.path.join(model_dir, "logs", "train", "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def _interrupt_and_resume(config, model_dir, step, signum):
    lines = []
    before = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted) as stopped:
        train_language_model(config, model_dir, log=_signal_at(step, signum, lines))
    assert signal.getsignal(signum) is before  # The loop's handler is gone again.
    checkpoint = os.path.join(model_dir, "checkpoints", f"ckpt-{step}")
    assert stopped.value.step == step and stopped.value.checkpoint_path == checkpoint
    assert str(stopped.value) == (
        f"Interrupted by {signal.Signals(signum).name} at step {step}; checkpoint saved to "
        f"{checkpoint}; rerun the same command to resume.")
    # The step the signal arrived in was finished, and nothing after it ran.
    assert lines[-1].startswith(f"step {step}/{TRAIN_STEPS} | loss ")
    assert tf.train.latest_checkpoint(os.path.dirname(checkpoint)) == checkpoint
    resumed = train_language_model(config, model_dir, log=_quiet)
    assert resumed["resumed_from_step"] == step and resumed["steps"] == TRAIN_STEPS
    return resumed


def _assert_same_run(reference_dir, model_dir):
    weights = _max_difference(_checkpoint(reference_dir, "model/weights/"),
                              _checkpoint(model_dir, "model/weights/"))
    print(f"max |resumed - uninterrupted| over the weights: {weights:.2e}")
    assert weights <= 1e-6
    # Every step's learning rate and loss, before and after the resume.
    for tag, tolerance in (("learning_rate", 0.0), ("loss", 1e-6)):
        reference, resumed = _scalars(reference_dir, tag), _scalars(model_dir, tag)
        assert sorted(reference) == sorted(resumed) == list(range(1, TRAIN_STEPS + 1))
        for step in range(1, TRAIN_STEPS + 1):
            assert abs(resumed[step] - reference[step]) <= tolerance, (tag, step)
    return weights


@pytest.fixture(scope="module")
def uninterrupted_dir(tmp_path_factory):
    """The model directory of an uninterrupted run of `_config` (dropout 0)."""
    model_dir = str(tmp_path_factory.mktemp("uninterrupted"))
    train_language_model(_config(shared_data_path("tinyshakespeare")), model_dir, log=_quiet)
    return model_dir


def test_sigterm_saves_at_the_step_and_the_resumed_run_is_exact(tiny_shakespeare_dir, tmp_path,
                                                                 uninterrupted_dir):
    config = _config(tiny_shakespeare_dir)
    reference_dir, model_dir = uninterrupted_dir, str(tmp_path / "interrupted")
    _interrupt_and_resume(config, model_dir, step=5, signum=signal.SIGTERM)
    _assert_same_run(reference_dir, model_dir)
    # The learning rate after the resume is the schedule's (warmup then cosine), computed anew.
    schedule = learning_rate_schedule(3e-3, 3e-4, 3, TRAIN_STEPS)
    rates = _scalars(model_dir, "learning_rate")
    for step in range(6, TRAIN_STEPS + 1):  # Step s updates with the rate at iteration s - 1.
        assert math.isclose(rates[step], float(schedule(step - 1)), rel_tol=1e-6)


def test_dropout_continues_exactly_after_sigint(tiny_shakespeare_dir, tmp_path, uninterrupted_dir):
    # The user's default XLA-compiled step (jit_compile auto), whose dropout seed state lives in
    # the compiled step; the other tests here train without XLA (faster to start).
    config = _config(tiny_shakespeare_dir, model={"dropout": 0.2}, jit_compile="auto")
    reference_dir, model_dir = str(tmp_path / "uninterrupted"), str(tmp_path / "interrupted")
    train_language_model(config, reference_dir, log=_quiet)
    _interrupt_and_resume(config, model_dir, step=4, signum=signal.SIGINT)
    _assert_same_run(reference_dir, model_dir)
    # Each step's masks come from the layer seeds (the seed generators' first words, in the
    # checkpoint) and the optimizer step (restored with it): the resumed steps drew the
    # uninterrupted run's masks, or _assert_same_run's per-step losses would differ. Dropout did
    # change the training (other weights than rate 0).
    states = [_checkpoint(d, "model/random_state/") for d in (reference_dir, model_dir)]
    assert states[0] and _max_difference(*states) == 0.0
    assert _max_difference(_checkpoint(uninterrupted_dir, "model/weights/"),
                           _checkpoint(model_dir, "model/weights/")) > 1e-4


# ------------------------------------------------------------------------------ signals alone


def test_stop_signals_record_the_signal_and_restore_the_handlers(capsys):
    strategy = tf.distribute.get_strategy()
    # Start from Python's own Ctrl-C handler, whatever the test runner inherited: a process
    # started in the background by a non-interactive shell (as CI may be) begins with SIGINT
    # ignored, and a second Ctrl-C would then do nothing.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with StopSignals(strategy) as stop:
            assert not stop.stop_requested()
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # Python runs the handler at the next bytecode boundary.
            assert stop.stop_requested() and stop.received == "SIGINT"
            # Said at once, in one line, not as an error.
            assert capsys.readouterr().err == ("SIGINT: stopping after this step, saving a "
                                               "checkpoint... (Ctrl-C again stops at once)\n")
            # A second Ctrl-C acts as without the loop: KeyboardInterrupt at once.
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_stop_signals_outside_the_main_thread_install_nothing():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def run():
        with StopSignals(tf.distribute.get_strategy()) as stop:
            seen.append((signal.getsignal(signal.SIGTERM), stop.stop_requested()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [(before, False)]


# ------------------------------------------------------------------------------ NaN and Inf


def _inject_nan(monkeypatch, at_step, times):
    """Makes the training batch of step `at_step` NaN in the next `times` datasets built.

    A NaN mask makes the step's loss and gradients NaN (and the update spoils the weights), as
    a real divergence would. Datasets built after `times` (e.g. after a rollback) are clean.
    """
    original = language_model_dataset.training_dataset
    built = []

    def training_dataset(token_ids, sequence_length, global_batch_size, seed, start_step=0):
        dataset = original(token_ids, sequence_length, global_batch_size, seed, start_step)
        # batch 1: train_language_model's early check of the corpus length, never iterated.
        if global_batch_size == 1 or len(built) >= times or start_step >= at_step:
            return dataset
        built.append(start_step)
        index = at_step - 1 - start_step  # The batch of step `at_step`.

        def poison(i, batch):
            inputs, targets, mask = batch
            return inputs, targets, tf.where(i == index, mask * np.nan, mask)

        return dataset.enumerate().map(poison)

    monkeypatch.setattr(language_model_dataset, "training_dataset", training_dataset)
    return built


def test_nan_loss_stops_naming_the_step_and_the_last_checkpoint(tiny_shakespeare_dir, tmp_path,
                                                                 monkeypatch):
    _inject_nan(monkeypatch, at_step=7, times=1)
    config = _config(tiny_shakespeare_dir, train_steps=10, checkpoint_interval=5)
    model_dir = str(tmp_path / "run")
    with pytest.raises(NonFiniteLossError) as error:
        train_language_model(config, model_dir, log=_quiet)
    message = str(error.value)
    assert "The training loss is nan (gradient norm nan) at step 7." in message
    assert f"Last good checkpoint: {os.path.join(model_dir, 'checkpoints', 'ckpt-5')}." in message
    assert "--recover_from_nan" in message


@pytest.mark.parametrize("schedule", ["warmup_cosine", "constant"])
def test_nan_loss_rolls_back_once_with_half_the_learning_rate(tiny_shakespeare_dir, tmp_path,
                                                              monkeypatch, schedule):
    built = _inject_nan(monkeypatch, at_step=7, times=1)
    config = _config(tiny_shakespeare_dir, train_steps=10, checkpoint_interval=5,
                     learning_rate_schedule=schedule, recover_from_nan=True)
    model_dir = str(tmp_path / "run")
    lines = []
    results = train_language_model(config, model_dir, log=lines.append)

    rollbacks = [line for line in lines if "rolled back" in line]
    checkpoint = os.path.join(model_dir, "checkpoints", "ckpt-5")
    assert rollbacks == [
        f"The training loss is nan (gradient norm nan) at step 7; rolled back to {checkpoint} "
        "(step 5) with the learning rate times 0.5 (rollback 1 of at most 3)."]
    assert built == [0]  # Only the first dataset was poisoned; the rebuilt one starts at step 5.
    assert results["nan_rollbacks"] == 1 and results["steps"] == 10
    assert math.isfinite(results["train"]["loss"]) and math.isfinite(results["validation"]["loss"])
    weights = _checkpoint(model_dir, "model/weights/")
    assert all(np.all(np.isfinite(value)) for value in weights.values())

    # Steps 1-5 at the configured rate; steps 6-10, retrained after the rollback, at half of it.
    if schedule == "constant":
        expected = {step: 3e-3 for step in range(1, 11)}
    else:
        rate = learning_rate_schedule(3e-3, 3e-4, 3, 10)
        expected = {step: float(rate(step - 1)) for step in range(1, 11)}
    expected.update({step: 0.5 * expected[step] for step in range(6, 11)})
    rates = _scalars(model_dir, "learning_rate")
    assert sorted(rates) == list(range(1, 11))
    for step, value in expected.items():
        assert math.isclose(rates[step], value, rel_tol=1e-6), step

    # The lowered rate is in the checkpoint, so a resumed run keeps it: a constant rate is
    # scaled like a schedule (`optimizer.ScaledSchedule`), 3e-3 x 0.5 = 1.5e-3.
    final = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.dirname(checkpoint)))
    assert final.get_tensor(SCALE_KEY) == 0.5
    # And it does: two more steps continue at half the (now 12-step) schedule's rate.
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, train_steps=12))
    train_language_model(longer, model_dir, log=_quiet)
    rates = _scalars(model_dir, "learning_rate")
    full = 3e-3 if schedule == "constant" else float(learning_rate_schedule(3e-3, 3e-4, 3, 12)(10))
    assert math.isclose(rates[11], 0.5 * full, rel_tol=1e-6)


def test_nan_recoveries_are_bounded(tiny_shakespeare_dir, tmp_path, monkeypatch):
    _inject_nan(monkeypatch, at_step=3, times=100)  # Every rebuilt dataset diverges again.
    config = _config(tiny_shakespeare_dir, train_steps=6, recover_from_nan=True,
                     max_nan_recoveries=2, nan_learning_rate_factor=0.1)
    model_dir = str(tmp_path / "run")
    lines = []
    with pytest.raises(NonFiniteLossError) as error:
        train_language_model(config, model_dir, log=lines.append)
    # No checkpoint existed yet, so the run saved one at step 0 to roll back to.
    checkpoint = os.path.join(model_dir, "checkpoints", "ckpt-0")
    assert [line for line in lines if "rolled back" in line] == [
        f"The training loss is nan (gradient norm nan) at step 3; rolled back to {checkpoint} "
        f"(step 0) with the learning rate times 0.1 (rollback {n} of at most 2)." for n in (1, 2)]
    assert str(error.value).startswith(
        "The training loss is nan (gradient norm nan) at step 3 after 2 rollback(s) "
        f"(--max_nan_recoveries=2). Last good checkpoint: {checkpoint}.")
    # Scale 1 -> 0.1 -> 0.01, each time from the value before restoring the checkpoint (1.0).
    rates = _scalars(model_dir, "learning_rate")
    rate = learning_rate_schedule(3e-3, 3e-4, 3, 6)
    assert math.isclose(rates[2], 0.01 * float(rate(1)), rel_tol=1e-6)


def test_bad_recovery_flags_are_rejected(tiny_shakespeare_dir):
    config = _config(tiny_shakespeare_dir, max_nan_recoveries=0, nan_learning_rate_factor=1.5)
    with pytest.raises(ValueError) as error:
        config_validation.validate(config)
    assert "--max_nan_recoveries must be >= 1; got 0." in str(error.value)
    assert "--nan_learning_rate_factor must be in (0, 1); got 1.5." in str(error.value)


# ------------------------------------------------------------------------------ the command


COMMAND_STEPS = 40  # Steps take milliseconds: room for the signal to land before the end.


def _train_lm(model_dir, data_dir):
    flags = {"data_dir": data_dir, "model_dir": model_dir, "strategy": "one_device",
             "num_layers": 2, "num_heads": 2, "hidden_dim": 32, "sequence_length": 32,
             "batch_size": 8, "train_steps": COMMAND_STEPS, "warmup_steps": 2,
             "sample_length": 0, "eval_interval": COMMAND_STEPS, "eval_batches": 1,
             "checkpoint_interval": COMMAND_STEPS, "log_interval": 1}
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.train_lm"] + [f"--{k}={v}" for k, v in flags.items()],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow  # About 20 s: three processes that each import TensorFlow.
def test_train_lm_command_stops_on_sigterm_and_the_same_command_resumes(tmp_path):
    data_dir = str(shared_data_path("tinyshakespeare"))
    reference_dir, model_dir = str(tmp_path / "uninterrupted"), str(tmp_path / "interrupted")
    children = [_train_lm(reference_dir, data_dir)]  # The reference runs meanwhile.
    try:
        children.append(_train_lm(model_dir, data_dir))
        process = children[-1]
        for line in process.stdout:
            if line.startswith(f"step 3/{COMMAND_STEPS} "):
                process.send_signal(signal.SIGTERM)
                break
        stdout, stderr = process.communicate(timeout=120)
        # The signal lands in step 3 or a little later (the child does not wait for us).
        match = re.search(r"^Interrupted by SIGTERM at step (\d+); checkpoint saved to "
                          r"(\S+); rerun the same command to resume\.$", stderr, re.M)
        assert process.returncode == 128 + signal.SIGTERM and match, stderr[-3000:]
        step, checkpoint = int(match.group(1)), match.group(2)
        assert 3 <= step < COMMAND_STEPS
        assert checkpoint == os.path.join(model_dir, "checkpoints", f"ckpt-{step}")
        assert tf.train.latest_checkpoint(os.path.dirname(checkpoint)) == checkpoint
        assert f"step {step + 1}/" not in stdout and "done:" not in stdout

        children.append(_train_lm(model_dir, data_dir))  # The same command again.
        stdout, stderr = children[-1].communicate(timeout=120)
        assert children[-1].returncode == 0, stderr[-3000:]
        assert f"Resumed from {checkpoint} at step {step}." in stdout
        assert f"step {step}/" not in stdout and f"step {step + 1}/" in stdout
        assert f"done: {COMMAND_STEPS} steps" in stdout
        children[0].communicate(timeout=120)
        assert children[0].returncode == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    difference = _max_difference(_checkpoint(reference_dir, "model/weights/"),
                                 _checkpoint(model_dir, "model/weights/"))
    print(f"interrupted at step {step}; max |resumed command - uninterrupted command| over the "
          f"weights: {difference:.2e}")
    assert difference <= 1e-6


def _command_flags(**flags):
    return {"num_layers": 2, "num_heads": 2, "hidden_dim": 32, "sequence_length": 32,
            "batch_size": 8, "train_steps": COMMAND_STEPS, "warmup_steps": 2, "sample_length": 0,
            "eval_interval": COMMAND_STEPS, "eval_batches": 1,
            "checkpoint_interval": COMMAND_STEPS, "log_interval": 1, **flags}


def _preset_with(flags):
    """The config `experiments.train_lm` builds from the default preset and these flags."""
    config = presets.language_model_config("shakespeare_char")
    sections = {}
    for section in ("data", "model", "train"):
        values = getattr(config, section)
        names = {field.name for field in dataclasses.fields(values)}
        sections[section] = dataclasses.replace(
            values, **{name: value for name, value in flags.items() if name in names})
    return dataclasses.replace(config, **sections)


def _start_workers(flags, worker_tmp):
    from keras_llm.training import launcher

    command = [sys.executable, "-m", "experiments.train_lm"] + [f"--{k}={v}"
                                                               for k, v in flags.items()]
    addresses = [f"127.0.0.1:{port}" for port in launcher.free_loopback_ports(2)]
    return [
        subprocess.Popen(command, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         env={**launcher.worker_environment(os.environ, addresses, index, 1),
                              "PYTHONUNBUFFERED": "1", "TMPDIR": str(worker_tmp)})
        for index in range(2)]


@pytest.mark.slow  # 40-90 s: two TensorFlow workers, twice, and a reference run.
@pytest.mark.multiworker
def test_workers_stop_at_the_same_step_and_resume_exactly(tmp_path):
    data_dir = str(shared_data_path("tinyshakespeare"))
    model_dir = str(tmp_path / "run")
    worker_tmp = tmp_path / "worker_tmp"  # Where the other worker's temporary directory goes.
    worker_tmp.mkdir()
    flags = _command_flags(data_dir=data_dir, model_dir=model_dir, strategy="multi_worker",
                           cluster_timeout_seconds=60)
    workers = _start_workers(flags, worker_tmp)
    try:
        # Only worker 1, not the chief, is signalled, as when one pod of a job is preempted.
        for line in workers[1].stdout:
            if line.startswith(f"step 3/{COMMAND_STEPS} "):
                workers[1].send_signal(signal.SIGTERM)
                break
        outputs = [worker.communicate(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    messages = []
    for worker, (_, stderr) in zip(workers, outputs):
        match = re.search(r"^Interrupted by (.+) at step (\d+); checkpoint saved to (\S+); "
                          r"rerun the same command to resume\.$", stderr, re.M)
        # Both exit as SIGTERM-stopped (143), the one not signalled too.
        assert worker.returncode == 128 + signal.SIGTERM and match, stderr[-3000:]
        messages.append(match.groups())
    step = int(messages[0][1])
    checkpoint = os.path.join(model_dir, "checkpoints", f"ckpt-{step}")
    # Both stopped after the same step and name the chief's checkpoint, which exists.
    assert messages == [("a stop signal on another worker", str(step), checkpoint),
                        ("SIGTERM", str(step), checkpoint)]
    assert 3 <= step < COMMAND_STEPS
    assert tf.train.latest_checkpoint(os.path.dirname(checkpoint)) == checkpoint
    assert os.listdir(worker_tmp) == []  # The other worker's copy was removed.

    # The same command again: both workers resume from the chief's checkpoint and finish.
    workers = _start_workers(flags, worker_tmp)
    try:
        # Meanwhile, the reference: MirroredStrategy on 2 of this process's logical CPUs.
        reference_dir = str(tmp_path / "mirrored")
        config = _preset_with(_command_flags(data_dir=data_dir, strategy="mirrored",
                                             num_cpu_devices=2))
        train_language_model(config, reference_dir, log=_quiet)
        outputs = [worker.communicate(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
        assert f"Resumed from {checkpoint} at step {step}." in stdout
        assert f"done: {COMMAND_STEPS} steps" in stdout
    difference = _max_difference(_checkpoint(reference_dir, "model/weights/"),
                                 _checkpoint(model_dir, "model/weights/"))
    print(f"two workers stopped at step {step} and resumed; max |weights - mirrored 2 devices, "
          f"uninterrupted|: {difference:.2e}")
    assert difference <= 1e-5  # As for uninterrupted runs: the all-reduce order differs.
