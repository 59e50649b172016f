r"""Exports a trained run for TF Serving: `EXPORT_DIR/MODEL_NAME/VERSION/`. Examples:

    python -m experiments.export --model_dir=runs/shakespeare_char --export_dir=exports
    python -m experiments.export --model_dir=runs/lstm_baseline_sst2 --export_dir=exports \
        --model_name=sentiment --version=3

Language models get the signatures `generate` (prompt text -> continuation), `score` (text ->
log-likelihood, perplexity) and `serving_default` (token ids -> next-token log-probabilities);
classifiers `serving_default` (text -> probabilities, label, score) and `classify_token_ids`.
Every export is checked for a stock TF Serving server (`experiments.check_export`) before its
version folder appears.
"""

import sys

from absl import app, flags, logging

from experiments.command import check_export_dir, check_flags, run
from keras_llm import config as config_lib

flags.DEFINE_string("model_dir", None, "A training run directory (language model or classifier).",
                    required=True)
flags.DEFINE_string("export_dir", None, "The base folder TF Serving serves models from.",
                    required=True)
flags.DEFINE_string("model_name", None, "Folder name of the model; default: the run's folder name.")
flags.DEFINE_integer("version", None, "Version number; default: one more than the highest there.",
                     lower_bound=1)
FLAGS = flags.FLAGS


def _check_run():
    config_lib.load_any_run_config(FLAGS.model_dir)
    check_export_dir(FLAGS.export_dir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    _, status = check_flags(_check_run)  # Before TensorFlow loads.
    if status:
        return status
    from keras_llm.export.exporter import export_run

    try:
        export_run(FLAGS.model_dir, FLAGS.export_dir, FLAGS.model_name, FLAGS.version)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run(main, __doc__)
