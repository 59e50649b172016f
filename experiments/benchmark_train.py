r"""Measures the training step: tokens/s and ms/step at a preset's shape.

Synthetic token ids of the preset's vocabulary size (67 for Tiny Shakespeare's characters) feed
the real Trainer step, so the figure is the step's own cost: forward, backward, all-reduce,
clip and AdamW update. The first `--warmup` steps (tracing, compilation) are not timed.
Examples:

    python -m experiments.benchmark_train --preset=shakespeare_char --steps=200
    python -m experiments.benchmark_train --preset=shakespeare_char --num_cpu_devices=2 \
        --strategy=mirrored
    python -m experiments.benchmark_train --num_cpu_devices=2 --strategy=mirrored \
        --compare_one_device --steps=16 --repeats=7

With --compare_one_device the same step also runs on the first device alone, in this process,
in alternating rounds, and the ratio is printed: on a shared machine only figures timed side
by side compare.
"""

import sys

from absl import app, flags, logging

from experiments.command import check_flags, run
from experiments.config_flags import define_config_flags, resolve_config
from keras_llm import config as config_lib, config_validation, presets

flags.DEFINE_string("preset", "shakespeare_char", "Language-model preset whose shape is timed.")
flags.DEFINE_integer("steps", 200, "Timed steps.", lower_bound=1)
flags.DEFINE_integer("warmup", 10, "Untimed steps first (tracing).", lower_bound=1)
flags.DEFINE_integer("benchmark_vocabulary_size", 67, "Vocabulary size of the synthetic data.",
                     lower_bound=1)
flags.DEFINE_boolean("compare_one_device", False,
                     "Also time the step on one device in alternating rounds and print the ratio "
                     "(for --strategy=mirrored with --num_cpu_devices > 1, or several GPUs).")
flags.DEFINE_integer("repeats", 7, "With --compare_one_device: alternating rounds of --steps "
                     "steps each (medians).", lower_bound=1)
SECTIONS = define_config_flags(config_lib.LanguageModelConfig)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    config, status = check_flags(lambda: resolve_config(
        presets.language_model_config(FLAGS.preset), SECTIONS, config_validation.validate))
    if status:
        return status
    from keras_llm.training.precision import apply_runtime_settings

    apply_runtime_settings(config.train)  # As training does: threads, malloc's top pad, dtype.
    if FLAGS.compare_one_device:
        return _compare_one_device(config)
    from keras_llm.training.benchmark import benchmark_train_step

    figures = benchmark_train_step(config, FLAGS.benchmark_vocabulary_size, FLAGS.steps,
                                   FLAGS.warmup)
    train = config.train
    print(f"preset {config.preset} ({config.model.architecture}, {figures['parameters']:,} "
          f"parameters), global batch {train.batch_size} x {config.model.sequence_length} tokens,"
          f" {figures['num_replicas']} replica(s) ({figures['strategy']})")
    print(f"ms/step:  {figures['ms_per_step']:.2f}")
    print(f"tokens/s: {figures['tokens_per_second']:,.0f}")
    print(f"minor page faults/step: {figures['page_faults_per_step']:,.0f} "
          f"(--malloc_top_pad_mb={config.train.malloc_top_pad_mb})")
    return 0


def _compare_one_device(config):
    from keras_llm.training.benchmark import compare_with_one_device

    try:
        figures = compare_with_one_device(config, FLAGS.benchmark_vocabulary_size, FLAGS.steps,
                                          FLAGS.repeats)
    except ValueError as error:
        print(f"error: --compare_one_device: {error}", file=sys.stderr)
        return 1
    tokens = config.train.batch_size * config.model.sequence_length
    print(f"preset {config.preset} ({config.model.architecture}, {figures['parameters']:,} "
          f"parameters), global batch {config.train.batch_size} x "
          f"{config.model.sequence_length} tokens, {FLAGS.repeats} alternating rounds of "
          f"{FLAGS.steps} steps after 2 untimed calls (medians; the ratio within each round)")
    for name, label in (("strategy", f"{figures['num_replicas']} replicas"),
                        ("one_device", "1 device")):
        print(f"{label}: ms/step {1000 * figures[name]:.2f}, tokens/s: "
              f"{tokens / figures[name]:,.0f}")
    speedup = figures["speedup"]
    print(f"ratio (tokens/s of {figures['num_replicas']} replicas over 1 device): "
          f"{speedup['median']:.2f}x (per round {speedup['min']:.2f}x to {speedup['max']:.2f}x)")
    return 0


if __name__ == "__main__":
    run(main, __doc__, presets.language_model_config)
