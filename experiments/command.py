"""What the training commands share: run the job and turn its expected failures into a status.

`train_lm` and `train_classifier` print `error: ...` on one line for what a user can fix (bad
flags or data, a model directory of another run, a NaN loss) instead of a traceback, and exit
with a status a shell script or a scheduler can act on.
"""

import sys

# Exit status for a failure the message explains (bad configuration or data, NaN loss, ...).
EXIT_FAILURE = 1
# Ctrl-C outside the training steps: 128 + SIGINT, as a shell reports it.
EXIT_INTERRUPT = 130


def run_job(job):
    """Calls `job()` and maps its expected failures to an exit status.

    Args:
        job: `() -> results`, e.g. a closure over `train_language_model`.

    Returns:
        `(results, 0)` on success, or `(None, status)` after printing `error: <message>` to
        stderr: `TrainingInterrupted.exit_status` (130 for Ctrl-C, 143 for SIGTERM; a
        checkpoint was saved and the same command resumes), `EXIT_INTERRUPT` for Ctrl-C
        outside the training steps (start-up, final evaluation) or a second Ctrl-C, or
        `EXIT_FAILURE` for a
        `ValueError`, `FloatingPointError` or `RuntimeError`. Anything else propagates with its
        traceback: it is a bug, not bad input.
    """
    # Imported here: the commands import TensorFlow only after their flags are parsed.
    from keras_llm.training.interruption import TrainingInterrupted

    try:
        return job(), 0
    except TrainingInterrupted as interrupted:
        print(f"error: {interrupted}", file=sys.stderr)
        return None, interrupted.exit_status
    except KeyboardInterrupt:  # Ctrl-C outside the training steps, or a second one.
        print("error: Interrupted (Ctrl-C); rerunning resumes from the last checkpoint, if any.",
              file=sys.stderr)
        return None, EXIT_INTERRUPT
    except (ValueError, FloatingPointError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None, EXIT_FAILURE
