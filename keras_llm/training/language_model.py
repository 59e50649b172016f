"""`train_language_model(config, model_dir)`: one language-model run, end to end.

Order matters: the strategy is created first (multi-worker set-up and the logical-CPU split must
precede any other TensorFlow work), then the corpus and tokenizer, then model and optimizer in
the strategy's scope, then the loop. Everything that can be wrong with the input is checked
before anything is written to the model directory.
"""

import json
import math
import os
import weakref

import numpy as np
import tensorflow as tf

from keras_llm import config as config_lib
from keras_llm.data import corpora, language_model_dataset
from keras_llm.data.tokenizers import CharacterTokenizer, WordPieceTokenizer, load_tokenizer
from keras_llm.generation.sampling import generate
from keras_llm.models.builders import build_language_model
from keras_llm.training import loop, losses
from keras_llm.training.checkpointing import reported_checkpoint, restore_model
from keras_llm.training.run_directory import (
    RunDirectory,
    check_resumable,
    check_training_data,
    save_directory_atomically,
    training_data_fingerprint,
)
from keras_llm.training.strategy import make_strategy
from keras_llm.training.trainer import Trainer
from keras_llm.training.training_state import create_training_state

# Fixed prompts whose continuations are logged to TensorBoard at every evaluation.
DEFAULT_SAMPLE_PROMPTS = ("\n", "ROMEO:", "春")


# Compiled decoding loops per model (weak keys: they go with their model).
_COMPILED_GENERATE = weakref.WeakKeyDictionary()


def make_tokenizer(data_config, train_text, model_dir):
    """Loads the tokenizer saved in `model_dir` (resume) or learns one from the training text."""
    saved = os.path.join(model_dir, "tokenizer")
    if os.path.isdir(saved):
        return load_tokenizer(saved)
    if data_config.tokenizer == "character":
        return CharacterTokenizer.from_texts([train_text])
    return WordPieceTokenizer.from_texts(
        train_text.splitlines(), vocabulary_size=data_config.vocabulary_size,
        lower_case=data_config.lower_case,
    )


def _token_ids(tokenizer, text):
    return tokenizer.tokenize(tf.constant(text)).numpy().astype(np.int32)


def train_language_model(config, model_dir, log=print):
    """Trains the language model `config` describes, resuming from `model_dir` if possible.

    Args:
        config: `keras_llm.config.LanguageModelConfig`; validated here.
        model_dir: str; receives config.json, tokenizer/, checkpoints/, logs/ and results.json.
        log: a print-like function for progress lines.

    Returns:
        The dict written to `MODEL_DIR/results.json` (losses in nats per token).

    Raises:
        ValueError: a bad configuration (`config_lib.validate`), corpus (`CorpusError`) or model
            directory (`ModelDirectoryError`), before anything is written.
        NonFiniteLossError: the loss became NaN or Inf.
    """
    config_lib.validate(config)
    data, model_config, train = config.data, config.model, config.train
    check_resumable(model_dir, json.loads(config_lib.to_json(config)),
                    ("corpus", "tokenizer", "vocabulary_size", "lower_case"),
                    "language-model")
    strategy = make_strategy(train.strategy, train.num_cpu_devices, train.cluster_timeout_seconds,
                             train.cluster_resolver)
    replicas = strategy.num_replicas_in_sync
    if train.batch_size % (replicas * train.gradient_accumulation_steps):
        raise ValueError(
            f"--batch_size={train.batch_size} must be divisible by the {replicas} replica(s) times "
            f"--gradient_accumulation_steps={train.gradient_accumulation_steps}."
        )
    corpus = corpora.load_corpus(data.corpus, data.data_dir, data.validation_file,
                                 data.encoding, data.errors)
    fingerprint = training_data_fingerprint([corpus.train_text])
    check_training_data(model_dir, fingerprint)
    tokenizer = make_tokenizer(data, corpus.train_text, model_dir)
    train_ids = _token_ids(tokenizer, corpus.train_text)
    validation_ids = _token_ids(tokenizer, corpus.validation_text)
    # Fail on a too-short corpus now, before anything is written.
    language_model_dataset.training_dataset(train_ids, model_config.sequence_length, 1, 0)
    language_model_dataset.evaluation_dataset(validation_ids, model_config.sequence_length, 1)
    # With --epochs, one epoch is one pass over every window start (stride 1).
    train_steps, eval_interval = loop.resolve_train_steps(
        train, len(train_ids) - model_config.sequence_length)

    run_directory = RunDirectory(model_dir, strategy)
    run_directory.write_config(json.loads(config_lib.to_json(config)), train_steps, log)
    run_directory.write_training_data(fingerprint)
    if run_directory.is_chief and not os.path.isdir(run_directory.file("tokenizer")):
        save_directory_atomically(tokenizer.save, run_directory.file("tokenizer"))

    state = create_training_state(
        strategy, lambda: build_language_model(model_config, tokenizer.vocabulary_size),
        tf.zeros((1, model_config.sequence_length), tf.int32), train, train_steps,
        run_directory, log,
    )
    model, optimizer, checkpoint, manager = (state.model, state.optimizer, state.checkpoint,
                                             state.manager)
    log(f"{model_config.architecture}: {model.count_params():,} parameters, vocabulary "
        f"{tokenizer.vocabulary_size}, {len(train_ids):,} training / {len(validation_ids):,} "
        f"validation tokens, {replicas} replica(s) ({type(strategy).__name__}).")

    trainer = Trainer(strategy, model, optimizer, losses.token_cross_entropy,
                      train.gradient_clip_norm, train.gradient_accumulation_steps,
                      weight_average=state.weight_average)
    evaluation = strategy.experimental_distribute_dataset(
        language_model_dataset.evaluation_dataset(
            validation_ids, model_config.sequence_length, train.batch_size, train.eval_batches
        )
    )
    samples_writer = run_directory.summary_writer("samples") if train.sample_length else None
    prompts = [p for p in DEFAULT_SAMPLE_PROMPTS if _covers(tokenizer, p)] or ["\n"]

    def evaluate(step):
        totals = trainer.evaluate(evaluation)
        if train.sample_length:
            with samples_writer.as_default(step=step), trainer.evaluation_weights():
                for index, prompt in enumerate(prompts):
                    text = sample_text(model, tokenizer, prompt, train.sample_length,
                                       model_config.sequence_length, seed=train.seed)
                    tf.summary.text(f"sample_{index}", _markdown(text))
        return {"loss": totals["loss"], "perplexity": math.exp(min(totals["loss"], 50.0)),
                "tokens": int(totals["count"])}

    def train_dataset(start_step):
        return language_model_dataset.training_dataset(
            train_ids, model_config.sequence_length, train.batch_size, train.seed, start_step
        )

    tokens_per_step = train.batch_size * model_config.sequence_length
    best = (loop.BestCheckpoint(checkpoint, run_directory, train.keep_best,
                                "min" if train.keep_best in ("loss", "perplexity") else "max")
            if train.keep_best else None)
    try:
        summary = loop.run_training(
            trainer, train_dataset, evaluate, manager, run_directory,
            train_steps=train_steps, eval_interval=eval_interval,
            log_interval=train.log_interval, checkpoint_interval=train.checkpoint_interval,
            examples_per_step=train.batch_size, units_per_step=tokens_per_step, best=best, log=log,
            nan_recoveries=train.max_nan_recoveries if train.recover_from_nan else 0,
            nan_learning_rate_factor=train.nan_learning_rate_factor,
        )
    except BaseException:  # Interrupted or failed: still remove a worker's temporary files.
        run_directory.close()
        raise
    chosen = best.restore(log) if best is not None else None
    validation = chosen["validation"] if chosen else summary["validation"]
    results = {
        "task": "language_modeling",
        "preset": config.preset,
        "architecture": model_config.architecture,
        "corpus": corpus.name,
        "steps": summary["steps"],
        "resumed_from_step": summary["start_step"],
        "selected_step": chosen["step"] if chosen else summary["steps"],
        "parameters": int(model.count_params()),
        "train": {"loss": summary["train_loss"]},
        "validation": {"loss": validation["loss"], "perplexity": validation["perplexity"],
                       "tokens": validation["tokens"]},
        "tokens_per_second": summary["units_per_second"],
        "wall_seconds": summary["wall_seconds"],
        "num_replicas": replicas,
        "nan_rollbacks": summary["nan_rollbacks"],
        "strategy": train.strategy,
    }
    run_directory.write_results(results, summary["start_step"] < summary["steps"], log)
    run_directory.close()
    return results


