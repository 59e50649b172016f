"""What the commands share: flags checked before TensorFlow loads, `--help`, exit statuses.

Every command parses and checks its flags (and, for the training commands, the whole config)
before it imports TensorFlow, which takes seconds: a typo, an unknown preset or a bad value is
reported in well under a second as one `error: ...` line with status 1 (absl's own flag errors
keep absl's message and its status 1). What a user can fix later on (bad data, a model directory
of another run, a NaN loss) is reported the same way by `run_job`, and Ctrl-C at any point
before the training steps exits 130 with one line instead of a traceback.

TensorFlow's log lines: `TF_CPP_MIN_LOG_LEVEL=2` (set below, before TensorFlow is imported, and
only if the user has not set it) hides its C++ INFO and WARNING lines. It cannot hide the lines
TensorFlow 2.21 prints while its shared libraries load, on a machine without a GPU:
"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
"cudart_stub.cc: Could not find cuda drivers", "port.cc: oneDNN custom operations are on", and
at the first device query "cuda_platform.cc: failed call to cuInit". They are written through
Abseil's C++ logging before anything calls `absl::InitializeLog()`, and until then Abseil
writes every message to stderr whatever its severity (see abseil-cpp PRs #1718 and #1957, and
tensorflow PR #102212; measured here with TF 2.21 the banner still appears, with
TF_CPP_MIN_LOG_LEVEL=3 too). So `check_flags`, once the flags are good, imports TensorFlow,
tensorflow-text and Keras and makes the first device query with file descriptor 2 pointed at a
temporary file, then writes that file back to stderr without those known lines
(`import_tensorflow_quietly`). Anything else (a real import failure, a GPU's own lines) is
written back unchanged. A user who sets TF_CPP_MIN_LOG_LEVEL below 2 sees everything.

One line is left, at the first LSTM step: "util.cc: oneDNN supports DT_BOOL only on platforms
with AVX-512. Falling back to the default Eigen-based implementation if present." Keras's RNN
loop transposes the bool padding mask to time-major (`tf.transpose` in
`keras/src/backend/tensorflow/rnn.py`, whatever dtype the mask is passed in), and TensorFlow's
oneDNN rewrite of Transpose calls `DataTypeUnsupportedWarning` for any type but float32,
bfloat16, float16 and the quantized ones (`tensorflow/core/util/util.cc`), on every CPU: the
AVX-512 in the text is wrong. The fallback is the Eigen kernel TensorFlow uses anyway, so
nothing changes. It is printed once per process, mid-run, after this filter. Spending it here
with an eager bool transpose was tried and undone: any eager op initializes TensorFlow's
devices, after which `--num_cpu_devices` can no longer split the CPU and
MultiWorkerMirroredStrategy can no longer be created.
"""

import os
import re
import sys
import tempfile

from absl import app, flags

from experiments.command_help import format_help

# Whether TensorFlow's start-up lines are filtered: not when the user asked for its INFO lines.
_QUIET_START = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() not in ("0", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# What TensorFlow 2.21's libraries print while loading on a machine without a GPU (see above).
_START_UP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
)

# Exit status for a failure the message explains (bad configuration or data, NaN loss, ...).
EXIT_FAILURE = 1
# Ctrl-C outside the training steps: 128 + SIGINT, as a shell reports it.
EXIT_INTERRUPT = 130
# What asks for help; absl's --helpfull still prints absl's full listing.
HELP_ARGUMENTS = ("-h", "-?", "--help", "-help", "--helpshort", "-helpshort")
# A deliberate stop is not an error: its lines carry no "error:" prefix.
_INTERRUPTED = "Interrupted (Ctrl-C); rerunning resumes from the last checkpoint, if any."


