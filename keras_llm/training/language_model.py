"""`train_language_model(config, model_dir)`: one language-model run, end to end.

Order matters: the strategy is created first (multi-worker set-up and the logical-CPU split must
precede any other TensorFlow work), then the corpus and tokenizer, then model and optimizer in
the strategy's scope, then the loop. Everything that can be wrong with the input is checked
before anything is written to the model directory.
"""

import math
import os

import numpy as np
import tensorflow as tf

from keras_llm.data import corpora, language_model_dataset
from keras_llm.data.character_tokenizer import CharacterTokenizer
from keras_llm.data.features import model_inputs
from keras_llm.data.tokenizers import load_tokenizer
from keras_llm.data.wordpiece_tokenizer import WordPieceTokenizer
from keras_llm.generation.text_sampling import sample_prompts, sample_text
from keras_llm.models.builders import build_language_model
from keras_llm.progress import dataset_batches, evaluate_with_progress, Progress
from keras_llm.training import flops, losses, run_setup
from keras_llm.training.dashboards import probe_batch, write_attention_maps
from keras_llm.training.run_directory import check_training_data, training_data_fingerprint
from keras_llm.training.run_summaries import LANGUAGE_MODEL_METRICS
from keras_llm.training.trainer import Trainer
from keras_llm.training.training_state import create_training_state


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


def _token_ids(tokenizer, text, description, chunk_characters=1 << 20):
    """`tokenizer.tokenize(text)` as int32 numpy, about `chunk_characters` at a time, with a
    `Progress` in characters.

    Chunks end after a line end, where neither tokenizer joins anything across (a character
    is a token; a word piece never spans a line end), so the ids equal one call's.
    """
    chunks, start = [], 0
    with Progress(description, len(text), unit="characters") as progress:
        while start < len(text):
            end = text.find("\n", start + chunk_characters)
            end = len(text) if end < 0 else end + 1
            chunks.append(tokenizer.tokenize(tf.constant(text[start:end])).numpy())
            progress.update(end - start)
            start = end
    if not chunks:
        return tokenizer.tokenize(tf.constant(text)).numpy().astype(np.int32)
    return np.concatenate(chunks).astype(np.int32)


