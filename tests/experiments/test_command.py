"""Exit statuses of the training commands (`experiments.command.run_job`)."""

import os
import signal
import subprocess
import sys

import pytest

from experiments.command import EXIT_FAILURE, run_job
from keras_llm.training.interruption import TrainingInterrupted
from tests.conftest import REPO_ROOT


def _raise(error):
    def job():
        raise error
    return job


def test_success_returns_the_results():
    assert run_job(lambda: {"steps": 3}) == ({"steps": 3}, 0)


@pytest.mark.parametrize("signal_name, status", [
    ("SIGINT", 130),  # 128 + 2, what a shell reports for Ctrl-C.
    ("SIGTERM", 143),  # 128 + 15.
    ("a stop signal on another worker", 143),
])
def test_interrupted_run_exits_with_the_shell_signal_status(capsys, signal_name, status):
    interrupted = TrainingInterrupted(signal_name, 7, "/runs/x/checkpoints/ckpt-7")
    assert interrupted.exit_status == status
    assert run_job(_raise(interrupted)) == (None, status)
    assert capsys.readouterr().err == (
        f"Interrupted by {signal_name} at step 7; checkpoint saved to "
        "/runs/x/checkpoints/ckpt-7; rerun the same command to resume.\n")
    assert status == 128 + (signal.SIGINT if signal_name == "SIGINT" else signal.SIGTERM)


@pytest.mark.parametrize("error", [ValueError("--batch_size must be >= 1; got 0."),
                                   FloatingPointError("NaN loss at step 5")])
def test_expected_failures_print_one_line_and_exit_1(capsys, error):
    assert run_job(_raise(error)) == (None, EXIT_FAILURE)
    assert capsys.readouterr().err == f"error: {error}\n"


def test_ctrl_c_outside_the_training_steps_exits_130_without_a_traceback(capsys):
    assert run_job(_raise(KeyboardInterrupt())) == (None, 130)
    assert capsys.readouterr().err == (
        "Interrupted (Ctrl-C); rerunning resumes from the last checkpoint, if any.\n")


def test_bugs_keep_their_traceback():
    with pytest.raises(KeyError):
        run_job(_raise(KeyError("bug")))


def test_out_of_memory_names_the_flags_to_lower(capsys):
    import tensorflow as tf

    error = tf.errors.ResourceExhaustedError(
        None, None, "Exception encountered when calling TransformerDecoderBlock.call().\n"
        "OOM when allocating tensor with shape[12,4,50000,50000] and type float\n"
        "details the user cannot act on")
    assert run_job(_raise(error)) == (None, EXIT_FAILURE)
    assert capsys.readouterr().err == (
        "error: out of memory (OOM when allocating tensor with shape[12,4,50000,50000]). Lower --batch_size or --sequence_length (attention needs batch_size x num_heads "
        "x sequence_length^2 floats per layer), or raise --gradient_accumulation_steps to split "
        "each batch.\n")


# `experiments.command.run` under `python -m`, with a Ctrl-C raised the way TensorFlow's import
# can meet one: inside source text that `exec` runs (`collections.namedtuple` uses `eval`).
_INTERRUPTED_COMMAND = '''
from experiments import command

def main(argv):
    {body}

if __name__ == "__main__":
    command.run(main, __doc__)
'''


@pytest.mark.parametrize("body", [
    'exec("raise KeyboardInterrupt")',  # Start-up: reaches `run`'s own except.
    'return command.run_job(lambda: exec("raise KeyboardInterrupt"))[1]',  # Caught by run_job.
])
def test_a_ctrl_c_caught_after_exec_still_exits_130(tmp_path, body):
    (tmp_path / "interrupted_command.py").write_text(_INTERRUPTED_COMMAND.format(body=body))
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO_ROOT)]))
    process = subprocess.run([sys.executable, "-m", "interrupted_command"], cwd=tmp_path,
                             env=environment, capture_output=True, text=True, timeout=60)
    assert process.returncode == 130, process.stderr  # Not -2 (killed by SIGINT).
    # The last line: run_job's import of TensorFlow prints its start-up lines before it.
    assert process.stderr.splitlines()[-1] == (
        "Interrupted (Ctrl-C); rerunning resumes from the last checkpoint, if any.")
