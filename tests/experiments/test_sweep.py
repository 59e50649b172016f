"""`python -m experiments.sweep` end to end: flag checks (fast) and a real interrupted sweep."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT, shared_data_path

# Tiny GPT trials over Tiny Shakespeare (the sizes of tests/conftest.py's tiny config).
TINY = ["--num_heads=2", "--hidden_dim=32", "--sequence_length=32", "--batch_size=8",
        "--eval_batches=2", "--sample_length=0", "--strategy=one_device", "--warmup_steps=2"]


def _sweep(sweep_dir, *flags, extra=()):
    return [sys.executable, "-m", "experiments.sweep", f"--sweep_dir={sweep_dir}", *flags,
            "--", *extra]


@pytest.mark.parametrize("flags, message", [
    (["--trainer=train_gan", "--grid=num_layers=1,2"], "error: --trainer must be train_lm or "
                                                         "train_classifier; got 'train_gan'."),
    (["--grid=num_layers=1,x"], "error: --grid=num_layers=1,x: 'x' is not an integer."),
    (["--grid=num_layers=1,2", "--metric=validation.accuracy"],
     "error: --metric must be one of validation.loss, validation.perplexity, train.loss, "
     "tokens_per_second for --trainer=train_lm; got 'validation.accuracy'."),
    (["--grid=num_layers=1,2", "--preset=nope"], "error: --preset='nope' is not a language-model preset; known:"),
])
def test_bad_sweep_flags_fail_before_any_trial(tmp_path, flags, message):
    process = subprocess.run(_sweep(tmp_path / "sweep", *flags, extra=["--train_steps=5"]),
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert process.returncode == 1, process.stderr
    assert message.lower() in process.stderr.lower()
    assert not (tmp_path / "sweep").exists()


def test_extra_flags_may_not_set_what_the_sweep_sets(tmp_path):
    process = subprocess.run(_sweep(tmp_path / "s", "--grid=num_layers=1,2",
                                    extra=["--model_dir=/tmp/x"]),
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert process.returncode == 1
    assert "error: --model_dir=/tmp/x after --: the sweep sets --model_dir for each trial." \
        in process.stderr


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_running_a_finished_trial_twice(tmp_path):
    data_dir = str(shared_data_path("tinyshakespeare"))
    sweep_dir = tmp_path / "sweep"
    command = _sweep(sweep_dir, "--trainer=train_lm", "--grid=num_layers=1,2",
                     "--metric=validation.loss",
                     extra=TINY + [f"--data_dir={data_dir}", "--train_steps=400",
                                   "--eval_interval=400", "--log_interval=10",
                                   "--checkpoint_interval=400"])
    first, second = (sweep_dir / "000-num_layers=1", sweep_dir / "001-num_layers=2")
    sweep = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        # Interrupt once the first trial is done and the second is training.
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            log = second / "sweep.log"
            if log.exists() and re.search(r"^step \d+/400", log.read_text(), re.M):
                break
            time.sleep(0.5)
        assert (first / "results.json").exists()
        sweep.send_signal(signal.SIGINT)
        output, _ = sweep.communicate(timeout=180)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 130, output
    assert "001-num_layers=2: interrupting" in output
    assert not (second / "results.json").exists()
    stopped = re.search(r"^error: Interrupted by SIGINT at step (\d+); checkpoint saved to "
                        r".*ckpt-(\d+);", (second / "sweep.log").read_text(), re.M)
    assert stopped and stopped[1] == stopped[2], (second / "sweep.log").read_text()
    assert "| interrupted |" in (sweep_dir / "leaderboard.md").read_text()

    rerun = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "000-num_layers=1: finished earlier (results.json), not run again." in rerun.stdout
    # Each trial finished exactly once; the second resumed from its interruption checkpoint.
    first_log, second_log = (first / "sweep.log").read_text(), (second / "sweep.log").read_text()
    assert first_log.count("=== sweep: started") == 1 and first_log.count("done:") == 1
    assert second_log.count("=== sweep: started") == 2 and second_log.count("done:") == 1
    assert f"Resumed from {second}/checkpoints/ckpt-{stopped[1]} at step {stopped[1]}." \
        in second_log
    board = (sweep_dir / "leaderboard.md").read_text().splitlines()
    assert len(board) == 4 and all("| finished |" in line for line in board[2:])
    assert f"best: {sweep_dir}/" in rerun.stdout


def test_failed_trials_are_reported_with_their_error_and_do_not_stop_the_sweep(tmp_path):
    # Random trials whose training command rejects its flags (before TensorFlow loads): each
    # fails in about a second, and the sweep reports every one with the trainer's error line.
    sweep_dir = tmp_path / "sweep"
    command = _sweep(sweep_dir, "--trainer=train_classifier", "--random=2", "--seed=1",
                     "--range=learning_rate=1e-4:1e-2:log", "--metric=validation.accuracy",
                     "--parallel=2", extra=["--train_steps=0", "--epochs=0"])
    process = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120)
    assert process.returncode == 1, process.stdout + process.stderr
    names = sorted(os.listdir(sweep_dir))
    assert len([name for name in names if name.startswith(("000-", "001-"))]) == 2
    assert "error: 2 trial(s) failed:" in process.stderr
    board = (sweep_dir / "leaderboard.md").read_text().splitlines()
    assert len(board) == 4
    for line in board[2:]:
        assert "| failed |" in line
        assert "error: Invalid configuration: --train_steps must be >= 1; got 0." in line
    assert "best:" not in process.stdout