def train_language_model(config, model_dir, log=print):
    """Trains the language model `config` describes, resuming from `model_dir` if possible.

    Args:
        config: `keras_llm.config.LanguageModelConfig`; validated here.
        model_dir: str; receives config.json, tokenizer/, checkpoints/, logs/ and results.json.
        log: a print-like function for progress lines.

    Returns:
        The dict written to `MODEL_DIR/results.json` (losses in nats per token).

    Raises:
        ValueError: a bad configuration (`config_validation.validate`), corpus (`CorpusError`) or model
            directory (`ModelDirectoryError`), before anything is written.
        NonFiniteLossError: the loss became NaN or Inf.
    """
    strategy = run_setup.begin_run(config, model_dir, "language-model")
    data, model_config, train = config.data, config.model, config.train
    replicas = strategy.num_replicas_in_sync
    corpus = corpora.load_corpus(data.corpus, data.data_dir, data.validation_file,
                                 data.encoding, data.errors)
    fingerprint = training_data_fingerprint([corpus.train_text])
    check_training_data(model_dir, fingerprint)
    tokenizer = make_tokenizer(data, corpus.train_text, model_dir)
    train_ids = _token_ids(tokenizer, corpus.train_text, "tokenizing training text")
    validation_ids = _token_ids(tokenizer, corpus.validation_text, "tokenizing validation text")
    # Fail on a too-short corpus now, before anything is written.
    language_model_dataset.training_dataset(train_ids, model_config.sequence_length, 1, 0)
    language_model_dataset.evaluation_dataset(validation_ids, model_config.sequence_length, 1)
    # With --epochs, one epoch is one pass over every window start (stride 1).
    train_steps, eval_interval = run_setup.resolve_train_steps(
        train, len(train_ids) - model_config.sequence_length)
    if (finished := run_setup.finished_results(model_dir, train_steps, log)) is not None:
        return finished

    run_directory = run_setup.open_run_directory(config, model_dir, strategy, train_steps,
                                                 fingerprint, log)
    run_directory.save_directory("tokenizer", tokenizer.save)

    state = create_training_state(
        strategy, lambda: build_language_model(model_config, tokenizer.vocabulary_size),
        model_inputs(tf.zeros((1, model_config.sequence_length), tf.int32)), train, train_steps,
        run_directory, log,
    )
    model = state.model
    log(f"{model_config.architecture}: {model.count_params():,} parameters, vocabulary "
        f"{tokenizer.vocabulary_size}, {len(train_ids):,} training / {len(validation_ids):,} "
        f"validation tokens, {replicas} replica(s) ({type(strategy).__name__}).")

    trainer = Trainer(strategy, model, state.optimizer, losses.token_cross_entropy,
                      train.gradient_clip_norm, train.gradient_accumulation_steps,
                      weight_average=state.weight_average,
                      jit_compile=run_setup.resolve_jit_compile(train, model_config.architecture))
    evaluation_batches = language_model_dataset.evaluation_dataset(
        validation_ids, model_config.sequence_length, train.batch_size, train.eval_batches)
    evaluation = strategy.experimental_distribute_dataset(evaluation_batches)
    evaluation_size = dataset_batches(evaluation_batches)  # For the ETA.
    samples_writer = run_directory.summary_writer("samples") if train.sample_length else None
    prompts = sample_prompts(tokenizer)
    # A few validation windows: the histograms' batch; its first window's attention is shown.
    probe = probe_batch(language_model_dataset.evaluation_dataset(
        validation_ids, model_config.sequence_length, 4, 1))
    validation_writer = run_directory.summary_writer("validation")

    def evaluate(step):
        totals = evaluate_with_progress(trainer, evaluation, "validation", evaluation_size)
        if train.sample_length:
            with samples_writer.as_default(step=step), trainer.evaluation_weights():
                for index, prompt in enumerate(prompts):
                    text = sample_text(model, tokenizer, prompt, train.sample_length,
                                       seed=train.seed)
                    tf.summary.text(f"sample_{index}", _markdown(text))
        if run_directory.is_chief:  # Recomputed outside the step: only the chief writes.
            with trainer.evaluation_weights():
                write_attention_maps(validation_writer, model, probe[0], step, tokenizer)
        return {"loss": totals["loss"], "perplexity": math.exp(min(totals["loss"], 50.0)),
                "tokens": int(totals["count"])}

    def train_dataset(start_step):
        return language_model_dataset.training_dataset(
            train_ids, model_config.sequence_length, train.batch_size, train.seed, start_step
        )

    best = run_setup.make_best_checkpoint(train, state, run_directory)
    tokens_per_step = train.batch_size * model_config.sequence_length
    peak = flops.measure_matmul_peak()
    flops_per_step = tokens_per_step * flops.language_model_flops_per_token(
        model_config, model.count_params())
    log(f"model FLOPs: {flops_per_step / 1e9:.2f} GFLOP/step (6N + 12LdT per token); measured "
        f"float32 matmul peak {peak / 1e9:.0f} GFLOP/s.")
    settings = run_setup.run_settings(train, train_steps, eval_interval,
                                      units_per_step=tokens_per_step,
                                      flops_per_step=flops_per_step, peak_flops_per_second=peak)
    summaries, dashboards = run_setup.start_dashboards(config, run_directory, trainer, state,
                                                       train_steps, LANGUAGE_MODEL_METRICS, probe)
    summary = run_setup.run_training_or_close(run_directory, trainer, train_dataset, evaluate,
                                              state, settings, best=best, log=log,
                                              dashboards=dashboards)
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
        "milliseconds_per_step": summary["milliseconds_per_step"],
        "model_flops_utilization": summary["model_flops_utilization"],
        "peak_flops_per_second": peak,
        "wall_seconds": summary["wall_seconds"],
        "num_replicas": replicas,
        "nan_rollbacks": summary["nan_rollbacks"],
        "strategy": train.strategy,
    }
    run_directory.write_results(results, summary["start_step"] < summary["steps"], log)
    if summary["start_step"] < summary["steps"]:  # A finished run keeps its final summaries.
        with trainer.evaluation_weights():
            summaries.finish(results, summary["steps"], model, tokenizer.vocabulary)
    run_directory.close()
    return results


def _markdown(text):
    # TensorBoard renders text summaries as Markdown; a code block keeps line breaks and spaces.
    return "```\n" + text + "\n```"
