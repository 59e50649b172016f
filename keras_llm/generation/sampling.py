"""Next-token sampling (greedy, temperature, top-k, nucleus) and the autoregressive generation loop.

One implementation serves interactive sampling, evaluation-time text samples and the exported
`generate` signature: everything is TensorFlow ops with stateless random numbers, so it traces
into a `tf.function` and gives the same tokens for the same seed on every run.

Worked example of the filters, for one row of logits `[2.0, 1.0, 0.0, -1.0]`
(probabilities ~ `[0.64, 0.24, 0.09, 0.03]`):

    top_k=2      keeps tokens {0, 1}       -> logits [2.0, 1.0, -inf, -inf]
    top_p=0.8    keeps tokens {0, 1}       (0.64 < 0.8, 0.64 + 0.24 >= 0.8)
    top_p=0.5    keeps token  {0}          (the first token alone already covers 0.5)
    temperature=0 returns argmax = 0 without drawing a random number.
"""

import numbers

import tensorflow as tf

from keras_llm.data.features import model_inputs


def _check_sampling_args(temperature, top_k, top_p):
    """Validates the Python-number forms of the sampling arguments (tensors are not checked)."""
    if isinstance(temperature, numbers.Real) and temperature < 0:
        raise ValueError(
            f"temperature must be >= 0 (0 means greedy); received temperature={temperature!r}."
        )
    if isinstance(top_k, numbers.Integral) and top_k < 1:
        raise ValueError(
            f"top_k must be an int >= 1, or None for no top-k filter; received top_k={top_k!r}."
        )
    if isinstance(top_p, numbers.Real) and not 0.0 < top_p <= 1.0:
        raise ValueError(
            f"top_p must be in (0, 1], or None for no nucleus filter; received top_p={top_p!r}."
        )


def _as_seed_pair(seed):
    """Returns a stateless-RNG seed: int32 `(2,)`. An int `s` becomes `[s, 0]`."""
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros_like(seed)])
    return tf.cast(seed, tf.int32)


def _top_k_filter(logits, top_k):
    """Sets every logit below the k-th largest of its row to -inf.

    Ties with the k-th largest are kept (as in nanoGPT). `top_k` larger than the vocabulary
    keeps everything.

    Args:
        logits: float32 `(batch, vocabulary_size)`.
        top_k: int or int scalar tensor >= 1.

    Returns:
        float32 `(batch, vocabulary_size)`.
    """
    vocabulary_size = tf.shape(logits)[-1]
    k = tf.minimum(tf.cast(top_k, tf.int32), vocabulary_size)
    kth_largest = tf.math.top_k(logits, k=k).values[:, -1:]  # (batch, 1)
    return tf.where(logits < kth_largest, tf.constant(-float("inf"), logits.dtype), logits)


def _top_p_filter(logits, top_p):
    """Nucleus filter (Holtzman et al. 2020): keeps the smallest set of most likely tokens whose
    total probability reaches `top_p`, and sets the other logits to -inf.

    The most likely token is always kept, so a tiny `top_p` reduces to greedy decoding.

    Args:
        logits: float32 `(batch, vocabulary_size)`.
        top_p: float or float scalar tensor in (0, 1].

    Returns:
        float32 `(batch, vocabulary_size)`.
    """
    sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")  # (batch, vocabulary_size)
    sorted_probs = tf.nn.softmax(sorted_logits, axis=-1)
    # Probability mass of the tokens ranked strictly above each token.
    mass_above = tf.cumsum(sorted_probs, axis=-1, exclusive=True)  # (batch, vocabulary_size)
    top_p = tf.cast(top_p, logits.dtype)
    # top_p >= 1 keeps everything explicitly: rounding can push mass_above to 1.0 for the tail.
    keep_sorted = tf.logical_or(mass_above < top_p, top_p >= 1.0)  # (batch, vocabulary_size)
    # The smallest kept logit of each row; at least the first (largest) logit is always kept.
    kept_logits = tf.where(keep_sorted, sorted_logits, tf.constant(float("inf"), logits.dtype))
    smallest_kept = tf.reduce_min(kept_logits, axis=-1, keepdims=True)  # (batch, 1)
    threshold = tf.minimum(smallest_kept, sorted_logits[:, :1])  # (batch, 1)
    return tf.where(logits < threshold, tf.constant(-float("inf"), logits.dtype), logits)


