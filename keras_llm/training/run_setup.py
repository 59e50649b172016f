"""What every training task does around its own data and model, written once.

A task (`language_model.py`, `classifier.py`) runs:

    strategy = begin_run(config, model_dir, kind)          # validate, check dir, strategy, batch
    ... read the data, check its fingerprint, learn the tokenizer ...
    train_steps, eval_interval = resolve_train_steps(config.train, examples_per_epoch)
    run_directory = open_run_directory(config, model_dir, strategy, train_steps, fingerprint)
    state = create_training_state(...)                     # training_state.py
    summary = run_training_or_close(run_directory, trainer, ..., settings, best=best)

so everything that can be wrong with the flags, the model directory or the data fails before
anything is written.
"""

import json

from keras_llm import config as config_lib, config_validation
from keras_llm.training import loop
from keras_llm.training.best_checkpoint import BestCheckpoint
from keras_llm.training.precision import apply_runtime_settings
from keras_llm.training.run_directory import RunDirectory, check_resumable
from keras_llm.training.strategy import make_strategy

# kind -> (the config check, the data fields a resume must share with the saved run).
_TASKS = {
    "language-model": (config_validation.validate,
                       ("corpus", "tokenizer", "vocabulary_size", "lower_case")),
    "classifier": (config_validation.validate_classifier,
                   ("dataset", "vocabulary_size", "lower_case", "sequence_length")),
}


def begin_run(config, model_dir, kind):
    """Validates `config`, checks `model_dir`, creates the strategy and checks the batch size.

    The strategy comes first of any TensorFlow work (multi-worker set-up and the logical-CPU
    split must precede it); the data is read after this.

    Args:
        config: a `LanguageModelConfig` or `ClassifierConfig`.
        model_dir: str, the --model_dir.
        kind: "language-model" or "classifier".

    Returns:
        The run's `tf.distribute.Strategy`.

    Raises:
        ValueError: a bad flag (`config_validation.validate*`), a --dtype_policy the hardware
            does not run natively (`precision.check_dtype_policy`), a model directory this run cannot
            resume (`ModelDirectoryError`), or a --batch_size the replicas times
            --gradient_accumulation_steps do not divide.
    """
    validate, data_fields = _TASKS[kind]
    validate(config)
    check_resumable(model_dir, json.loads(config_lib.to_json(config)), data_fields, kind)
    train = config.train
    apply_runtime_settings(train)  # Threads before any op; the dtype policy before any model.
    strategy = make_strategy(train.strategy, train.num_cpu_devices, train.cluster_timeout_seconds,
                             train.cluster_resolver)
    replicas = strategy.num_replicas_in_sync
    if train.batch_size % (replicas * train.gradient_accumulation_steps):
        raise ValueError(
            f"--batch_size={train.batch_size} must be divisible by the {replicas} replica(s) times "
            f"--gradient_accumulation_steps={train.gradient_accumulation_steps}."
        )
    return strategy


def resolve_train_steps(train_config, examples_per_epoch):
    """Returns (train_steps, eval_interval) once the size of the training split is known.

    With `--epochs` > 0, `train_steps = epochs * ceil(examples_per_epoch / batch_size)` and the
    evaluation runs once per epoch; otherwise the config's own values are returned.

    Raises:
        ValueError: `--warmup_steps` is not below the resolved number of steps.
    """
    if not train_config.epochs:
        return train_config.train_steps, train_config.eval_interval
    steps_per_epoch = -(-examples_per_epoch // train_config.batch_size)
    train_steps = train_config.epochs * steps_per_epoch
    if train_config.learning_rate_schedule != "constant" and train_config.warmup_steps >= train_steps:
        raise ValueError(
            f"--warmup_steps={train_config.warmup_steps} must be below the {train_steps} steps of "
            f"--epochs={train_config.epochs} x {steps_per_epoch} steps per epoch."
        )
    return train_steps, steps_per_epoch


def open_run_directory(config, model_dir, strategy, train_steps, fingerprint, log=print):
    """Opens the `RunDirectory` and writes config.json and training_data.json (chief only).

    Args:
        config: the validated config; written resolved, as JSON.
        model_dir: str, the --model_dir.
        strategy: the run's strategy (decides whether this worker is the chief).
        train_steps: the resolved number of steps (a finished run keeps its config.json).
        fingerprint: `training_data_fingerprint` of the training split.
        log: a print-like function.
    """
    run_directory = RunDirectory(model_dir, strategy)
    run_directory.write_config(json.loads(config_lib.to_json(config)), train_steps, log)
    run_directory.write_training_data(fingerprint)
    return run_directory


def make_best_checkpoint(train_config, state, run_directory):
    """The `BestCheckpoint` of `--keep_best` (lower is better for loss and perplexity), or None."""
    if not train_config.keep_best:
        return None
    return BestCheckpoint(state.checkpoint, run_directory, train_config.keep_best)


def run_training_or_close(run_directory, trainer, train_dataset_fn, evaluate_fn, state, settings,
                          *, best=None, log=print):
    """`loop.run_training(...)`; when it fails or is interrupted, `run_directory.close()` first.

    Closing removes a worker's temporary directory; on success the task closes it after writing
    results.json.
    """
    try:
        return loop.run_training(trainer, train_dataset_fn, evaluate_fn, state, run_directory,
                                 settings, best=best, log=log)
    except BaseException:  # Interrupted or failed: still remove a worker's temporary files.
        run_directory.close()
        raise


def resolve_jit_compile(train_config, architecture):
    """Whether the train step is XLA-compiled: --jit_compile; auto is on for the GPT only.

    Measured with `experiments.benchmark` on a 2-core CPU: XLA makes the GPT step about 1.6x
    faster but the LSTM language model's about 2x slower (its recurrence becomes a while loop
    of small XLA computations); classifiers pad each batch to its longest text, and XLA would
    compile again for every new length.

    Args:
        train_config: `keras_llm.config.TrainConfig`.
        architecture: "gpt" for the GPT language model; anything else (lstm, classifiers) is
            off under auto.
    """
    if train_config.jit_compile == "auto":
        return architecture == "gpt"
    return train_config.jit_compile == "true"


def run_settings(train_config, train_steps, eval_interval, units_per_step, *, unit_name="tokens",
                 log_perplexity=True, checkpoint_interval=None, flops_per_step=0.0,
                 peak_flops_per_second=0.0):
    """The `loop.RunSettings` of a `TrainConfig` and the task's resolved figures.

    Args:
        train_config: `keras_llm.config.TrainConfig` (log and checkpoint intervals, NaN
            recovery flags).
        train_steps, eval_interval: from `resolve_train_steps`.
        units_per_step: tokens (language models) or examples (classifiers) per step.
        unit_name: "tokens" or "examples".
        log_perplexity: also log exp(loss).
        checkpoint_interval: overrides `--checkpoint_interval` (None: keep it).
        flops_per_step, peak_flops_per_second: for the model FLOPs utilization (0: none).
    """
    return loop.RunSettings(
        train_steps=train_steps, eval_interval=eval_interval,
        log_interval=train_config.log_interval,
        checkpoint_interval=(train_config.checkpoint_interval if checkpoint_interval is None
                             else checkpoint_interval),
        units_per_step=units_per_step, unit_name=unit_name, log_perplexity=log_perplexity,
        nan_recoveries=train_config.max_nan_recoveries if train_config.recover_from_nan else 0,
        nan_learning_rate_factor=train_config.nan_learning_rate_factor,
        steps_per_execution=train_config.steps_per_execution,
        flops_per_step=flops_per_step, peak_flops_per_second=peak_flops_per_second,
    )
