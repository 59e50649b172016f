"""Autoregressive decoding in the graph: a key/value-cached loop and the full-recomputation one.

One implementation serves `experiments.sample`, evaluation-time samples and exported `generate`
signatures; it uses only core TensorFlow ops that run without XLA (stock TF Serving).

Worked example, `max_context=4`, one prompt `[5, 6, 7]`, 3 new tokens `a, b, c`:

    prefill [5, 6, 7] once (cache slots 0-2)          -> logits of position 3 -> a
    decode_step a at position 3 (cache slot 3)        -> logits of position 4 -> b
    the context is full: recompute [6, 7, a, b]       -> c   (nanoGPT's crop to the last 4)

So while every row fits the model's context each new token costs one position's work, and past
it each step re-runs the last `max_context` tokens, exactly as nanoGPT's `generate` does (learned
absolute positions shift when the window slides, so cached keys cannot be reused). An LSTM has no
context limit: its state carries the whole history.

Prompts of different lengths share a batch right-padded: row `b` holds its prompt in
`[0, prompt_lengths[b])` and writes its new tokens after it, at its own positions.
"""

import numbers

import tensorflow as tf

from keras_llm.data.features import model_inputs
from keras_llm.generation.sampling import check_sampling_args
from keras_llm.generation.sampling import sample_next_token
from keras_llm.generation.sampling import seed_pair


def _write(buffer, positions, tokens):
    """Writes `tokens[b]` at column `positions[b]` of `buffer` (b, total); a one-hot `tf.where`."""
    columns = tf.range(tf.shape(buffer)[1])[None, :]  # (1, total)
    return tf.where(columns == positions[:, None], tokens[:, None], buffer)


def _read(buffer, positions):
    """`buffer[b, positions[b]]` as `(batch, 1)`."""
    return tf.gather(buffer, positions[:, None], batch_dims=1)


def next_token_logits(model, buffer, ends, max_context):
    """Next-token logits of each row, recomputed from its last `max_context` tokens.

    Args:
        buffer: int32 `(batch, total)`; row `b` holds `ends[b]` tokens.
        ends: int32 `(batch,)`, tokens per row (>= 1).
        max_context: int or None (no limit).

    Returns:
        float32 `(batch, vocabulary_size)`.
    """
    window_length = tf.reduce_max(ends)
    if max_context is not None:
        window_length = tf.minimum(window_length, max_context)
    starts = tf.maximum(ends - window_length, 0)  # (batch,)
    columns = starts[:, None] + tf.range(window_length)[None, :]  # (batch, window)
    real = columns < ends[:, None]  # (batch, window): right padding for shorter rows
    columns = tf.minimum(columns, tf.shape(buffer)[1] - 1)
    window = tf.where(real, tf.gather(buffer, columns, batch_dims=1), 0)  # (batch, window)
    logits = model(model_inputs(window, real), training=False)  # (batch, window, vocabulary)
    last = ends - starts - 1  # (batch,)
    return tf.gather(logits, last[:, None], batch_dims=1)[:, 0, :]  # (batch, vocabulary_size)