def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, seed=0):
    """Draws one token id per row from `softmax(logits / temperature)`, top-k and top-p filtered.

    The filters apply in the order temperature, top-k, nucleus (the nucleus is computed on the
    temperature-scaled, top-k-filtered distribution, as in Hugging Face's samplers).

    Args:
        logits: float tensor `(batch, vocabulary_size)`, unnormalized scores of the next token.
        temperature: float >= 0 (or float scalar tensor); 0 means greedy (argmax, no randomness).
        top_k: int >= 1 (or int scalar tensor) or `None`; keep only the `top_k` largest logits.
        top_p: float in (0, 1] (or float scalar tensor) or `None`; keep the nucleus of mass `top_p`.
        seed: int, or int tensor `(2,)`, the seed of `tf.random.stateless_categorical`; the same
            seed and logits always give the same tokens.

    Returns:
        int32 tensor `(batch,)`, the sampled token ids.

    Raises:
        ValueError: if a Python-number argument is out of range (tensor arguments are used as
            given).
    """
    _check_sampling_args(temperature, top_k, top_p)
    logits = tf.cast(logits, tf.float32)
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)  # (batch,)
    if isinstance(temperature, numbers.Real) and temperature == 0:
        return greedy

    temperature = tf.cast(temperature, tf.float32)
    is_greedy = tf.equal(temperature, 0.0)
    # With a tensor temperature both branches are computed; divide by 1 where the result is unused.
    logits = logits / tf.where(is_greedy, 1.0, temperature)
    if top_k is not None:
        logits = _top_k_filter(logits, top_k)
    if top_p is not None:
        logits = _top_p_filter(logits, top_p)
    sampled = tf.random.stateless_categorical(
        logits, num_samples=1, seed=_as_seed_pair(seed), dtype=tf.int32
    )  # (batch, 1)
    return tf.where(is_greedy, greedy, sampled[:, 0])  # (batch,)


def generate(
    model,
    prompt_ids,
    max_new_tokens,
    sequence_length,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=0,
):
    """Extends each prompt by `max_new_tokens` sampled tokens, one model call per token.

    The loop is nanoGPT's `generate`: crop the context to its last `sequence_length` tokens,
    run the model, take the logits at the last position, sample, append. Tokens are written
    into a fixed-size buffer inside a `tf.while_loop`, so the function runs eagerly and inside a
    `tf.function` (e.g. a SavedModel signature). There is no key/value cache: each step re-runs
    the model on the whole (cropped) context.

    Step `i` draws with the seed `stateless_fold_in(seed, i)`, so a fixed `seed` reproduces the
    same continuation, and different steps use independent random numbers.

    Args:
        model: a callable `model(inputs, training=False)` mapping the input dict of int32
            token ids `(batch, seq_len)`, `seq_len <= sequence_length` (`keras_llm.data.features`)
            to logits `(batch, seq_len, vocabulary_size)` where
            position `t` scores token `t + 1` (`GPTLanguageModel`, `LSTMLanguageModel`).
        prompt_ids: int tensor `(batch, prompt_len)`, `prompt_len >= 1`; may be longer than
            `sequence_length` (only its last `sequence_length` tokens condition the first step).
        max_new_tokens: int >= 0, or an int scalar tensor, number of tokens to append.
        sequence_length: int >= 1, the model's longest context.
        temperature: see `sample_next_token`.
        top_k: see `sample_next_token`.
        top_p: see `sample_next_token`.
        seed: int or int tensor `(2,)`.

    Returns:
        int32 tensor `(batch, prompt_len + max_new_tokens)`: the prompt followed by the new tokens.

    Raises:
        ValueError: if a Python-number argument is out of range.
    """
    _check_sampling_args(temperature, top_k, top_p)
    if isinstance(max_new_tokens, numbers.Integral) and max_new_tokens < 0:
        raise ValueError(
            f"max_new_tokens must be >= 0; received max_new_tokens={max_new_tokens!r}."
        )
    if not isinstance(sequence_length, numbers.Integral) or sequence_length < 1:
        raise ValueError(
            "sequence_length must be a positive int; "
            f"received sequence_length={sequence_length!r}."
        )

    prompt_ids = tf.cast(tf.convert_to_tensor(prompt_ids), tf.int32)  # (batch, prompt_len)
    batch_size = tf.shape(prompt_ids)[0]
    prompt_len = tf.shape(prompt_ids)[1]
    total_len = prompt_len + tf.cast(max_new_tokens, tf.int32)
    seed = _as_seed_pair(seed)

    # Create the model's variables before the loop: a while_loop body cannot create variables.
    if not getattr(model, "built", True):
        model(model_inputs(prompt_ids[:, -sequence_length:]), training=False)

    # The prompt followed by zeros that the loop overwrites one column at a time.
    buffer = tf.concat(
        [prompt_ids, tf.zeros([batch_size, total_len - prompt_len], tf.int32)], axis=1
    )  # (batch, total_len)
    columns = tf.range(total_len)[None, :]  # (1, total_len)

    def body(position, buffer):
        # `position` is the column to fill; the context is the (at most) sequence_length before it.
        start = tf.maximum(position - sequence_length, 0)
        context = buffer[:, start:position]  # (batch, min(position, sequence_length))
        logits = model(model_inputs(context), training=False)[:, -1, :]  # (batch, vocabulary_size)
        step_seed = tf.random.experimental.stateless_fold_in(seed, position)
        next_token = sample_next_token(logits, temperature, top_k, top_p, seed=step_seed)
        buffer = tf.where(columns == position, next_token[:, None], buffer)  # (batch, total_len)
        return position + 1, buffer

    _, buffer = tf.while_loop(
        lambda position, buffer: position < total_len,
        body,
        (prompt_len, buffer),
    )
    return buffer
