"""Model FLOPs and the hardware's measured float32 matmul peak, for model FLOPs utilization.

Model FLOPs utilization (MFU, PaLM, Chowdhery et al. 2022, appendix B) is the FLOP/s the model's
own arithmetic needs at the measured speed, over the hardware's peak; recomputation and other
overheads do not count as useful work. The estimate per token is nanoGPT's `estimate_mfu`:

    6 * N + 12 * L * d * T   FLOPs per token (forward + backward)

with N the parameters without the position embedding table (a lookup, not a matmul; nanoGPT's
`get_num_params(non_embedding=True)`), L layers, d the width and T the context: 6N for the
matmuls with the weights (2N forward, 4N backward), 12LdT for attention's QK^T and AV.
The peak is not a datasheet figure but measured here: the best of large square `tf.matmul`s,
which is what the machine's float32 matmul kernels reach.
"""

import functools
import time

import tensorflow as tf


def transformer_flops_per_token(num_parameters, num_layers, hidden_dim, sequence_length):
    """6N + 12LdT training FLOPs per token (PaLM appendix B; nanoGPT's `estimate_mfu`).

    Args:
        num_parameters: int, N: parameters without the position embedding table.
        num_layers, hidden_dim, sequence_length: L, d and T.

    Returns:
        int, FLOPs per token for the forward and backward pass. E.g. N = 800,000, L = 4,
        d = 128, T = 64: 4,800,000 + 393,216 = 5,193,216.
    """
    return 6 * num_parameters + 12 * num_layers * hidden_dim * sequence_length


def language_model_flops_per_token(model_config, num_parameters):
    """Training FLOPs per token of a language model built from `model_config`.

    GPT: `transformer_flops_per_token` with N = `num_parameters` minus the position table
    (sequence_length x hidden_dim). LSTM: 6N over all parameters (every weight takes part in
    one multiply-add per token; the input embedding, a lookup, is counted too: an overestimate
    by at most 6 x its size).

    Args:
        model_config: `keras_llm.config.ModelConfig`.
        num_parameters: int, `model.count_params()`.
    """
    if model_config.architecture == "gpt":
        positions = model_config.sequence_length * model_config.hidden_dim
        return transformer_flops_per_token(num_parameters - positions, model_config.num_layers,
                                           model_config.hidden_dim, model_config.sequence_length)
    return 6 * num_parameters


def matmul_flops_per_second(m, k, n, repeats=5, device=None, dtype=tf.float32):
    """The best FLOP/s of a compiled `(m, k) @ (k, n)` matmul over `repeats` runs (2mkn FLOPs).

    Args:
        m, k, n: ints, the shapes.
        repeats: int >= 1, timed runs after one untimed (tracing) run.
        device: optional device name, e.g. "/gpu:0"; None: TensorFlow's placement.
        dtype: the operands' dtype.

    Returns:
        float, FLOP/s of the fastest run.
    """
    with tf.device(device):
        a = tf.random.stateless_normal((m, k), seed=(1, 2), dtype=dtype)
        b = tf.random.stateless_normal((k, n), seed=(3, 4), dtype=dtype)
    multiply = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))  # One scalar back.
    multiply(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        multiply(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best


@functools.cache
def measure_matmul_peak(sizes=(1024, 2048), repeats=5, device=None):
    """The float32 matmul peak in FLOP/s: the best of square `tf.matmul`s of these sizes.

    About a second on a 2-core CPU, so it is measured once per process and arguments (cached):
    a process that trains several runs (a notebook, the test suite) pays it once. A shared
    machine gives a lower figure (and so a higher utilization); measure the peak and the model
    in the same process. `experiments.benchmark` times its own peaks alongside the steps.

    Args:
        sizes: tuple of ints, the square sizes tried (hashable: the cache's key).
        repeats: int >= 1, timed runs of each size.
        device: optional device name; None: TensorFlow's placement.

    Returns:
        float, FLOP/s of the fastest size.
    """
    return max(matmul_flops_per_second(size, size, size, repeats, device) for size in sizes)
