"""Checks a config before anything is read, built or written: `validate` (language model) and
`validate_classifier`, each reporting every flag at fault in one error.

Needs no TensorFlow (nor `keras_llm.training`), so every command can check its flags first.
"""

import codecs
import math
import os

from keras_llm.config import CLUSTER_RESOLVERS, DTYPE_POLICIES, JIT_COMPILE_MODES, STRATEGIES

__all__ = ["parse_profile_steps", "validate", "validate_classifier"]


def parse_profile_steps(text):
    """Parses `--profile_steps`: "" -> None, "START,END" -> (START, END).

    Raises:
        ValueError: anything but two integers 1 <= START <= END separated by a comma; the
            message says what was expected (the caller names the flag).
    """
    if not text:
        return None
    parts = text.split(",")
    try:
        start, end = (int(part) for part in parts)
    except ValueError:
        raise ValueError("empty or two integers START,END (e.g. 10,20)") from None
    if not 1 <= start <= end:
        raise ValueError("START,END with 1 <= START <= END (training steps are 1-based)")
    return start, end


class _Checker:
    """Collects every problem of a config, so one run reports them all."""

    def __init__(self):
        self.errors = []

    def __call__(self, condition, flag, expected, value):
        if not condition:
            self.errors.append(f"--{flag} must be {expected}; got {value!r}.")

    def encoding(self, encoding):
        try:
            codecs.lookup(encoding)
        except LookupError:
            self.errors.append(f"--encoding must be a Python codec name, e.g. utf-8 or cp1252; "
                               f"got {encoding!r}.")

    def folder(self, path, flag, holds, must_exist=True):
        """A folder flag: an existing file is named as one, a missing path when `must_exist`."""
        if path and os.path.exists(path) and not os.path.isdir(path):
            self.errors.append(f"--{flag} must be a folder ({holds}); got {path!r}, a file.")
        elif path and must_exist and not os.path.exists(path):
            self.errors.append(f"--{flag} must be a folder ({holds}); got {path!r}, which does "
                               "not exist.")

    def raise_if_any(self):
        if self.errors:
            # One line however many, so a command prints it as one `error: ...` line.
            raise ValueError("Invalid configuration: " + " ".join(self.errors))


def _check_train(train, check):
    check(train.strategy in STRATEGIES, "strategy", " or ".join(STRATEGIES), train.strategy)
    check(train.cluster_resolver in CLUSTER_RESOLVERS, "cluster_resolver",
          " or ".join(CLUSTER_RESOLVERS), train.cluster_resolver)
    for name in ("num_cpu_devices", "batch_size", "gradient_accumulation_steps", "train_steps",
                 "eval_interval", "log_interval", "checkpoint_interval", "max_checkpoints",
                 "steps_per_execution"):
        check(getattr(train, name) >= 1, name, ">= 1", getattr(train, name))
    check(train.batch_size % max(train.gradient_accumulation_steps, 1) == 0, "batch_size",
          f"divisible by --gradient_accumulation_steps={train.gradient_accumulation_steps}",
          train.batch_size)
    check(train.epochs >= 0, "epochs", ">= 0", train.epochs)
    check(train.optimizer in ("adamw", "adam"), "optimizer", "adamw or adam", train.optimizer)
    check(train.learning_rate_schedule in ("warmup_cosine", "constant"), "learning_rate_schedule",
          "warmup_cosine or constant", train.learning_rate_schedule)
    check(train.learning_rate > 0 and math.isfinite(train.learning_rate), "learning_rate",
          "a positive number", train.learning_rate)
    check(0 <= train.min_learning_rate <= train.learning_rate, "min_learning_rate",
          f"in [0, --learning_rate={train.learning_rate}]", train.min_learning_rate)
    # With --epochs the step count is known once the data is read; a bad --train_steps is
    # reported alone, not again as the warm-up's fault.
    if not train.epochs and train.train_steps >= 1:
        check(0 <= train.warmup_steps < train.train_steps, "warmup_steps",
              f"in [0, --train_steps={train.train_steps})", train.warmup_steps)
    check(0 <= train.beta_1 < 1, "beta_1", "in [0, 1)", train.beta_1)
    check(0 <= train.beta_2 < 1, "beta_2", "in [0, 1)", train.beta_2)
    check(train.weight_decay >= 0, "weight_decay", ">= 0", train.weight_decay)
    check(train.gradient_clip_norm >= 0, "gradient_clip_norm", ">= 0", train.gradient_clip_norm)
    check(0 <= train.weight_average_decay < 1, "weight_average_decay", "in [0, 1)",
          train.weight_average_decay)
    check(train.eval_batches >= 0, "eval_batches", ">= 0", train.eval_batches)
    check(train.sample_length >= 0, "sample_length", ">= 0", train.sample_length)
    check(train.histogram_every >= 0, "histogram_every", ">= 0 (0 = off)", train.histogram_every)
    try:
        window = parse_profile_steps(train.profile_steps)
    except ValueError as error:
        check(False, "profile_steps", str(error), train.profile_steps)
    else:
        if window and not train.epochs:
            check(window[1] <= train.train_steps, "profile_steps",
                  f"a window ending by --train_steps={train.train_steps}", train.profile_steps)
    # `keras.utils.set_random_seed` seeds NumPy, whose seeds are 32-bit.
    check(0 <= train.seed < 2**32, "seed", "in [0, 2**32 - 1]", train.seed)
    check(train.max_nan_recoveries >= 1, "max_nan_recoveries", ">= 1", train.max_nan_recoveries)
    check(0 < train.nan_learning_rate_factor < 1, "nan_learning_rate_factor", "in (0, 1)",
          train.nan_learning_rate_factor)
    check(train.jit_compile in JIT_COMPILE_MODES, "jit_compile", " or ".join(JIT_COMPILE_MODES),
          train.jit_compile)
    check(train.dtype_policy in DTYPE_POLICIES, "dtype_policy", " or ".join(DTYPE_POLICIES),
          train.dtype_policy)
    for name in ("intra_op_threads", "inter_op_threads"):
        check(getattr(train, name) >= 0, name, ">= 0 (0: TensorFlow's default)",
              getattr(train, name))
    check(0 <= train.malloc_top_pad_mb <= 1024, "malloc_top_pad_mb",
          "in [0, 1024] (0: the C library's default)", train.malloc_top_pad_mb)


