"""Times the training step on synthetic batches, against peers measured in the same process.

Used by `experiments/benchmark.py` (the side-by-side table) and `experiments/benchmark_train.py`
(one configuration, one figure). Every contender runs on the same synthetic token ids, warm-up
(tracing, compilation) excluded; contenders are timed in alternating rounds and compared by
medians and by per-round ratios, because machines here are shared and only ratios measured in
one run mean something.
"""

import dataclasses
import resource
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_llm.data.features import model_inputs
from keras_llm.data.language_model_dataset import PREFETCH_BATCHES, distribution_options
from keras_llm.models.builders import build_language_model
from keras_llm.training import flops, losses, optimizer as optimizer_lib
from keras_llm.training.run_setup import resolve_jit_compile
from keras_llm.training.strategy import make_strategy
from keras_llm.training.trainer import Trainer


def alternate_rounds(contenders, steps, repeats):
    """Seconds per step of each contender in every one of `repeats` alternating rounds.

    Args:
        contenders: dict name -> `run(num_steps)`, which trains that many steps and returns once
            their results are on the host.
        steps: int, steps per timed call.
        repeats: int, rounds; each round times every contender once, in turn.

    Returns:
        dict name -> list of `repeats` seconds per step, in round order. Each contender runs two
        untimed calls first.
    """
    for run in contenders.values():
        # Tracing, compilation, first allocations: two calls, because under MirroredStrategy the
        # second call still compiles (measured: 5.8 s, then 0.9 s, then 0.06 s per step).
        run(steps)
        run(steps)
    seconds = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run(steps)
            seconds[name].append((time.perf_counter() - start) / steps)
    return seconds


def paired_speedup(rounds, contender, references):
    """How many times faster `contender` ran than the fastest of `references`, round by round.

    A shared machine's load drifts between rounds; comparing within each round, where the
    contenders ran seconds apart, keeps that drift out of the ratio, and the spread over rounds
    shows how far one figure can be trusted.

    Args:
        rounds: dict name -> seconds per step per round, as `alternate_rounds` returns.
        contender: name of the contender whose speed-up is wanted.
        references: names compared against; in each round the fastest of them counts.

    Returns:
        dict: "median", "min", "max" of the per-round ratios (reference seconds over contender
        seconds; above 1 means `contender` is faster), and "rounds", the ratios in round order.
    """
    ratios = [min(rounds[name][index] for name in references) / seconds
              for index, seconds in enumerate(rounds[contender])]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "rounds": ratios}


def synthetic_token_ids(batch_size, sequence_length, vocabulary_size, seed=0, batches=16):
    """int32 `(batches, batch_size, sequence_length + 1)` uniform token ids: inputs and targets."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocabulary_size, (batches, batch_size, sequence_length + 1),
                        dtype=np.int32)


def prebuilt_dataset(ids):
    """An endless `tf.data.Dataset` of `(features, targets, mask)` global batches from `ids`
    `(batches, batch_size, sequence_length + 1)`: the batches already built, in memory."""
    inputs, targets = ids[..., :-1], ids[..., 1:]
    return _as_trained(tf.data.Dataset.from_tensor_slices(
        (model_inputs(inputs, np.ones(inputs.shape, bool)), targets,
         np.ones(targets.shape, np.float32))))


def _as_trained(dataset):
    """`dataset`, endless, prefetched and optioned as training's pipelines are (a fixed prefetch,
    no autotuning), for every contender alike. With `prefetch(AUTOTUNE)` the steps of KerasHub's
    `fit` came out at exactly 40.00 or 80.00 ms (38 ms without autotuning) and ours at 42 ms
    (34 ms): autotuning, not the step, set the pace."""
    return dataset.repeat().prefetch(PREFETCH_BATCHES).with_options(distribution_options())


def keras_llm_step(config, vocabulary_size, strategy=None, dataset=None, seed=0):
    """keras_llm's real training step for `config`: `run(num_steps)` and the model.

    The optimizer is the one training builds from the same flags (AdamW, schedule); the
    Trainer gets `--gradient_clip_norm`, `--jit_compile` and runs `--steps_per_execution`
    steps per call, reading every step's loss as the training loop does.

    Args:
        config: a `LanguageModelConfig`.
        vocabulary_size: int.
        strategy: a `tf.distribute.Strategy`; None: the one `config.train.strategy` names.
        dataset: a `tf.data.Dataset` of global batches; None: `prebuilt_dataset` of synthetic ids.
        seed: the Keras seed for the initial weights.

    Returns:
        `(run, model, strategy)`.
    """
    model_config, train = config.model, config.train
    if strategy is None:
        strategy = make_strategy(train.strategy, train.num_cpu_devices,
                                 train.cluster_timeout_seconds, train.cluster_resolver)
    if dataset is None:
        dataset = prebuilt_dataset(synthetic_token_ids(
            train.batch_size, model_config.sequence_length, vocabulary_size, seed))
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build_language_model(model_config, vocabulary_size)
        model(model_inputs(tf.zeros((1, model_config.sequence_length), tf.int32)))
        optimizer = optimizer_lib.make_optimizer(
            model, train, optimizer_lib.make_schedule(train, train.train_steps))
    trainer = Trainer(strategy, model, optimizer, losses.token_cross_entropy,
                      train.gradient_clip_norm, train.gradient_accumulation_steps,
                      jit_compile=resolve_jit_compile(train, model_config.architecture))
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    chunk = train.steps_per_execution

    def run(num_steps):
        done = 0
        while done < num_steps:
            length = min(chunk, num_steps - done)
            trainer.train_steps(iterator, tf.constant(length))["loss"].numpy()
            done += length

    return run, model, strategy


def _fit_runner(model, ids):
    """`run(num_steps)`: `model.fit` over the batches of `ids` for that many steps, silently."""
    inputs, targets = ids[..., :-1], ids[..., 1:]
    dataset = _as_trained(tf.data.Dataset.from_tensor_slices(
        ({"token_ids": inputs, "padding_mask": np.ones(inputs.shape, bool)}, targets)))

    def run(num_steps):
        model.fit(dataset, steps_per_epoch=num_steps, epochs=1, verbose=0)

    return run


def _peer_optimizer(train):
    """Keras AdamW with the run's betas, decay and global-norm clip (constant rate: the same
    arithmetic per step as our schedule)."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=train.learning_rate, weight_decay=train.weight_decay,
        beta_1=train.beta_1, beta_2=train.beta_2,
        global_clipnorm=train.gradient_clip_norm or None)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "embeddings"])
    return optimizer


