"""Next-token sampling: greedy, temperature, top-k and nucleus (the decoding loop: `decoding`).

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



def check_sampling_args(temperature, top_k, top_p):
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


def seed_pair(seed):
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


# How far below `top_p` the mass above a token must be for the token to join the nucleus.
# Probabilities come from float32 logits (relative error ~6e-8 each), so a mass that is top_p
# exactly, e.g. 0.5 + 0.3 for top_p=0.8, can sum to a hair under it; without the margin that
# rounding would widen the nucleus by one token.
NUCLEUS_TOLERANCE = 1e-6


def _top_p_filter(logits, top_p):
    """Nucleus filter (Holtzman et al. 2020): keeps exactly the smallest set of most likely
    tokens whose total probability reaches `top_p`, and sets the other logits to -inf.

    Tokens are ranked by a stable sort, so among equal logits the lower id ranks first and ties
    never widen the set; the probabilities are summed in float64 with `NUCLEUS_TOLERANCE`
    against float32 rounding. The most likely token is always kept, so a tiny `top_p` reduces
    to greedy decoding; `top_p >= 1` keeps everything.

    Args:
        logits: float32 `(batch, vocabulary_size)`.
        top_p: float or float scalar tensor in (0, 1].

    Returns:
        float32 `(batch, vocabulary_size)`.
    """
    order = tf.argsort(logits, axis=-1, direction="DESCENDING", stable=True)  # (batch, vocab)
    sorted_logits = tf.gather(logits, order, batch_dims=1)  # (batch, vocabulary_size)
    sorted_probs = tf.nn.softmax(tf.cast(sorted_logits, tf.float64), axis=-1)
    # Probability mass of the tokens ranked strictly above each token.
    mass_above = tf.cumsum(sorted_probs, axis=-1, exclusive=True)  # (batch, vocabulary_size)
    top_p = tf.cast(top_p, tf.float64)
    rank = tf.range(tf.shape(logits)[-1])[None, :]  # (1, vocabulary_size)
    keep_sorted = (mass_above < top_p - NUCLEUS_TOLERANCE) | (top_p >= 1.0) | (rank == 0)
    # Back to vocabulary order: position j of the inverse permutation is token j's rank.
    keep = tf.gather(keep_sorted, tf.argsort(order, axis=-1, stable=True), batch_dims=1)
    return tf.where(keep, logits, tf.constant(-float("inf"), logits.dtype))


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
    check_sampling_args(temperature, top_k, top_p)
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
        logits, num_samples=1, seed=seed_pair(seed), dtype=tf.int32
    )  # (batch, 1)
    return tf.where(is_greedy, greedy, sampled[:, 0])  # (batch,)
