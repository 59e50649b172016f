"""Every command rejects bad flags in a fraction of a second, before TensorFlow is imported.

Each command runs in a subprocess in which `import tensorflow` is made to fail
(`sys.modules["tensorflow"] = None`): a command that imported TensorFlow before rejecting a
flag would die with an ImportError traceback instead of its one-line message. The last test
shows that the block does bite once a command gets as far as training.
"""

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT, shared_data_path

# Runs `python -m <module> <flags>` with TensorFlow made unimportable.
_WITHOUT_TENSORFLOW = (
    "import runpy, sys; sys.modules['tensorflow'] = None; module = sys.argv.pop(1); "
    "runpy.run_module(module, run_name='__main__', alter_sys=True)"
)
# Far above the ~0.1 s these take, far below TensorFlow's ~5 s import on this machine.
_SECONDS = 5.0


def _run_without_tensorflow(module, *flags):
    started = time.monotonic()
    process = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, module, *flags],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    return process, time.monotonic() - started


@pytest.mark.parametrize("module, flags, message", [
    ("experiments.train_lm", ["--preset=nope"],
     "error: --preset='nope' is not a language-model preset; known: chinese_poetry_char, "
     "python_docs_wordpiece, shakespeare_char, shakespeare_char_lstm."),
    ("experiments.train_lm", ["--batch_size=0", "--dropout=1.5", "--strategy=tpu"],
     "error: Invalid configuration: --dropout must be in [0, 1); got 1.5. --strategy must be "
     "auto or one_device or mirrored or multi_worker; got 'tpu'. --batch_size must be >= 1; "
     "got 0."),
    ("experiments.train_lm", ["--train_steps=20", "--warmup_steps=50"],
     "error: Invalid configuration: --warmup_steps must be in [0, --train_steps=20); got 50."),
    ("experiments.train_classifier", ["--preset=cnn"],
     "error: --preset='cnn' is not a classifier preset; known: bilstm, lstm_baseline, "
     "transformer."),
    ("experiments.train_classifier", ["--dataset=files", "--hidden_dim=30", "--num_heads=4",
                                      "--architecture=transformer"],
     "error: Invalid configuration: --train_file must be set when --dataset=files; got None. "
     "--hidden_dim must be divisible by --num_heads=4; got 30."),
    ("experiments.benchmark_train", ["--preset=nope"],
     "error: --preset='nope' is not a language-model preset"),
    ("experiments.benchmark_train", ["--gradient_accumulation_steps=5"],
     "error: Invalid configuration: --batch_size must be divisible by "
     "--gradient_accumulation_steps=5; got 12."),
    ("experiments.benchmark_scaling", ["--preset=nope"],
     "error: --preset='nope' is not a language-model preset"),
    ("experiments.train_lm", ["--dtype_policy=float8"],
     "error: Invalid configuration: --dtype_policy must be float32 or mixed_bfloat16 or mixed_float16; got 'float8'."),
    ("experiments.train_lm", ["--jit_compile=maybe"],
     "error: Invalid configuration: --jit_compile must be auto or true or false; got 'maybe'."),
    ("experiments.train_lm", ["--steps_per_execution=0"],
     "error: Invalid configuration: --steps_per_execution must be >= 1; got 0."),
    # NumPy's seeds are 32-bit: this failed after the run directory was written.
    ("experiments.train_lm", ["--seed=-1"],
     "error: Invalid configuration: --seed must be in [0, 2**32 - 1]; got -1."),
    ("experiments.train_classifier", ["--seed=4294967296"],
     "error: Invalid configuration: --seed must be in [0, 2**32 - 1]; got 4294967296."),
    ("experiments.sample", ["--model_dir=/nonexistent/run"],
     "error: /nonexistent/run/config.json not found: is --model_dir=/nonexistent/run a "
     "training run?"),
    ("experiments.sample", ["--model_dir=/nonexistent/run", "--prompt="],
     "error: --prompt is empty; give at least one character to continue"),
    ("experiments.evaluate", ["--model_dir=/nonexistent/run", "--data=x.tsv"],
     "error: /nonexistent/run/config.json not found"),
    ("experiments.train_lm", ["--export_dir="], "error: --export_dir must name a folder"),
    ("experiments.train_lm", ["--export_dir=/proc/no/such"],
     "error: --export_dir=/proc/no/such: cannot create it"),
    ("experiments.train_classifier", ["--export_dir=/dev/null"],
     "error: --export_dir=/dev/null is a file, not a folder."),
    ("experiments.export", ["--model_dir=/nonexistent/run", "--export_dir=x"],
     "error: /nonexistent/run/config.json not found"),
    ("experiments.train_lm", ["--data_dir=README.md"],
     "error: Invalid configuration: --data_dir must be a folder (searched first for the named "
     "corpus's files, e.g. the one holding tinyshakespeare's input.txt; a text file of your own "
     "goes in --corpus); got 'README.md', a file."),
    ("experiments.train_lm", ["--data_dir=/nonexistent/data"],
     "error: Invalid configuration: --data_dir must be a folder (searched first for the named "
     "corpus's files, e.g. the one holding tinyshakespeare's input.txt; a text file of your own "
     "goes in --corpus); got '/nonexistent/data', which does not exist."),
    ("experiments.train_classifier", ["--encoding=utf-9"],
     "error: Invalid configuration: --encoding must be a Python codec name, e.g. utf-8 or "
     "cp1252; got 'utf-9'."),
    ("experiments.train_classifier", ["--dataset=sst2", "--data_dir=README.md"],
     "error: Invalid configuration: --data_dir must be a folder (holding the dataset's files, "
     "e.g. sst2's train.tsv, dev.tsv and test.tsv); got 'README.md', a file."),
])
def test_bad_values_fail_in_one_line_before_tensorflow(module, flags, message):
    process, seconds = _run_without_tensorflow(module, *flags)
    assert process.returncode == 1, process.stderr
    assert process.stderr.startswith(message), process.stderr
    assert len(process.stderr.splitlines()) == 1, process.stderr
    assert seconds < _SECONDS


