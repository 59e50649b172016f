"""Typed, frozen experiment configuration, with one help string per field.

Every field's help text lives in its `metadata`, so `experiments/*.py` can turn each field into
an absl flag of the same name without repeating it. Presets (`keras_llm.presets`) are short
overrides of these defaults; the resolved config is saved as `MODEL_DIR/config.json`.
"""

import dataclasses
import json
import math
import os

# The --strategy names `keras_llm.training.strategy.make_strategy` maps to tf.distribute
# strategies. They live here, with the flag they check, so the config (and every command's flag
# checks) needs no TensorFlow.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
# Where multi_worker reads the cluster from: the TF_CONFIG variable, or a SLURM job step.
CLUSTER_RESOLVERS = ("tf_config", "slurm")
# A warm-up the user did not set is cut to this fraction of --train_steps when it is longer:
# BERT's warmup_proportion (Devlin et al. 2019). nanoGPT's shakespeare_char warms up for 5 %.
DEFAULT_WARMUP_FRACTION = 0.1


def _field(default, help):  # noqa: A002 - `help` reads best at the call sites below.
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the text comes from and how it becomes token ids."""

    corpus: str = _field(
        "tiny_shakespeare",
        "A corpus name (tiny_shakespeare, chinese_poetry, python_docs) or a path to a UTF-8 text "
        "file or folder of .txt files.",
    )
    data_dir: str = _field(None, "Folder searched first for the named corpus's files.")
    validation_file: str = _field(
        None, "Text file used for validation; default: the last 10% of the corpus (nanoGPT's split)."
    )
    tokenizer: str = _field("character", "character or wordpiece.")
    vocabulary_size: int = _field(
        8000, "WordPiece only: target vocabulary size learned from the training split."
    )
    lower_case: bool = _field(False, "WordPiece only: case-fold and strip accents before tokenizing.")
    encoding: str = _field("utf-8", "Encoding of the text files, e.g. utf-8, cp1252.")
    errors: str = _field(
        "strict", "How undecodable bytes are handled: strict (fail naming the byte offset) or replace."
    )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture hyperparameters; `architecture` picks the builder."""

    architecture: str = _field("gpt", "gpt (decoder-only Transformer) or lstm.")
    num_layers: int = _field(4, "Transformer blocks or stacked LSTM layers.")
    num_heads: int = _field(4, "Attention heads (gpt); hidden_dim must be divisible by it.")
    hidden_dim: int = _field(128, "Width of the residual stream / LSTM state.")
    intermediate_dim: int = _field(None, "MLP width (gpt); default 4 * hidden_dim (GPT-2).")
    sequence_length: int = _field(64, "Context length in tokens.")
    dropout: float = _field(0.0, "Dropout rate (0 for small data, as nanoGPT's shakespeare_char).")
    tie_embeddings: bool = _field(
        True, "gpt: share the token embedding with the output projection (Press & Wolf 2017)."
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimization, distribution, evaluation and logging."""

    strategy: str = _field(
        "auto", "one_device (one GPU, else the CPU); mirrored (all local GPUs, else "
        "--num_cpu_devices logical CPUs; one device: one_device); multi_worker (one process per "
        "worker; the cluster from --cluster_resolver); auto: multi_worker when TF_CONFIG is set or "
        "--cluster_resolver=slurm, else mirrored."
    )
    num_cpu_devices: int = _field(
        1, "Split the host CPU into this many logical devices (data parallelism without GPUs)."
    )
    batch_size: int = _field(12, "Global batch size in sequences per optimizer step.")
    gradient_accumulation_steps: int = _field(
        1, "Micro-batches per optimizer step; each is batch_size / this / replicas sequences."
    )
    train_steps: int = _field(2000, "Optimizer steps in total (unless --epochs is set).")
    epochs: int = _field(
        0, "If > 0: train for this many passes over the training split instead of train_steps."
    )
    optimizer: str = _field("adamw", "adamw (decoupled weight decay) or adam.")
    learning_rate_schedule: str = _field(
        "warmup_cosine", "warmup_cosine (linear warmup, cosine decay) or constant."
    )
    learning_rate: float = _field(1e-3, "Peak learning rate, reached after warmup_steps.")
    min_learning_rate: float = _field(1e-4, "Learning rate at the end of the cosine decay.")
    warmup_steps: int = _field(100, "Steps of linear warmup from 0 to learning_rate.")
    beta_1: float = _field(0.9, "AdamW beta_1.")
    beta_2: float = _field(0.99, "AdamW beta_2 (0.99 for small-batch char models, nanoGPT).")
    weight_decay: float = _field(
        0.1, "Decoupled weight decay (Loshchilov & Hutter 2019), not on norms, biases, embeddings."
    )
    gradient_clip_norm: float = _field(1.0, "Clip gradients to this global norm; 0 disables.")
    weight_average_decay: float = _field(
        0.0, "If > 0: keep an exponential moving average of the weights with this decay (Polyak "
        "averaging, EMA; 0.999 spans ~1,000 steps) and evaluate, keep as best and sample it; "
        "training still updates the raw weights. 0: use the last weights."
    )
    seed: int = _field(1337, "Seed for initialization, data order and dropout.")
    eval_interval: int = _field(
        250, "Validate (and sample) every this many steps; with --epochs, once per epoch."
    )
    eval_batches: int = _field(0, "Validation batches per evaluation; 0 = the whole split.")
    log_interval: int = _field(50, "Print a progress line every this many steps.")
    checkpoint_interval: int = _field(250, "Save a checkpoint every this many steps.")
    keep_best: str = _field(
        "", "Keep the checkpoint with the best value of this validation metric (loss: lowest; "
        "accuracy, f1, ...: highest) and report the final results from it; empty: last step."
    )
    max_checkpoints: int = _field(3, "Checkpoints kept in MODEL_DIR/checkpoints.")
    recover_from_nan: bool = _field(
        False, "On a NaN or Inf loss, roll back to the last checkpoint and continue with the "
        "learning rate times --nan_learning_rate_factor (instead of stopping)."
    )
    max_nan_recoveries: int = _field(
        3, "--recover_from_nan: roll back at most this many times per invocation, then stop with an "
        "error."
    )
    nan_learning_rate_factor: float = _field(
        0.5, "--recover_from_nan: multiply the learning rate by this factor at every rollback."
    )
    sample_length: int = _field(200, "Tokens generated from each fixed prompt at evaluation.")
    cluster_timeout_seconds: int = _field(
        120, "multi_worker: fail if the other workers are not reachable within this many seconds."
    )
    cluster_resolver: str = _field(
        "tf_config", "multi_worker: where the cluster comes from: tf_config (TF_CONFIG) or slurm."
    )


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
    """Everything one language-model run needs."""

    preset: str = _field("shakespeare_char", "The named preset these values started from.")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)



@dataclasses.dataclass(frozen=True)
class ClassificationDataConfig:
    """Labelled text: which files, which columns, how they become token ids."""

    dataset: str = _field(
        "sst2", "Layout: sst2, chnsenticorp, directory (class sub-folders), imdb, or files."
    )
    data_dir: str = _field(None, "Folder holding the dataset's files.")
    train_file: str = _field(None, "--dataset=files: the training file (TSV, CSV or JSONL).")
    validation_file: str = _field(None, "--dataset=files: the validation file.")
    test_file: str = _field(None, "--dataset=files: the test file.")
    file_format: str = _field("auto", "--dataset=files: auto (from the suffix), tsv, csv, jsonl.")
    text_column: str = _field("text", "--dataset=files: name (or 0-based index) of the text column.")
    label_column: str = _field("label", "--dataset=files: name (or index) of the label column.")
    header: str = _field("auto", "--dataset=files: auto, true or false: whether row 1 is a header.")
    encoding: str = _field("utf-8", "Encoding of the files, e.g. utf-8, cp1252, gbk.")
    errors: str = _field("strict", "Undecodable bytes: strict (fail naming file and line) or replace.")
    skip_bad_rows: bool = _field(
        False, "Skip malformed rows (counted and summarized) instead of failing on the first."
    )
    vocabulary_size: int = _field(10000, "WordPiece vocabulary learned from the training split.")
    lower_case: bool = _field(True, "Case-fold and strip accents (after NFKC) before tokenizing.")
    sequence_length: int = _field(128, "Maximum tokens per text; longer texts are truncated.")


@dataclasses.dataclass(frozen=True)
class ClassifierModelConfig:
    """Classifier architecture."""

    architecture: str = _field("lstm", "lstm, bilstm or transformer.")
    embedding_dim: int = _field(32, "lstm/bilstm: token embedding width.")
    hidden_dim: int = _field(64, "LSTM units, or the Transformer width.")
    num_layers: int = _field(2, "transformer: encoder blocks.")
    num_heads: int = _field(4, "transformer: attention heads.")
    intermediate_dim: int = _field(None, "transformer: MLP width; default 4 * hidden_dim.")
    dropout: float = _field(0.0, "Dropout rate.")
    token_dropout: float = _field(
        0.0, "Word dropout: probability of zeroing each token's embedding in training."
    )


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Everything one text-classification run needs."""

    preset: str = _field("lstm_baseline", "The named preset these values started from.")
    data: ClassificationDataConfig = dataclasses.field(default_factory=ClassificationDataConfig)
    model: ClassifierModelConfig = dataclasses.field(default_factory=ClassifierModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def to_json(config):
    """Serializes a (nested) config dataclass as indented, key-sorted JSON."""
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)


def from_dict(cls, values, where="config"):
    """Builds the dataclass `cls` from nested dicts, as `to_json` wrote them.

    Raises:
        ValueError: a key that is not a field of `cls`; `where` names the section at fault.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}.")
    kwargs = {}
    for name, value in values.items():
        factory = fields[name].default_factory
        if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory):
            value = from_dict(factory, value, where=f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


# What reads and writes each kind of run directory, for "wrong kind of run" errors.
_RUN_KINDS = {
    "LanguageModelConfig": ("language-model", "experiments.train_lm, experiments.sample"),
    "ClassifierConfig": ("classifier", "experiments.train_classifier, experiments.evaluate"),
}


def load_run_config(model_dir, cls):
    """Reads `model_dir/config.json`, the resolved config a training run saved, as `cls`.

    Args:
        model_dir: str, a run directory written by `train_language_model` or `train_classifier`.
        cls: `LanguageModelConfig` or `ClassifierConfig`, the kind of run the caller expects.

    Returns:
        An instance of `cls`.

    Raises:
        FileNotFoundError: `model_dir/config.json` does not exist.
        ValueError: the directory holds the other kind of run (the message names it and the
            commands that read it), or config.json has fields `cls` does not know.
    """
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is --model_dir={model_dir} a training run?")
    with open(path, encoding="utf-8") as file:
        try:
            values = json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
    try:
        return from_dict(cls, values, where=path)
    except (TypeError, ValueError):
        for other in (LanguageModelConfig, ClassifierConfig):
            if other is cls:
                continue
            try:
                from_dict(other, values)
            except (TypeError, ValueError):
                continue
            kind, commands = _RUN_KINDS[other.__name__]
            expected, _ = _RUN_KINDS[cls.__name__]
            raise ValueError(
                f"--model_dir={model_dir} holds a {kind} run ({path}); expected a {expected} "
                f"run. {kind.capitalize()} runs are read by {commands}."
            ) from None
        raise


def replace_fields(config, overrides, where):
    """Returns `config` with `overrides` (a dict of field name -> value) applied.

    Raises:
        ValueError: a key of `overrides` is not a field of `config`; `where` names the section.
    """
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(names)}.")
    return dataclasses.replace(config, **overrides)


def fit_warmup_to_train_steps(config, warmup_steps_set):
    """Shortens a warm-up the user did not set to fit a short run, e.g. `--train_steps=20`.

    A preset's warm-up (100 steps for shakespeare_char) is meant for its own run length; a
    smoke run of 20 steps would otherwise be refused by `validate`. A warm-up longer than
    `DEFAULT_WARMUP_FRACTION` of `--train_steps` is cut to that fraction (rounded down), unless
    the user set `--warmup_steps` (then `validate` still refuses one that does not fit) or the
    run is sized by `--epochs` (its step count is known only once the data is read).

    Args:
        config: a `LanguageModelConfig` or `ClassifierConfig`.
        warmup_steps_set: bool, whether the user set `--warmup_steps`.

    Returns:
        `(config, note)`: the config, with `train.warmup_steps` shortened or not, and a one-line
        note naming the new value for the user, or None when nothing changed (or the change
        does not matter: `--learning_rate_schedule=constant` has no warm-up).
    """
    train = config.train
    limit = int(train.train_steps * DEFAULT_WARMUP_FRACTION)
    if warmup_steps_set or train.epochs or train.train_steps < 1 or train.warmup_steps <= limit:
        return config, None
    note = (f"note: --warmup_steps={limit} ({DEFAULT_WARMUP_FRACTION:.0%} of --train_steps="
            f"{train.train_steps}) instead of the preset's {train.warmup_steps}; set "
            "--warmup_steps to choose another.")
    if train.learning_rate_schedule == "constant":
        note = None
    return dataclasses.replace(config, train=dataclasses.replace(train, warmup_steps=limit)), note


class _Checker:
    """Collects every problem of a config, so one run reports them all."""

    def __init__(self):
        self.errors = []

    def __call__(self, condition, flag, expected, value):
        if not condition:
            self.errors.append(f"--{flag} must be {expected}; got {value!r}.")

    def raise_if_any(self):
        if self.errors:
            # One line however many, so a command prints it as one `error: ...` line.
            raise ValueError("Invalid configuration: " + " ".join(self.errors))


def _check_train(train, check):
    check(train.strategy in STRATEGIES, "strategy", " or ".join(STRATEGIES), train.strategy)
    check(train.cluster_resolver in CLUSTER_RESOLVERS, "cluster_resolver",
          " or ".join(CLUSTER_RESOLVERS), train.cluster_resolver)
    for name in ("num_cpu_devices", "batch_size", "gradient_accumulation_steps", "train_steps",
                 "eval_interval", "log_interval", "checkpoint_interval", "max_checkpoints"):
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
    if not train.epochs:  # With --epochs the step count is known once the data is read.
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
    check(train.max_nan_recoveries >= 1, "max_nan_recoveries", ">= 1", train.max_nan_recoveries)
    check(0 < train.nan_learning_rate_factor < 1, "nan_learning_rate_factor", "in (0, 1)",
          train.nan_learning_rate_factor)


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
