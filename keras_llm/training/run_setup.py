"""What every training task does around its own data and model, written once.

A task (`language_model.py`, `classifier.py`) runs:

    strategy = begin_run(config, model_dir, kind)          # validate, check dir, strategy, batch
    ... read the data, check its fingerprint, learn the tokenizer ...
    train_steps, eval_interval = resolve_train_steps(config.train, examples_per_epoch)
    if (results := finished_results(model_dir, train_steps)) is not None:
        return results                                      # a rerun of a finished run
    run_directory = open_run_directory(config, model_dir, strategy, train_steps, fingerprint)
    state = create_training_state(...)                     # training_state.py
    summary = run_training_or_close(run_directory, trainer, ..., settings, best=best)

so everything that can be wrong with the flags, the model directory or the data fails before
anything is written.
"""

import json
import os

from keras_llm import config as config_lib, config_validation
from keras_llm.training import loop
from keras_llm.training.best_checkpoint import BestCheckpoint
from keras_llm.training.checkpointing import checkpoint_step, latest_checkpoint
from keras_llm.training.dashboards import Dashboards
from keras_llm.training.precision import apply_runtime_settings, gpu_capabilities
from keras_llm.training.run_directory import RunDirectory, check_resumable
from keras_llm.training.run_summaries import RunSummaries
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
    sequence_length = (config.model.sequence_length if kind == "language-model"
                       else config.data.sequence_length)
    check_attention_memory(config.model, config.train, sequence_length)
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


def attention_bytes(num_layers, num_heads, sequence_length, batch_size):
    """A lower bound on the bytes a training step keeps for attention: per layer, the float32
    scores and probabilities, `(batch, num_heads, sequence_length, sequence_length)` each,
    which the backward pass needs."""
    return 2 * 4 * num_layers * batch_size * num_heads * sequence_length ** 2


def check_attention_memory(model_config, train_config, sequence_length, memory_bytes=None):
    """Refuses, before any data is read, a Transformer step that cannot fit in host memory.

    Only where training runs on the host CPU (no GPU visible), whose replicas share its
    memory: the micro-batch (`batch_size / gradient_accumulation_steps`) over all replicas.

    Args:
        memory_bytes: the memory to compare with; default the host's physical memory.

    Raises:
        ValueError: naming the estimate, the memory and the flags to lower.
    """
    if model_config.architecture not in ("gpt", "transformer"):
        return
    if memory_bytes is None:
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return
        try:
            memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return
    micro_batch = train_config.batch_size // train_config.gradient_accumulation_steps
    needed = attention_bytes(model_config.num_layers, model_config.num_heads, sequence_length,
                             micro_batch)
    if needed > memory_bytes:
        raise ValueError(
            f"--sequence_length={sequence_length} needs at least {needed / 2**30:,.1f} GiB for "
            f"attention alone ({model_config.num_layers} layers x batch {micro_batch} x "
            f"{model_config.num_heads} heads x {sequence_length}^2 x 2 float32 arrays), more "
            f"than this machine's {memory_bytes / 2**30:,.1f} GiB. Lower --sequence_length or "
            "--batch_size, or raise --gradient_accumulation_steps.")


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
            f"--epochs={train_config.epochs} x {steps_per_epoch} steps per epoch; set "
            f"--warmup_steps={train_steps // 10} (10 %) or more --epochs."
        )
    return train_steps, steps_per_epoch