def test_a_bad_train_steps_is_reported_alone():
    # Only the root cause: the preset's warm-up of 100 is not reported against --train_steps=0.
    process, _ = _run_without_tensorflow("experiments.train_lm", "--train_steps=0")
    assert process.returncode == 1
    assert process.stderr == "error: Invalid configuration: --train_steps must be >= 1; got 0.\n"


def test_a_run_of_the_other_kind_is_named_before_tensorflow(tmp_path):
    from keras_llm import config as config_lib, presets

    (tmp_path / "config.json").write_text(
        config_lib.to_json(presets.language_model_config("shakespeare_char")))
    process, _ = _run_without_tensorflow("experiments.evaluate", f"--model_dir={tmp_path}",
                                         "--data=x.tsv")
    assert process.returncode == 1
    assert process.stderr == (
        f"error: --model_dir={tmp_path} holds a language-model run ({tmp_path}/config.json); "
        "expected a classifier run. Language-model runs are read by experiments.train_lm, "
        "experiments.sample.\n")


@pytest.mark.parametrize("module, flags, message", [
    ("experiments.train_lm", ["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
    ("experiments.train_lm", ["--batch_size=twelve"], "flag --batch_size=twelve: invalid literal"),
    ("experiments.sample", ["--model_dir=run", "--top_p=0"], "--top_p must be in (0, 1]."),
    ("experiments.launch_local", ["--num_workers=0", "--", "true"],
     "flag --num_workers=0: 0 is not a positive integer"),
    ("experiments.benchmark_scaling", ["--batch_size=3"], "--batch_size must be even"),
])
def test_flag_typos_are_absl_usage_errors_before_tensorflow(module, flags, message):
    process, seconds = _run_without_tensorflow(module, *flags)
    assert process.returncode == 1, process.stderr
    assert process.stderr.startswith("FATAL Flags parsing error:") and message in process.stderr
    assert "Traceback" not in process.stderr
    assert seconds < _SECONDS


def test_benchmark_rejects_an_unknown_section_before_tensorflow():
    process, seconds = _run_without_tensorflow("experiments.benchmark", "--skip=gpt,bogus")
    assert process.returncode == 1 and seconds < _SECONDS
    assert process.stderr == ("error: --skip: unknown section(s) ['bogus']; known: gpt, lstm, "
                              "pipeline, scaling, generation.\n")


def test_train_steps_alone_passes_the_checks_with_one_note():
    # A valid config gets as far as training, where the import is blocked: the block works,
    # and the note about the shortened warm-up came before it.
    process, _ = _run_without_tensorflow("experiments.train_lm", "--train_steps=20",
                                         "--model_dir=/nonexistent/run")
    assert process.stdout == ("note: --warmup_steps=2 (10% of --train_steps=20) instead of the "
                              "preset's 100; set --warmup_steps to choose another.\n")
    assert "import of tensorflow halted; None in sys.modules" in process.stderr
    assert process.returncode == 1


def test_a_refused_config_prints_no_note():
    # --train_steps=20 alone would shorten the warm-up with a note; with a bad flag beside it
    # the error is all the command says.
    process, _ = _run_without_tensorflow("experiments.train_lm", "--train_steps=20",
                                         "--dropout=1.5")
    assert process.returncode == 1
    assert process.stdout == ""
    assert process.stderr == ("error: Invalid configuration: --dropout must be in [0, 1); "
                              "got 1.5.\n")


# About 2 s: TensorFlow starts loading, then the signal lands.
def test_ctrl_c_during_start_up_exits_130_in_one_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.train_lm", "--train_steps=20",
         f"--data_dir={shared_data_path('tinyshakespeare')}", f"--model_dir={tmp_path / 'run'}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Python leaves SIGINT ignored if it starts ignored, as in a background job of a
        # non-interactive shell (`pytest &`, nohup): the command would never see the signal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1.5)  # Flags are checked (~0.1 s); TensorFlow takes seconds to import.
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == ("Interrupted (Ctrl-C); rerunning resumes from the "
                                       "last checkpoint, if any.")
    assert not (tmp_path / "run").exists()