def keras_hub_gpt_fit(config, vocabulary_size, jit_compile, seed=0):
    """KerasHub's `GPT2Backbone` + tied head (`GPT2CausalLM`) of `config`'s shape, trained with
    `fit` on the same synthetic batches: `run(num_steps)`, or None without keras-hub."""
    try:
        import keras_hub
    except ImportError:
        return None
    model_config, train = config.model, config.train
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size, num_layers=model_config.num_layers,
        num_heads=model_config.num_heads, hidden_dim=model_config.hidden_dim,
        intermediate_dim=model_config.intermediate_dim or 4 * model_config.hidden_dim,
        dropout=model_config.dropout, max_sequence_length=model_config.sequence_length)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(optimizer=_peer_optimizer(train),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    return _fit_runner(model, synthetic_token_ids(
        train.batch_size, model_config.sequence_length, vocabulary_size, seed))


def keras_lstm_fit(config, vocabulary_size, jit_compile, seed=0):
    """A plain Keras Embedding -> LSTM x num_layers -> Dense of `config`'s LSTM shape, trained
    with `fit` on the same synthetic batches: `run(num_steps)`."""
    model_config, train = config.model, config.train
    keras.utils.set_random_seed(seed)
    token_ids = keras.Input((model_config.sequence_length,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((model_config.sequence_length,), dtype="bool", name="padding_mask")
    x = keras.layers.Embedding(vocabulary_size, model_config.hidden_dim)(token_ids)
    for _ in range(model_config.num_layers):
        x = keras.layers.LSTM(model_config.hidden_dim, return_sequences=True)(x)
    logits = keras.layers.Dense(vocabulary_size)(x)
    model = keras.Model({"token_ids": token_ids, "padding_mask": padding_mask}, logits)
    model.compile(optimizer=_peer_optimizer(train),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    return _fit_runner(model, synthetic_token_ids(
        train.batch_size, model_config.sequence_length, vocabulary_size, seed))


def gpt_matmul_shapes(model_config, vocabulary_size, batch_size):
    """The matmuls of one GPT training step as `(count, batch, m, k, n)`: `count` matmuls of
    `batch` x `(m, k) @ (k, n)`.

    Each forward product `C = A @ B`, `(m, k) @ (k, n)`, is followed in the backward pass by
    `dA = dC @ B^T`, `(m, n) @ (n, k)`, and `dB = A^T @ dC`, `(k, m) @ (m, n)` (every operand
    needs its gradient: weights, and activations down to the embedding). The backward products
    contract other dimensions (the tokens, for the weight gradients), and kernels run them at
    other speeds, so they are timed too: together these are the step's model FLOPs (6N + 12LdT
    per token, the 6 = 3 products x 2 FLOPs per multiply-add).
    """
    tokens, d, t = batch_size * model_config.sequence_length, model_config.hidden_dim, \
        model_config.sequence_length
    ff = model_config.intermediate_dim or 4 * d
    heads = batch_size * model_config.num_heads
    head_dim = d // model_config.num_heads
    layers = model_config.num_layers
    forward = [
        (layers, 1, tokens, d, 3 * d),  # fused query/key/value
        (layers, heads, t, head_dim, t),  # Q K^T
        (layers, heads, t, t, head_dim),  # attention x V
        (layers, 1, tokens, d, d),  # output projection
        (layers, 1, tokens, d, ff),  # MLP up
        (layers, 1, tokens, ff, d),  # MLP down
        (1, 1, tokens, d, vocabulary_size),  # tied head
    ]
    backward = []
    for count, batch, m, k, n in forward:
        backward += [(count, batch, m, n, k),  # gradient of the first operand
                     (count, batch, k, m, n)]  # gradient of the second operand
    return forward + backward


def matmul_runner(shapes):
    """`run(num_steps)` that runs the matmuls of `shapes` (`(count, batch, m, k, n)`, as
    `gpt_matmul_shapes` gives: `count` independent matmuls of each, in one compiled call) once
    per step, and the FLOPs of one step.

    Timed among the contenders of `alternate_rounds`, it gives the matmul FLOP/s of the same
    moments as the model's figures: on a shared machine a peak measured at another time is not
    comparable.
    """
    pairs, step_flops = [], 0.0
    for count, batch, m, k, n in shapes:
        pairs += [(tf.random.stateless_normal((batch, m, k), seed=(1, i)),
                   tf.random.stateless_normal((batch, k, n), seed=(2, i))) for i in range(count)]
        step_flops += count * 2.0 * batch * m * k * n
    multiply = tf.function(lambda pairs: tf.add_n([tf.reduce_sum(tf.matmul(a, b))
                                                   for a, b in pairs]))

    def run(num_steps):
        for _ in range(num_steps):
            value = multiply(pairs)
        value.numpy()

    return run, step_flops


def square_matmul_runner(size=2048):
    """`matmul_runner` of one `(size, size) @ (size, size)` matmul (2 size^3 FLOPs) per step:
    the large-matmul peak, timed among the contenders."""
    return matmul_runner([(1, 1, size, size, size)])


def flops_per_step(config, num_parameters):
    """Model training FLOPs of one global batch (6N + 12LdT per token, `keras_llm.training.flops`)."""
    tokens = config.train.batch_size * config.model.sequence_length
    return tokens * flops.language_model_flops_per_token(config.model, num_parameters)


def with_train(config, **overrides):
    """`config` with `config.train` fields replaced."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **overrides))


def with_model(config, **overrides):
    """`config` with `config.model` fields replaced."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **overrides))


def compare_with_one_device(config, vocabulary_size, steps, repeats):
    """Seconds per step of `config`'s strategy and of one device, alternating in this process.

    Separate processes timed one after the other measure the machine's load as much as the
    step (on a shared 2-core machine the ratio of two such runs moved from 0.26x to 0.9x); here
    both steps are built in one process (the CPU split into logical devices as `config` asks)
    and timed in alternating rounds (`alternate_rounds`), so both see the same load.

    Args:
        config: a `LanguageModelConfig` whose strategy has several replicas (e.g. "mirrored"
            with `num_cpu_devices=2`).
        vocabulary_size: int.
        steps, repeats: as `alternate_rounds`'s.

    Returns:
        dict: "strategy" and "one_device", median seconds per step; "speedup", the strategy's
        speed over one device's round by round (`paired_speedup`); "num_replicas";
        "parameters".

    Raises:
        ValueError: `config`'s strategy has a single replica (checked before any model is built).
    """
    train = config.train
    strategy = make_strategy(train.strategy, train.num_cpu_devices,
                             train.cluster_timeout_seconds, train.cluster_resolver)
    if strategy.num_replicas_in_sync < 2:
        raise ValueError(
            f"comparing with one device needs a strategy with several replicas; "
            f"--strategy={config.train.strategy} --num_cpu_devices="
            f"{config.train.num_cpu_devices} gives {type(strategy).__name__} with 1 (on a CPU, "
            "add e.g. --strategy=mirrored --num_cpu_devices=2).")
    run, model, _ = keras_llm_step(config, vocabulary_size, strategy, seed=train.seed)
    first_device = strategy.extended.worker_devices[0]
    single, _, _ = keras_llm_step(config, vocabulary_size, seed=train.seed,
                                  strategy=tf.distribute.OneDeviceStrategy(first_device))
    rounds = alternate_rounds({"strategy": run, "one_device": single}, steps, repeats)
    return {"strategy": statistics.median(rounds["strategy"]),
            "one_device": statistics.median(rounds["one_device"]),
            "speedup": paired_speedup(rounds, "strategy", ["one_device"]),
            "num_replicas": strategy.num_replicas_in_sync,
            "parameters": int(model.count_params())}


def benchmark_train_step(config, vocabulary_size, steps, warmup_steps):
    """Runs `warmup_steps` untimed twice, then `steps` timed training steps of `config`.

    Returns:
        dict: "ms_per_step" (milliseconds), "tokens_per_second", "page_faults_per_step" (the
        process's minor page faults, see `keras_llm.training.precision` on malloc's top pad),
        "parameters", "num_replicas", "strategy" (class name).
    """
    run, model, strategy = keras_llm_step(config, vocabulary_size, seed=config.train.seed)
    run(warmup_steps)
    run(warmup_steps)  # Under MirroredStrategy the second call still compiles (`alternate_rounds`).
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    run(steps)
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    tokens = config.train.batch_size * config.model.sequence_length
    return {
        "ms_per_step": 1000 * seconds / steps,
        "page_faults_per_step": faults / steps,
        "tokens_per_second": steps * tokens / seconds,
        "parameters": int(model.count_params()),
        "num_replicas": strategy.num_replicas_in_sync,
        "strategy": type(strategy).__name__,
    }
