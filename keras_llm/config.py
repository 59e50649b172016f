"""Typed, frozen experiment configuration, with one help string per field.

Every field's help text lives in its `metadata`, so `experiments/*.py` can turn each field into
an absl flag of the same name without repeating it. Presets (`keras_llm.presets`) are short
overrides of these defaults; the resolved config is saved as `MODEL_DIR/config.json`.
"""

import dataclasses
import json
import os

# The --strategy names `keras_llm.training.strategy.make_strategy` maps to tf.distribute
# strategies. They live here, with the flag they check, so the config (and every command's flag
# checks) needs no TensorFlow.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
# Where multi_worker reads the cluster from: the TF_CONFIG variable, or a SLURM job step.
CLUSTER_RESOLVERS = ("tf_config", "slurm")
# --jit_compile values: auto compiles the train step with XLA where batches have one shape
# (language models); classifiers pad each batch to its longest text, and XLA compiles once per shape.
JIT_COMPILE_MODES = ("auto", "true", "false")
# --dtype_policy values (Keras mixed precision policies).
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
# A warm-up the user did not set is cut to this fraction of --train_steps when it is longer:
# BERT's warmup_proportion (Devlin et al. 2019). nanoGPT's shakespeare_char warms up for 5 %.
DEFAULT_WARMUP_FRACTION = 0.1
# The final figures each training command reports (dotted paths into its results.json): the
# HParams dashboard's metrics, and what `experiments.sweep --metric` may rank trials by.
LANGUAGE_MODEL_METRICS = ("validation.loss", "validation.perplexity", "train.loss",
                          "tokens_per_second")
CLASSIFIER_METRICS = ("validation.loss", "validation.accuracy", "validation.f1",
                      "validation.precision", "validation.recall", "test.accuracy", "test.f1",
                      "test.precision", "test.recall", "train.loss", "examples_per_second")


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
        0, "If > 0: train for this many passes over the training split; 0: train --train_steps "
        "steps. Setting only --train_steps over a preset with epochs sets this to 0."
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
    histogram_every: int = _field(
        0, "Write TensorBoard histograms of the weights, the gradients and the activations (on a "
        "fixed validation batch) every this many steps; 0 = off."
    )
    profile_steps: str = _field(
        "", "START,END: capture a tf.profiler trace of training steps START..END (1-based, "
        "inclusive) into MODEL_DIR/logs/plugins/profile; empty = off. View it in TensorBoard's "
        "Profile tab after `pip install keras_llm[profile]` (tensorboard-plugin-profile)."
    )
    cluster_timeout_seconds: int = _field(
        120, "multi_worker: fail if the other workers are not reachable within this many seconds."
    )
    cluster_resolver: str = _field(
        "tf_config", "multi_worker: where the cluster comes from: tf_config (TF_CONFIG) or slurm."
    )
    steps_per_execution: int = _field(
        16, "Optimizer steps per compiled call (Keras's steps_per_execution): one host sync per "
        "call; each step's loss is still logged and NaN-checked. Calls end at every log, "
        "evaluation and checkpoint step, and a stop signal is honoured at the end of a call."
    )
    jit_compile: str = _field(
        "auto", "Compile the train step with XLA: true, false, or auto (true for the language "
        "models, GPT and LSTM, except under mixed_bfloat16 without a GPU, where TensorFlow's "
        "own bf16 kernels train faster from width 256 up; false for classifiers, whose batches "
        "vary in length and would recompile)."
    )
    dtype_policy: str = _field(
        "float32", "float32, mixed_bfloat16 or mixed_float16 (Keras mixed precision; softmax, "
        "loss and labels stay float32). Mixed policies need native hardware support (bfloat16: "
        "a CPU with avx512_bf16 or AMX, or a GPU of compute capability >= 8.0; float16: a GPU "
        ">= 7.0) unless --force_dtype_policy."
    )
    force_dtype_policy: bool = _field(
        False, "Use --dtype_policy even without native hardware support (emulated: slower)."
    )
    intra_op_threads: int = _field(
        0, "Threads inside one TensorFlow op (and XLA); 0: TensorFlow's default (all cores)."
    )
    inter_op_threads: int = _field(
        0, "Independent TensorFlow ops run at once; 0: TensorFlow's default."
    )
    malloc_top_pad_mb: int = _field(
        64, "MiB of freed memory glibc's malloc keeps at the top of each heap instead of "
        "returning it to the kernel after every step (page-faulted in again by the next: 41 -> "
        "34 ms/step at nanoGPT's shape); 0: the C library's default (128 KiB)."
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
    validation_file: str = _field(None, "--dataset=files: the validation file; default: a "
                                  "seeded 10% of the training rows, held out (any dataset "
                                  "without a validation split).")
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


def _read_run_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is --model_dir={model_dir} a training run?")
    with open(path, encoding="utf-8") as file:
        try:
            return path, json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None


def load_any_run_config(model_dir):
    """Reads `model_dir/config.json` as whichever run it holds.

    Returns:
        A `LanguageModelConfig` or a `ClassifierConfig`.

    Raises:
        FileNotFoundError: `model_dir/config.json` does not exist.
        ValueError: it is not valid JSON, or neither kind of config.
    """
    path, values = _read_run_config(model_dir)
    cls = ClassifierConfig if "dataset" in values.get("data", {}) else LanguageModelConfig
    return from_dict(cls, values, where=path)


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
    path, values = _read_run_config(model_dir)
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
    smoke run of 20 steps would otherwise be refused by `config_validation.validate`. A
    warm-up longer than `DEFAULT_WARMUP_FRACTION` of `--train_steps` is cut to that fraction
    (rounded down), unless the user set `--warmup_steps` (then `validate` still refuses one
    that does not fit) or the run is sized by `--epochs` (its step count is known only once
    the data is read).

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