def run(main, docstring, preset_config=None):
    """`absl.app.run(main)` with this package's `--help` and a one-line exit on Ctrl-C.

    Args:
        main: the command's `main(argv)`; its return value is the exit status.
        docstring: the command module's docstring (summary and example invocations).
        preset_config: for commands with config flags, `preset_name -> config`
            (e.g. `presets.language_model_config`); `--help` then shows that preset's values.
    """
    try:
        app.run(main, flags_parser=lambda argv: _parse_flags(argv, docstring, preset_config))
    except KeyboardInterrupt:  # During start-up, before `main` (or `run_job`) could catch it.
        print(_INTERRUPTED, file=sys.stderr)
        _forget_caught_keyboard_interrupt()
        sys.exit(EXIT_INTERRUPT)
    except SystemExit as exit_request:  # `app.run` always ends with `sys.exit(main(argv))`.
        if exit_request.code == EXIT_INTERRUPT:
            _forget_caught_keyboard_interrupt()
        raise


def _forget_caught_keyboard_interrupt():
    """Lets `sys.exit(EXIT_INTERRUPT)` exit 130 after a Ctrl-C that was caught.

    CPython (3.11 measured) marks a KeyboardInterrupt unhandled when it leaves code run by
    `eval` or `exec` of source text, even if an outer `except` catches it later; a program run
    with `python -m` then ends by killing itself with SIGINT whatever status it asked for (a
    parent process sees -2, not 130). Importing TensorFlow runs such code hundreds of times
    (`collections.namedtuple` builds each class with `eval`), so a Ctrl-C during start-up hit
    it about one time in twenty. The interpreter clears the mark each time it starts
    evaluating source text (`run_eval_code_obj` in `Python/pythonrun.c`), so evaluating a
    constant clears it.
    """
    eval("None")  # noqa: S307  A constant: see the docstring.


def _parse_flags(argv, docstring, preset_config):
    own = argv[1:argv.index("--")] if "--" in argv else argv[1:]  # The rest is another command's.
    if not any(argument in HELP_ARGUMENTS for argument in own):
        return app.parse_flags_with_usage(argv)
    try:  # Only for --preset: help shows the preset asked for, whatever else is wrong.
        flags.FLAGS([argv[0]] + [argument for argument in own if argument not in HELP_ARGUMENTS])
    except flags.Error:
        flags.FLAGS.mark_as_parsed()
    config = None
    if preset_config is not None:
        try:
            config = preset_config(flags.FLAGS["preset"].value)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_FAILURE)
    command_flags = flags.FLAGS.get_flags_for_module(sys.argv[0])
    sys.stdout.write(format_help(docstring, command_flags, config))
    sys.exit(0)


def check_flags(build, import_tensorflow=True):
    """Calls `build()`, which checks flags before TensorFlow loads; a bad flag's status is 1.

    Args:
        build: `() -> value`, e.g. a closure that resolves and validates the config.
        import_tensorflow: bool, import TensorFlow (quietly) once the flags are good.

    Returns:
        `(value, 0)`, or `(None, EXIT_FAILURE)` after printing `error: <message>` to stderr for
        a `ValueError` or `FileNotFoundError` (e.g. a --model_dir that holds no run). With good
        flags, TensorFlow is then imported (`import_tensorflow_quietly`), unless
        `import_tensorflow` is False (a command that only starts other processes).
    """
    try:
        value = build()
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None, EXIT_FAILURE
    if import_tensorflow:
        import_tensorflow_quietly()
    return value, 0


def import_tensorflow_quietly():
    """Imports TensorFlow, tensorflow-text and Keras and queries the devices, without the
    start-up lines TensorFlow prints on a machine without a GPU (see the module docstring).

    Everything else written to stderr meanwhile (an import error's own lines included) is
    written back afterwards, in order. Does nothing once TensorFlow is imported.
    """
    if "tensorflow" in sys.modules:
        return
    if not _QUIET_START:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf
            import tensorflow_text  # noqa: F401  Its libraries print the banner a second time.

            tf.config.list_physical_devices("GPU")  # cuInit's line comes at the first query.
            # No eager op here: it would initialize the devices (see the module docstring).
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            sys.stderr.write("".join(line for line in text.splitlines(keepends=True)
                                     if not _START_UP_NOISE.search(line)))
            sys.stderr.flush()