def _covers(tokenizer, prompt):
    ids = tokenizer.tokenize(tf.constant(prompt)).numpy()
    return len(ids) > 0 and tokenizer.unk_id not in ids


def _markdown(text):
    # TensorBoard renders text summaries as Markdown; a code block keeps line breaks and spaces.
    return "```\n" + text + "\n```"


def sample_text(model, tokenizer, prompt, max_new_tokens, sequence_length, temperature=1.0,
                top_k=None, top_p=None, seed=0):
    """Generates a continuation of `prompt` and returns prompt + continuation as text.

    The decoding loop runs as one compiled `tf.function` (traced once per model and sampling
    settings), not token by token in eager mode.
    """
    prompt_ids = tokenizer.tokenize(tf.constant([prompt])).to_tensor()  # (1, prompt_len)
    if prompt_ids.shape[1] == 0:
        raise ValueError(f"--prompt={prompt!r} has no tokens; give at least one character.")
    key = (max_new_tokens, sequence_length, temperature, top_k, top_p)
    compiled = _COMPILED_GENERATE.setdefault(model, {})
    if key not in compiled:
        def generate_ids(ids, seed):
            return generate(model, ids, max_new_tokens=max_new_tokens,
                            sequence_length=sequence_length, temperature=temperature,
                            top_k=top_k, top_p=top_p, seed=seed)

        compiled[key] = tf.function(
            generate_ids,
            input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([2], tf.int32)],
        )
    output = compiled[key](prompt_ids, tf.constant([seed, 0], tf.int32))
    return tokenizer.detokenize(output)[0].numpy().decode("utf-8")


def load_trained_language_model(model_dir):
    """Rebuilds a trained language model from its run directory.

    Returns:
        (model, tokenizer, config, step): the model restored from the checkpoint the run
        reported (`best/` if it kept one, else the latest), its
        tokenizer, its `LanguageModelConfig` and the step of the checkpoint.

    Raises:
        FileNotFoundError: no config.json, tokenizer or checkpoint in `model_dir`.
        ValueError: `model_dir` holds a classifier run.
    """
    config = config_lib.load_run_config(model_dir, config_lib.LanguageModelConfig)
    latest = reported_checkpoint(model_dir)
    tokenizer = load_tokenizer(os.path.join(model_dir, "tokenizer"))
    model = build_language_model(config.model, tokenizer.vocabulary_size)
    model(tf.zeros((1, config.model.sequence_length), tf.int32))
    step = restore_model(model, latest)
    return model, tokenizer, config, step
