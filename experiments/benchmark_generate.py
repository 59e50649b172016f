r"""Measures generation speed: cached vs full-recomputation decoding, SavedModel vs in-memory,
and KerasHub's `GPT2CausalLM.generate` on the same shape. Examples:

    python -m experiments.benchmark_generate --preset=shakespeare_char
    python -m experiments.benchmark_generate --new_tokens=256 --batch_sizes=1,8 \
        --output=generate_benchmark.json

The model has a preset's shape (random weights: only speed is measured) and a context long
enough for the prompt and every new token, so the cache serves the whole continuation. Figures
are medians over alternating repeats in one process; compare them only as ratios.
"""

import json
import sys

from absl import app, flags, logging

from experiments.command import check_flags, run
from keras_llm import config_validation, presets

flags.DEFINE_string("preset", "shakespeare_char", "Language-model preset whose shape is timed.")
flags.DEFINE_integer("prompt_length", 16, "Prompt tokens per row.", lower_bound=1)
flags.DEFINE_integer("new_tokens", 256, "Tokens generated per row.", lower_bound=1)
flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes to time.")
flags.DEFINE_integer("repeats", 3, "Timed repeats per contender (medians).", lower_bound=1)
flags.DEFINE_integer("benchmark_vocabulary_size", 67, "Vocabulary size (Tiny Shakespeare's).",
                     lower_bound=3)
flags.DEFINE_string("output", None, "Also write the figures as JSON to this file.")
FLAGS = flags.FLAGS


def _settings():
    config = config_validation.validate(presets.language_model_config(FLAGS.preset))
    if config.model.architecture != "gpt":
        raise ValueError(f"--preset={FLAGS.preset} is an {config.model.architecture} model; the "
                         "generation benchmark times GPT decoding (a cache of keys and values).")
    batch_sizes = []
    for value in FLAGS.batch_sizes:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"--batch_sizes: expected positive integers; got {value!r}.")
        batch_sizes.append(int(value))
    return config, batch_sizes


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    settings, status = check_flags(_settings)  # Before TensorFlow loads.
    if status:
        return status
    config, batch_sizes = settings
    from keras_llm.training.precision import apply_runtime_settings

    apply_runtime_settings(config.train)  # As training does: threads, malloc's top pad, dtype.
    from keras_llm.data.character_tokenizer import CharacterTokenizer
    from keras_llm.export.language_model_signatures import LanguageModelSignatures
    from keras_llm.generation import benchmark

    vocabulary, context = FLAGS.benchmark_vocabulary_size, FLAGS.prompt_length + FLAGS.new_tokens
    model = benchmark.build_benchmark_model(config.model, vocabulary, context)
    machine = benchmark.machine_description()
    print(f"{machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['flags'])}")
    print(f"GPT {config.model.num_layers} layers x {config.model.hidden_dim}, vocabulary "
          f"{vocabulary}, prompt {FLAGS.prompt_length} + {FLAGS.new_tokens} new tokens, greedy")
    decoding = benchmark.benchmark_decoding(model, vocabulary, FLAGS.prompt_length,
                                            FLAGS.new_tokens, batch_sizes, FLAGS.repeats)
    print("\n| batch | cached new tokens/s | uncached new tokens/s | cached / uncached |")
    print("|---|---|---|---|")
    for row in decoding:
        print(f"| {row['batch']} | {row['cached_tokens_per_second']:,.0f} | "
              f"{row['uncached_tokens_per_second']:,.0f} | {row['speedup']:.1f}x |")
    # A character tokenizer over the synthetic vocabulary, so the signature takes text.
    alphabet = [chr(ord("!") + i) for i in range(vocabulary - 2)]
    module = LanguageModelSignatures(model, CharacterTokenizer(["[PAD]", "[UNK]", *alphabet]))
    saved = benchmark.benchmark_saved_model(module, ["".join(alphabet[:FLAGS.prompt_length])],
                                            FLAGS.new_tokens, FLAGS.repeats)
    print(f"\ngenerate signature, batch 1: in memory {saved['in_memory_seconds']:.3f} s, "
          f"SavedModel {saved['saved_model_seconds']:.3f} s ({saved['ratio']:.2f}x)")
    hub = benchmark.benchmark_keras_hub(config.model, vocabulary, FLAGS.prompt_length,
                                        FLAGS.new_tokens, batch_sizes[-1],
                                        decoding[-1]["cached_tokens_per_second"], FLAGS.repeats)
    if "tokens_per_second" in hub:
        print(f"KerasHub GPT2CausalLM.generate ({hub['status']}), batch {hub['batch']}: "
              f"{hub['tokens_per_second']:,.0f} new tokens/s; keras_llm cached is "
              f"{hub['ours_over_keras_hub']:.2f}x that")
    else:
        print(f"KerasHub: {hub['status']}")
    if FLAGS.output:
        from keras_llm.training.atomic_files import write_json
        write_json(FLAGS.output, {"machine": machine, "decoding": decoding, "saved_model": saved,
                                  "keras_hub": hub})
    return 0


if __name__ == "__main__":
    run(main, __doc__)