def _check_transformer_shape(check, hidden_dim, num_heads, intermediate_dim):
    check(num_heads >= 1, "num_heads", ">= 1", num_heads)
    if num_heads >= 1:
        check(hidden_dim % num_heads == 0, "hidden_dim", f"divisible by --num_heads={num_heads}",
              hidden_dim)
    check(intermediate_dim is None or intermediate_dim >= 1, "intermediate_dim", ">= 1",
          intermediate_dim)


def validate(config):
    """Checks a `LanguageModelConfig` before anything is built or written.

    Raises:
        ValueError: naming every flag (field) at fault, what was expected and what was received.
    """
    data, model = config.data, config.model
    check = _Checker()
    check(data.tokenizer in ("character", "wordpiece"), "tokenizer", "character or wordpiece",
          data.tokenizer)
    check(data.errors in ("strict", "replace"), "errors", "strict or replace", data.errors)
    check.encoding(data.encoding)
    check.folder(data.data_dir, "data_dir", "searched first for the named corpus's files, e.g. "
                 "the one holding tinyshakespeare's input.txt; a text file of your own goes in "
                 "--corpus")
    check(data.vocabulary_size >= 16, "vocabulary_size", ">= 16", data.vocabulary_size)
    check(model.architecture in ("gpt", "lstm"), "architecture", "gpt or lstm", model.architecture)
    for name in ("num_layers", "hidden_dim", "sequence_length"):
        check(getattr(model, name) >= 1, name, ">= 1", getattr(model, name))
    if model.architecture == "gpt":
        _check_transformer_shape(check, model.hidden_dim, model.num_heads, model.intermediate_dim)
    check(0.0 <= model.dropout < 1.0, "dropout", "in [0, 1)", model.dropout)
    check(config.train.keep_best in ("", "loss", "perplexity"), "keep_best",
          "empty, loss or perplexity for a language model", config.train.keep_best)
    _check_train(config.train, check)
    check.raise_if_any()
    return config


def validate_classifier(config):
    """Checks a `ClassifierConfig` before anything is read, built or written.

    Raises:
        ValueError: naming every flag (field) at fault, what was expected and what was received.
    """
    data, model = config.data, config.model
    check = _Checker()
    datasets = ("sst2", "chnsenticorp", "directory", "imdb", "files")
    check(data.dataset in datasets, "dataset", " or ".join(datasets), data.dataset)
    if data.dataset == "files":
        check(bool(data.train_file), "train_file", "set when --dataset=files", data.train_file)
    check(data.file_format in ("auto", "tsv", "csv", "jsonl"), "file_format",
          "auto, tsv, csv or jsonl", data.file_format)
    check(data.header in ("auto", "true", "false"), "header", "auto, true or false", data.header)
    check(data.errors in ("strict", "replace"), "errors", "strict or replace", data.errors)
    check.encoding(data.encoding)
    # --dataset=imdb downloads into a --data_dir that does not exist yet.
    check.folder(data.data_dir, "data_dir", "holding the dataset's files, e.g. sst2's "
                 "train.tsv, dev.tsv and test.tsv", must_exist=data.dataset != "imdb")
    check(data.vocabulary_size >= 16, "vocabulary_size", ">= 16", data.vocabulary_size)
    check(data.sequence_length >= 1, "sequence_length", ">= 1", data.sequence_length)
    architectures = ("lstm", "bilstm", "transformer")
    check(model.architecture in architectures, "architecture", " or ".join(architectures),
          model.architecture)
    for name in ("embedding_dim", "hidden_dim", "num_layers"):
        check(getattr(model, name) >= 1, name, ">= 1", getattr(model, name))
    if model.architecture == "transformer":
        _check_transformer_shape(check, model.hidden_dim, model.num_heads, model.intermediate_dim)
    check(0.0 <= model.dropout < 1.0, "dropout", "in [0, 1)", model.dropout)
    check(0.0 <= model.token_dropout < 1.0, "token_dropout", "in [0, 1)", model.token_dropout)
    check(config.train.keep_best in ("", "loss", "accuracy", "precision", "recall", "f1"),
          "keep_best", "empty, loss, accuracy, precision, recall or f1 for a classifier",
          config.train.keep_best)
    _check_train(config.train, check)
    check.raise_if_any()
    return config