def finished_results(model_dir, train_steps, log=print):
    """The saved results of a run that already trained `train_steps` steps, or None.

    Rerunning a finished command (the same `--train_steps`, or fewer) says so in one line and
    returns its results.json, without building the model or evaluating again. A run whose
    checkpoint reached `train_steps` but that has no results.json (stopped during its final
    evaluation) is not finished: it goes on through the loop, which evaluates and writes them.

    Returns:
        The dict in `MODEL_DIR/results.json` with `"already_finished": True` added, or None.
    """
    results_path = os.path.join(model_dir, "results.json")
    step = checkpoint_step(latest_checkpoint(model_dir))
    if step is None or step < train_steps or not os.path.exists(results_path):
        return None
    with open(results_path, encoding="utf-8") as file:
        results = json.load(file)
    log(f"{model_dir} already finished at step {step} (--train_steps={train_steps}); its results "
        f"are in {results_path}. Raise --train_steps to train on, or use a new --model_dir to "
        "start over.")
    results["already_finished"] = True
    return results


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
                          *, best=None, log=print, dashboards=None):
    """`loop.run_training(...)`; when it fails or is interrupted, `run_directory.close()` first.

    Closing removes a worker's temporary directory; on success the task closes it after writing
    results.json.
    """
    try:
        return loop.run_training(trainer, train_dataset_fn, evaluate_fn, state, run_directory,
                                 settings, best=best, log=log, dashboards=dashboards)
    except BaseException:  # Interrupted or failed: still remove a worker's temporary files.
        run_directory.close()
        raise


def start_dashboards(config, run_directory, trainer, state, train_steps, metrics, probe_batch):
    """The run's TensorBoard summaries and the loop's per-step hooks, for either task.

    The HParams session, config table and projector (`RunSummaries`) start only when there is
    training left: a finished run rerun writes no second session.

    Args:
        config: the resolved `LanguageModelConfig` or `ClassifierConfig`.
        run_directory: the run's `RunDirectory`.
        trainer: the run's `Trainer`.
        state: the run's `TrainingState` (its optimizer's iteration count is the start step).
        train_steps: int, the run's last step.
        metrics: the task's final-metric tags (`run_summaries.LANGUAGE_MODEL_METRICS` or
            `CLASSIFIER_METRICS`).
        probe_batch: a fixed validation batch for histograms (see `dashboards.probe_batch`).

    Returns:
        `(RunSummaries, Dashboards)`.
    """
    train = config.train
    summaries = RunSummaries(run_directory, json.loads(config_lib.to_json(config)), metrics)
    start_step = int(state.optimizer.iterations.numpy())
    if start_step < train_steps:
        summaries.start(start_step)
    dashboards = Dashboards(run_directory, trainer, log_interval=train.log_interval,
                            train_steps=train_steps, histogram_every=train.histogram_every,
                            profile_steps=config_validation.parse_profile_steps(
                                train.profile_steps),
                            probe_batch=probe_batch)
    return summaries, dashboards


def resolve_jit_compile(train_config, architecture, has_gpu=None):
    """Whether the train step is XLA-compiled: --jit_compile; auto is on for language models,
    except under mixed_bfloat16 without a GPU.

    Measured on a 2-core CPU, alternating in one process: XLA makes the GPT step about 1.6x
    faster, and the LSTM language model's 1.28x (82.4 -> 64.4 ms at shakespeare_char_lstm's
    shape; with Keras's own LSTM loop, which multiplied every step's input inside the loop, it
    was 2x slower, see `PrecomputedInputLSTM`). Their batches have one shape. Classifiers pad
    each batch to its longest text, and XLA would compile again for every new length.

    Under mixed_bfloat16 on a CPU (AMD EPYC with avx512_bf16, TF 2.21) XLA's CPU backend runs
    the bfloat16 matmuls slower than TensorFlow's oneDNN kernels, which use the bf16
    instructions: the GPT step took 212 -> 163 ms without XLA at width 256, context 128, 4
    layers; 1,641 -> 964 at 384 / 256 / 6; 3,288 -> 1,916 at 512 / 256 / 8 (1.6x faster than
    the float32 step with XLA, 3,078); the LSTM language model's 90.4 -> 82.7 ms. Only at
    nanoGPT's small shape did XLA win (40.0 against 46.7 ms), where float32 with XLA (34.3)
    beats both.

    Args:
        train_config: `keras_llm.config.TrainConfig`.
        architecture: the language model's `ModelConfig.architecture` ("gpt" or "lstm"), or
            "classifier" (off under auto).
        has_gpu: whether TensorFlow sees a GPU; None: ask TensorFlow.
    """
    if train_config.jit_compile != "auto":
        return train_config.jit_compile == "true"
    if architecture not in ("gpt", "lstm"):
        return False
    if train_config.dtype_policy == "mixed_bfloat16":
        return bool(gpu_capabilities()) if has_gpu is None else has_gpu
    return True


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
