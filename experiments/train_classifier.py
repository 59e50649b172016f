r"""Trains a text classifier: `python -m experiments.train_classifier --preset=lstm_baseline ...`.

Presets: lstm_baseline (Embedding -> LSTM -> Dense, Adam), bilstm, transformer. Every config
field is a flag of the same name. Examples:

    python -m experiments.train_classifier --preset=lstm_baseline \
        --dataset=sst2 --data_dir=../shared/data/sst2 --model_dir=runs/sst2_lstm
    python -m experiments.train_classifier --preset=transformer \
        --dataset=chnsenticorp --data_dir=../shared/data/chnsenticorp --model_dir=runs/chn_tf
    python -m experiments.train_classifier --dataset=files --train_file=train.csv \
        --validation_file=dev.csv --test_file=test.csv --text_column=review --label_column=stars
"""

import time

from absl import app, flags, logging

from experiments.command import (check_export_dir, check_flags, export_after_training, run,
                                 run_job)
from experiments.config_flags import define_config_flags, resolve_config
from keras_llm import config as config_lib, config_validation, presets

flags.DEFINE_string("preset", "lstm_baseline",
                    f"Named preset: {', '.join(sorted(presets.CLASSIFIER_PRESETS))}.")
flags.DEFINE_string("model_dir", None, "Where checkpoints, logs and results go; default "
                    "runs/<preset>_<dataset>.")
flags.DEFINE_string("export_dir", None, "If set, export the finished run for TF Serving to "
                    "EXPORT_DIR/<run folder>/<next version>/ (experiments.export; chief only).")
SECTIONS = define_config_flags(config_lib.ClassifierConfig)
FLAGS = flags.FLAGS


def main(argv):
    started = time.monotonic()  # The `done:` line's "in all": data, model, training, export.
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)

    def checked_config():  # Before TensorFlow loads.
        check_export_dir(FLAGS.export_dir)
        return resolve_config(presets.classifier_config(FLAGS.preset), SECTIONS,
                              config_validation.validate_classifier)

    config, status = check_flags(checked_config)
    if status:
        return status

    def job():
        # Imported inside run_job, so Ctrl-C while the task loads exits cleanly (TensorFlow
        # itself was imported by check_flags, whose Ctrl-C `run` reports in one line).
        from keras_llm.training.classifier import train_classifier
        model_dir = FLAGS.model_dir or f"runs/{FLAGS.preset}_{config.data.dataset}"
        results = train_classifier(config, model_dir)
        export_after_training(FLAGS.export_dir, model_dir)
        return results

    results, status = run_job(job)
    if status or results.get("already_finished"):  # A finished run said so in its one line.
        return status
    test = results.get("test", results["validation"])
    print(f"done: {results['steps']} steps, {'test' if 'test' in results else 'validation'} "
          f"accuracy {test['accuracy']:.4f}, F1 {test['f1']:.4f}, {results['wall_seconds']:.0f} s "
          f"training, {time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    run(main, __doc__, presets.classifier_config)
