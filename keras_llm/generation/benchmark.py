"""Times generation: cached vs full-recomputation decoding, SavedModel vs in-memory, KerasHub.

Measured in one process on the same model and prompts, alternating the contenders and taking
medians (machines here are shared; only ratios measured in one run mean something).
"""

import os
import platform
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_llm.generation.decoding import generate


def machine_description():
    """CPU model, core count and instruction-set flags (Linux's /proc/cpuinfo) and TensorFlow's
    version, for the report."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = value.split()
                    break
    except OSError:
        pass
    wanted = ("avx", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma", "avx512_vnni")
    return {"cpu": model, "cores": os.cpu_count(),
            "flags": [flag for flag in wanted if flag in flags], "tensorflow": tf.__version__}


def machine_line(machine):
    """`machine_description`'s dict as the one line printed above every benchmark's figures."""
    return (f"CPU: {machine['cpu']} | {machine['cores']} cores | flags: "
            f"{' '.join(machine['flags'])} | TensorFlow {machine['tensorflow']}")


def _median_seconds(functions, repeats):
    """Calls each function once (tracing), then `repeats` rounds alternating them; medians."""
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def benchmark_decoding(model, vocabulary_size, prompt_length, new_tokens, batch_sizes, repeats=3):
    """New tokens/s of cached and uncached greedy decoding, per batch size.

    Returns:
        list of dicts: batch, cached / uncached tokens per second, speed-up.
    """
    rows = []
    for batch in batch_sizes:
        prompt = tf.constant(np.random.default_rng(batch).integers(
            1, vocabulary_size, (batch, prompt_length)), tf.int32)
        compiled = {
            use_cache: tf.function(lambda ids, use_cache=use_cache: generate(
                model, ids, new_tokens, temperature=0.0, use_cache=use_cache))
            for use_cache in (True, False)
        }
        seconds = _median_seconds({"cached": lambda: compiled[True](prompt).numpy(),
                                   "uncached": lambda: compiled[False](prompt).numpy()}, repeats)
        rows.append({"batch": batch,
                     "cached_tokens_per_second": batch * new_tokens / seconds["cached"],
                     "uncached_tokens_per_second": batch * new_tokens / seconds["uncached"],
                     "speedup": seconds["uncached"] / seconds["cached"]})
    return rows


def benchmark_saved_model(module, prompt_texts, new_tokens, repeats=3):
    """Latency of the `generate` signature reloaded from a SavedModel vs the in-memory one.

    Args:
        module: a `LanguageModelSignatures`.

    Returns:
        dict: in_memory_seconds, saved_model_seconds, ratio (saved / in-memory).
    """
    request = dict(prompt=tf.constant(prompt_texts), max_new_tokens=tf.constant(new_tokens),
                   temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
                   seed=tf.constant(0))
    with tempfile.TemporaryDirectory() as directory:
        module.model_variables = list(module.model.variables)
        tf.saved_model.save(module, directory,
                            signatures={"generate": module.generate.get_concrete_function()})
        loaded = tf.saved_model.load(directory).signatures["generate"]
        seconds = _median_seconds({
            "in_memory": lambda: module.generate(**request)["token_ids"].numpy(),
            "saved_model": lambda: loaded(**request)["token_ids"].numpy()}, repeats)
    return {"in_memory_seconds": seconds["in_memory"],
            "saved_model_seconds": seconds["saved_model"],
            "ratio": seconds["saved_model"] / seconds["in_memory"]}


def benchmark_keras_hub(model_config, vocabulary_size, prompt_length, new_tokens, batch,
                        ours_tokens_per_second, repeats=3):
    """KerasHub's `GPT2CausalLM.generate` (greedy, its default compilation) on the same shape.

    Returns:
        dict with tokens_per_second and our ratio, or {"status": "not installed"}.
    """
    try:
        import keras_hub
    except ImportError:
        return {"status": "not installed (pip install -e '.[bench]')"}
    total = prompt_length + new_tokens
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size, num_layers=model_config.num_layers,
        num_heads=model_config.num_heads, hidden_dim=model_config.hidden_dim,
        intermediate_dim=model_config.intermediate_dim or 4 * model_config.hidden_dim,
        dropout=0.0, max_sequence_length=total)
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    ids = np.zeros((batch, total), "int32")
    ids[:, :prompt_length] = np.random.default_rng(batch).integers(1, vocabulary_size,
                                                                  (batch, prompt_length))
    inputs = {"token_ids": ids, "padding_mask": ids != 0}
    seconds = _median_seconds(
        {"keras_hub": lambda: causal_lm.generate(inputs, stop_token_ids=None)}, repeats)
    tokens_per_second = batch * new_tokens / seconds["keras_hub"]
    return {"status": f"keras-hub {keras_hub.__version__}", "batch": batch,
            "tokens_per_second": tokens_per_second,
            "ours_over_keras_hub": ours_tokens_per_second / tokens_per_second,
            "jit_compile": str(getattr(causal_lm, "jit_compile", "default"))}


def build_benchmark_model(model_config, vocabulary_size, sequence_length):
    """A GPT of `model_config`'s shape with context `sequence_length` (random weights)."""
    import dataclasses

    from keras_llm.data.features import model_inputs
    from keras_llm.models.builders import build_language_model

    keras.utils.set_random_seed(0)
    model = build_language_model(
        dataclasses.replace(model_config, sequence_length=sequence_length), vocabulary_size)
    model(model_inputs(tf.ones((1, 2), tf.int32)))
    return model