def run_job(job):
    """Calls `job()` and maps its expected failures to an exit status.

    Args:
        job: `() -> results`, e.g. a closure over `train_language_model`.

    Returns:
        `(results, 0)` on success, or `(None, status)` after printing one line to stderr
        (`error: <message>` for a failure, the message alone for a stop):
        `TrainingInterrupted.exit_status` (130 for Ctrl-C, 143 for SIGTERM; a
        checkpoint was saved and the same command resumes), `EXIT_INTERRUPT` for Ctrl-C
        outside the training steps (start-up, final evaluation) or a second Ctrl-C, or
        `EXIT_FAILURE` for a `ValueError`, `FloatingPointError` or `RuntimeError`, or
        TensorFlow's `ResourceExhaustedError` (out of memory: `out_of_memory_message` names the
        flags to lower). Anything else propagates with its traceback: it is a bug, not bad
        input.
    """
    try:
        # Imported here: the commands import TensorFlow only after their flags are checked.
        from keras_llm.training.interruption import TrainingInterrupted
    except KeyboardInterrupt:  # Ctrl-C while TensorFlow loads.
        print(_INTERRUPTED, file=sys.stderr)
        return None, EXIT_INTERRUPT
    try:
        return job(), 0
    except TrainingInterrupted as interrupted:
        print(interrupted, file=sys.stderr)
        return None, interrupted.exit_status
    except KeyboardInterrupt:  # Ctrl-C outside the training steps, or a second one.
        print(_INTERRUPTED, file=sys.stderr)
        return None, EXIT_INTERRUPT
    except (ValueError, FloatingPointError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None, EXIT_FAILURE
    except Exception as error:  # noqa: BLE001  Only out-of-memory is mapped; the rest re-raised.
        if type(error).__name__ != "ResourceExhaustedError":  # tf.errors, without importing TF.
            raise
        print(out_of_memory_message(error), file=sys.stderr)
        return None, EXIT_FAILURE


def out_of_memory_message(error):
    """One line for TensorFlow's out-of-memory error: what ran out, and the flags to lower."""
    text = getattr(error, "message", None) or str(error)
    # Keras wraps the op's message ("Exception encountered when calling ..."): find the op's.
    allocation = re.search(r"OOM when allocating tensor with shape\s*\[[^\]]*\]", text)
    lines = text.strip().splitlines()
    detail = allocation.group(0) if allocation else (lines[0] if lines else "out of memory")
    return (f"error: out of memory ({detail[:300]}). Lower --batch_size or --sequence_length "
            "(attention needs batch_size x num_heads x sequence_length^2 floats per layer), or "
            "raise --gradient_accumulation_steps to split each batch.")


def check_export_dir(export_dir):
    """Fails on an `--export_dir` that cannot be exported to (empty, an existing file, or a
    folder that cannot be created, which it creates), so a training command refuses it before
    training rather than after.

    Raises:
        ValueError: naming the flag and what was wrong.
    """
    if export_dir is None:
        return
    if not export_dir:
        raise ValueError("--export_dir must name a folder; it is empty.")
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ValueError(f"--export_dir={export_dir} is a file, not a folder.")
    try:  # Creating it now (empty) proves it can be, before hours of training.
        os.makedirs(export_dir, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--export_dir={export_dir}: cannot create it ({error.strerror}).") \
            from None


def export_after_training(export_dir, model_dir, log=print):
    """`--export_dir` of the training commands: exports the finished run, on the chief only.

    Returns:
        The new version directory, or None (no --export_dir, or not the chief).
    """
    from keras_llm.training.cluster import is_chief_task

    if not export_dir or not is_chief_task():
        return None
    from keras_llm.export.exporter import export_run

    return export_run(model_dir, export_dir, log=log)