def generate(model, prompt_ids, max_new_tokens, prompt_lengths=None, temperature=1.0, top_k=None,
             top_p=None, seed=0, use_cache=None, max_context=None, first_step=0):
    """Extends each prompt by `max_new_tokens` sampled tokens.

    Args:
        model: a keras_llm language model (`GPTLanguageModel`, `LSTMLanguageModel`): called on
            the input dict for full recomputation; `prefill` / `decode_step` / `max_context`
            for cached decoding.
        prompt_ids: int tensor `(batch, prompt_len)`, right-padded when rows differ in length.
        max_new_tokens: int >= 0 or int32 scalar tensor.
        prompt_lengths: int `(batch,)`, tokens of each prompt (>= 1); `None`: all `prompt_len`.
            Tokens beyond a row's length are ignored.
        temperature, top_k, top_p: see `sample_next_token`.
        seed: int or int32 `(2,)`; step `i` samples with `stateless_fold_in(seed, i)`, so the
            same seed gives the same tokens on every run.
        use_cache: bool or None (cache when the model has `prefill`); False recomputes the
            context at every step (the reference the cache is tested against, and the baseline
            it is benchmarked against).
        max_context: int or None; default `model.max_context` (`None`: no limit).
        first_step: int or int32 scalar; the first new token is step `first_step` of the seed's
            random stream. A continuation of `n` tokens already generated from the same seed
            passes `n`, so generating in chunks draws what one call would (streaming).

    Returns:
        int32 `(batch, prompt_len + max_new_tokens)`: row `b` is its prompt, then its new tokens
        from column `prompt_lengths[b]`, then zeros.

    Raises:
        ValueError: a Python-number argument out of range.
    """
    check_sampling_args(temperature, top_k, top_p)
    if isinstance(max_new_tokens, numbers.Integral) and max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0; received max_new_tokens={max_new_tokens!r}.")
    if max_context is None:
        max_context = getattr(model, "max_context", None)
    prompt_ids = tf.cast(tf.convert_to_tensor(prompt_ids), tf.int32)  # (batch, prompt_len)
    batch_size, prompt_len = tf.shape(prompt_ids)[0], tf.shape(prompt_ids)[1]
    if prompt_lengths is None:
        prompt_lengths = tf.fill([batch_size], prompt_len)
    prompt_lengths = tf.cast(prompt_lengths, tf.int32)
    max_new_tokens = tf.cast(max_new_tokens, tf.int32)
    seed = seed_pair(seed)
    real = tf.range(prompt_len)[None, :] < prompt_lengths[:, None]  # (batch, prompt_len)
    buffer = tf.concat([tf.where(real, prompt_ids, 0),
                        tf.zeros([batch_size, max_new_tokens], tf.int32)], axis=1)

    first_step = tf.cast(first_step, tf.int32)

    def sample(logits, step):
        return sample_next_token(
            logits, temperature, top_k, top_p,
            seed=tf.random.experimental.stateless_fold_in(seed, first_step + step))

    step, ends = tf.constant(0), prompt_lengths
    if use_cache is None:
        use_cache = hasattr(model, "prefill")
    if use_cache:
        step, buffer, ends = _cached_steps(model, buffer, ends, real, max_new_tokens, max_context,
                                           sample)

    def recompute(step, buffer, ends):
        token = sample(next_token_logits(model, buffer, ends, max_context), step)
        return step + 1, _write(buffer, ends, token), ends + 1

    _, buffer, _ = tf.while_loop(lambda step, buffer, ends: step < max_new_tokens, recompute,
                                 (step, buffer, ends))
    return buffer


def _cached_steps(model, buffer, ends, real, max_new_tokens, max_context, sample):
    """Prefill, then one-token steps while every row fits `max_context`; returns the loop state."""
    prompt_len = tf.shape(real)[1]
    total = tf.shape(buffer)[1]
    if max_context is None:
        cache_length, fits = total, tf.constant(True)
    else:
        cache_length = tf.minimum(total, max_context)
        fits = tf.reduce_max(ends) <= max_context
    # Prompts longer than the context are left to full recomputation (`fits` is False); the
    # prefill then runs on a crop that keeps the shapes valid and its result is unused.
    kept = tf.minimum(prompt_len, cache_length)
    logits, cache = model.prefill(buffer[:, :kept], real[:, :kept], cache_length)
    first = tf.gather(logits, tf.minimum(ends - 1, kept - 1)[:, None], batch_dims=1)[:, 0, :]
    go = tf.logical_and(fits, max_new_tokens > 0)
    buffer = tf.where(go, _write(buffer, ends, sample(first, 0)), buffer)
    step = tf.where(go, 1, 0)
    ends = tf.where(go, ends + 1, ends)

    def in_context(step, buffer, ends, cache):
        within = tf.constant(True) if max_context is None else tf.reduce_max(ends) <= max_context
        return tf.logical_and(tf.logical_and(go, step < max_new_tokens), within)

    def decode(step, buffer, ends, cache):
        logits, cache = model.decode_step(_read(buffer, ends - 1), ends - 1, cache)
        return step + 1, _write(buffer, ends, sample(logits, step)), ends + 1, cache

    step, buffer, ends, _ = tf.while_loop(in_context, decode, (step, buffer, ends, cache))
    return step, buffer, ends


def truncate_at_end_token(new_tokens, end_token_id):
    """Stops each row at its first `end_token_id` (kept): later tokens become 0 (PAD).

    Args:
        new_tokens: int32 `(batch, max_new_tokens)`, the generated tokens.
        end_token_id: int or int32 scalar, the vocabulary's end-of-text id.

    Returns:
        `(tokens, num_generated)`: int32 `(batch, max_new_tokens)` and int32 `(batch,)`, the
        tokens up to and including the end token (all of them for a row without one).
    """
    is_end = tf.cast(tf.equal(new_tokens, end_token_id), tf.int32)
    # 1 up to and including the first end token, then 0.
    before_end = tf.cast(tf.cumsum(is_end, axis=1, exclusive=True) == 0, tf.int32)
    return new_tokens * before_end, tf.reduce_sum(before_end, axis=1)
