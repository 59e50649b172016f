r"""Trains a language model: `python -m experiments.train_lm [--preset=shakespeare_char] ...`.

With no flags it trains nanoGPT's shakespeare_char configuration on Tiny Shakespeare. Every
config field is a flag of the same name; `--flagfile` reads them from a file. Examples:

    python -m experiments.train_lm --data_dir=../shared/data/tinyshakespeare \
        --model_dir=runs/shakespeare_char
    python -m experiments.train_lm --train_steps=20 --model_dir=/tmp/smoke   # a smoke run
    python -m experiments.train_lm --preset=shakespeare_char_lstm --strategy=mirrored \
        --num_cpu_devices=2 --batch_size=24
"""

import time

from absl import app, flags, logging

from experiments.command import (check_export_dir, check_flags, export_after_training, run,
                                 run_job)
from experiments.config_flags import define_config_flags, resolve_config
from keras_llm import config as config_lib, config_validation, presets

flags.DEFINE_string("preset", "shakespeare_char",
                    f"Named preset: {', '.join(sorted(presets.LANGUAGE_MODEL_PRESETS))}.")
flags.DEFINE_string("model_dir", None, "Where checkpoints, logs and results go; default "
                    "runs/<preset>. An existing run there of the same model is resumed.")
flags.DEFINE_string("export_dir", None, "If set, export the finished run for TF Serving to "
                    "EXPORT_DIR/<run folder>/<next version>/ (experiments.export; chief only).")
SECTIONS = define_config_flags(config_lib.LanguageModelConfig)
FLAGS = flags.FLAGS


def main(argv):
    started = time.monotonic()  # The `done:` line's "in all": data, model, training, export.
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Progress lines are printed; absl INFO is noise.

    def checked_config():  # Before TensorFlow loads.
        check_export_dir(FLAGS.export_dir)
        return resolve_config(
            presets.language_model_config(FLAGS.preset), SECTIONS, config_validation.validate)

    config, status = check_flags(checked_config)
    if status:
        return status

    def job():
        # Imported inside run_job, so Ctrl-C while the task loads exits cleanly (TensorFlow
        # itself was imported by check_flags, whose Ctrl-C `run` reports in one line).
        from keras_llm.training.language_model import train_language_model
        model_dir = FLAGS.model_dir or f"runs/{FLAGS.preset}"
        results = train_language_model(config, model_dir)
        export_after_training(FLAGS.export_dir, model_dir)
        return results

    results, status = run_job(job)
    if status or results.get("already_finished"):  # A finished run said so in its one line.
        return status
    validation = results["validation"]
    # 0 when not measured: every step ran in the first call, which traces (e.g. 1 step).
    speed = (f"{results['tokens_per_second']:,.0f} tokens/s, " if results["tokens_per_second"]
             else "")
    print(f"done: {results['steps']} steps, validation loss {validation['loss']:.4f} nats/token "
          f"(perplexity {validation['perplexity']:.2f}), {speed}{results['wall_seconds']:.0f} s "
          f"training, {time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    run(main, __doc__, presets.language_model_config)
