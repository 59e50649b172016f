"""A new user's first run, as a subprocess with output to a pipe (not a terminal): one flag for a
smoke run, a clean log (no control characters, no TensorFlow start-up noise), and a rerun of the
finished run that says so once."""

import re
import subprocess
import sys

import pytest

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


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """`(corpus, model_dir, process)` of the first run (about 15 s, shared by the tests)."""
    tmp_path = tmp_path_factory.mktemp("first_run")
    corpus = tmp_path / "my_text.txt"
    corpus.write_bytes(b"To be, or not to be: that is the question.\r\n" * 40)  # Windows ends.
    return corpus, tmp_path / "run", _train(corpus, tmp_path / "run")


def test_a_smoke_run_logs_cleanly_and_a_rerun_says_it_already_finished(first_run):
    corpus, model_dir, first = first_run
    assert first.returncode == 0, first.stderr[-3000:]
    output = first.stdout + first.stderr
    assert not CONTROL.search(output), repr(CONTROL.search(output))
    assert not [line for line in output.splitlines() if any(n in line for n in NOISE)], output
    assert "note: --warmup_steps=0 (10% of --train_steps=3)" in first.stdout
    assert re.search(r"^done: 3 steps, validation loss \d", first.stdout, re.M)

    again = _train(corpus, model_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already finished at step 3") == 1
    assert "validation |" not in again.stdout and "0 tokens/s" not in again.stdout
    assert not again.stderr.strip(), again.stderr


def _sample(model_dir, *flags):
    return subprocess.run(
        [sys.executable, "-m", "experiments.sample", f"--model_dir={model_dir}",
         "--prompt=To bé", "--max_new_tokens=6", "--top_k=1000", *flags],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_sampling_prints_its_seed_names_unknown_characters_and_clamps_top_k(first_run):
    _, model_dir, first = first_run
    assert first.returncode == 0
    sample = _sample(model_dir)
    assert sample.returncode == 0, sample.stderr[-3000:]
    seed = re.search(r"^# seed (\d+); rerun with --seed=\1 to reproduce$", sample.stderr, re.M)
    assert seed, sample.stderr
    assert "read as [UNK]: 'é'" in sample.stderr
    assert re.search(r"note: --top_k=1000 is more than the vocabulary's \d+ tokens; clamped",
                     sample.stderr)
    assert sample.stdout.startswith("To b[UNK]")
    assert _sample(model_dir, f"--seed={seed.group(1)}").stdout == sample.stdout


def test_an_lstm_run_prints_no_start_up_noise_and_its_time_in_all(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("To be, or not to be: that is the question.\n" * 40)
    process = subprocess.run(
        [sys.executable, "-m", "experiments.train_lm", f"--corpus={corpus}",
         f"--model_dir={tmp_path / 'run'}", "--architecture=lstm", "--train_steps=2",
         "--num_layers=1", "--hidden_dim=8", "--sequence_length=8", "--batch_size=2",
         "--eval_batches=1", "--sample_length=0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    output = process.stdout + process.stderr
    # The one line left on purpose (experiments/command.py): Keras's RNN loop transposes the
    # bool mask and TensorFlow's oneDNN pass says so once, mid-run.
    known = "oneDNN supports DT_BOOL only on platforms with AVX-512"
    noise = [line for line in output.splitlines()
             if any(n in line for n in NOISE) and known not in line]
    assert not noise, output
    assert re.search(r"^done: 2 steps, .*, \d+ s training, \d+ s in all$", process.stdout,
                     re.M), process.stdout


def test_greedy_sampling_prints_no_seed(first_run):
    _, model_dir, first = first_run
    assert first.returncode == 0
    sample = _sample(model_dir, "--temperature=0")
    assert sample.returncode == 0, sample.stderr[-3000:]
    assert "seed" not in sample.stderr, sample.stderr
