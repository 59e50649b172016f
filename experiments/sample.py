r"""Prints text generated from the latest checkpoint of a language-model run. Examples:

    python -m experiments.sample --model_dir=runs/shakespeare_char --prompt="ROMEO:" \
        --max_new_tokens=500 --temperature=0.8 --top_k=40 --seed=0   # --seed: reproducible
    python -m experiments.sample --model_dir=runs/shakespeare_char --temperature=0   # greedy
    python -m experiments.sample --model_dir=runs/shakespeare_char --top_p=0.9 --num_samples=3
"""

import math
import random
import sys

from absl import app, flags, logging

from experiments.command import check_flags, run
from keras_llm import config as config_lib

flags.DEFINE_string("model_dir", None, "A language-model run directory (holds config.json, "
                    "tokenizer/ and checkpoints/).", required=True)
flags.DEFINE_string("prompt", "\n", "Text to continue.")
flags.DEFINE_integer("max_new_tokens", 500, "Tokens to generate.", lower_bound=0)
flags.DEFINE_float("temperature", 1.0, "Softmax temperature; 0 = greedy.", lower_bound=0.0)
flags.register_validator("temperature", math.isfinite,
                         message="--temperature must be a finite number >= 0 (0 means greedy).")
flags.DEFINE_integer("top_k", None, "Sample among the k most likely tokens only.", lower_bound=1)
flags.DEFINE_float("top_p", None, "Nucleus sampling: smallest set of tokens with this total "
                   "probability (Holtzman et al. 2020), in (0, 1].", upper_bound=1.0)
flags.register_validator("top_p", lambda value: value is None or value > 0,
                         message="--top_p must be in (0, 1].")
flags.DEFINE_integer("num_samples", 1, "Independent samples to print.", lower_bound=1)
flags.DEFINE_integer("seed", None, "Sampling seed; the same seed gives the same text. Default: a "
                     "fresh random seed, printed so the text can be reproduced.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    def check_run():  # Before TensorFlow loads: an empty prompt or a --model_dir without a run.
        if not FLAGS.prompt:
            raise ValueError("--prompt is empty; give at least one character to continue (the "
                             "default is a line break).")
        return config_lib.load_run_config(FLAGS.model_dir, config_lib.LanguageModelConfig)

    _, status = check_flags(check_run)
    if status:
        return status
    from keras_llm.evaluation.trained_runs import load_trained_language_model
    from keras_llm.generation.text_sampling import check_prompt, stream_text, unknown_characters

    try:
        model, tokenizer, config, step = load_trained_language_model(FLAGS.model_dir)
        check_prompt(tokenizer, FLAGS.prompt)  # E.g. only spaces for WordPiece: no tokens.
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"# {FLAGS.model_dir}, step {step}", file=sys.stderr)
    seed = FLAGS.seed
    # Greedy decoding (temperature 0, or only the most likely token) draws nothing: no seed.
    greedy = FLAGS.temperature == 0 or FLAGS.top_k == 1
    if seed is None and greedy:
        seed = 0
    elif seed is None:  # Fresh text each time, yet reproducible: the seed is printed.
        seed = random.SystemRandom().randrange(2**31 - FLAGS.num_samples)
        print(f"# seed {seed}; rerun with --seed={seed} to reproduce", file=sys.stderr)
    unknown = unknown_characters(tokenizer, FLAGS.prompt)
    if unknown:
        print(f"warning: --prompt has {len(unknown)} character(s) not in the model's vocabulary, "
              f"read as [UNK]: {', '.join(map(repr, unknown))}", file=sys.stderr)
    top_k = FLAGS.top_k
    if top_k is not None and top_k > tokenizer.vocabulary_size:
        print(f"note: --top_k={top_k} is more than the vocabulary's {tokenizer.vocabulary_size} "
              f"tokens; clamped to {tokenizer.vocabulary_size} (no top-k filter).",
              file=sys.stderr)
        top_k = tokenizer.vocabulary_size
    for index in range(FLAGS.num_samples):
        try:
            # Printed as it is generated, a chunk of tokens at a time.
            for piece in stream_text(model, tokenizer, FLAGS.prompt, FLAGS.max_new_tokens,
                                     temperature=FLAGS.temperature, top_k=top_k,
                                     top_p=FLAGS.top_p, seed=seed + index):
                sys.stdout.write(piece)
                sys.stdout.flush()
        except ValueError as error:
            print(f"\nerror: {error}", file=sys.stderr)
            return 1
        print()
        if index + 1 < FLAGS.num_samples:
            print("-" * 40)
    return 0


if __name__ == "__main__":
    run(main, __doc__)
