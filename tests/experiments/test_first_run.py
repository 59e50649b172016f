"""A new user's first run, as a subprocess with output to a pipe (not a terminal): one flag for a
smoke run, a clean log (no control characters, no TensorFlow start-up noise), and a rerun of the
finished run that says so once."""

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT

# Anything but text and "\n": "\r" redraws, ANSI escapes, backspaces.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
NOISE = ("cuInit", "Could not find cuda drivers", "absl::InitializeLog", "oneDNN")


def _train(corpus, model_dir):
    return subprocess.run(
        [sys.executable, "-m", "experiments.train_lm", f"--corpus={corpus}",
         f"--model_dir={model_dir}", "--train_steps=3",
         # Small and quick; the point is the log, not the model.
         "--num_layers=1", "--hidden_dim=16", "--num_heads=2", "--sequence_length=16",
         "--batch_size=4", "--eval_batches=1", "--sample_length=4"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_a_smoke_run_logs_cleanly_and_a_rerun_says_it_already_finished(tmp_path):
    corpus = tmp_path / "my_text.txt"
    corpus.write_bytes(b"To be, or not to be: that is the question.\r\n" * 40)  # Windows ends.
    first = _train(corpus, tmp_path / "run")
    assert first.returncode == 0, first.stderr[-3000:]
    output = first.stdout + first.stderr
    assert not CONTROL.search(output), repr(CONTROL.search(output))
    assert not [line for line in output.splitlines() if any(n in line for n in NOISE)], output
    assert "note: --warmup_steps=0 (10% of --train_steps=3)" in first.stdout
    assert re.search(r"^done: 3 steps, validation loss \d", first.stdout, re.M)

    again = _train(corpus, tmp_path / "run")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already finished at step 3") == 1
    assert "validation |" not in again.stdout and "0 tokens/s" not in again.stdout
    assert not again.stderr.strip(), again.stderr
