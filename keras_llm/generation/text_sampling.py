"""Text in, text out: `sample_text` tokenizes a prompt, runs `generate` compiled, detokenizes.

`generate` (`decoding.py`) works on token ids; this is the text-level layer that
`experiments.sample` and the evaluation-time TensorBoard samples of a language-model run share.
With a character tokenizer, `sample_text(model, tokenizer, "ROMEO:", max_new_tokens=3, ...)`
returns "ROMEO:" followed by 3 generated characters.
"""

import weakref

import tensorflow as tf

from keras_llm.generation.decoding import generate

# Fixed prompts whose continuations a language-model run logs to TensorBoard at every
# evaluation: a newline (any corpus), a Tiny Shakespeare speaker, a CJK character.
DEFAULT_SAMPLE_PROMPTS = ("\n", "ROMEO:", "春")

# Compiled decoding loops per model (weak keys: they go with their model), then per sampling
# settings.
_COMPILED_GENERATE = weakref.WeakKeyDictionary()
_COMPILED_DETOKENIZE = weakref.WeakKeyDictionary()  # Per tokenizer.


def covers(tokenizer, prompt):
    """Whether `prompt` tokenizes to at least one token and no `[UNK]` under `tokenizer`."""
    ids = tokenizer.tokenize(tf.constant(prompt)).numpy()
    return len(ids) > 0 and tokenizer.unk_id not in ids


def sample_prompts(tokenizer):
    """The `DEFAULT_SAMPLE_PROMPTS` that `tokenizer` covers (at least ["\\n"])."""
    return [prompt for prompt in DEFAULT_SAMPLE_PROMPTS if covers(tokenizer, prompt)] or ["\n"]


def sample_text(model, tokenizer, prompt, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                seed=0):
    """Generates a continuation of `prompt` and returns prompt + continuation as text.

    The decoding loop runs as one compiled `tf.function` (traced once per model and sampling
    settings), not token by token in eager mode.

    Args:
        model: a keras_llm language model (see `decoding.generate`); decoding is cached when it
            has `prefill` / `decode_step`, and crops to its `max_context`.
        tokenizer: the run's tokenizer (`tokenize` / `detokenize`).
        prompt: str, at least one token long.
        max_new_tokens: int >= 0, tokens to generate.
        temperature, top_k, top_p: the sampling settings of `sampling.sample_next_token`.
        seed: int; the same seed gives the same text.

    Returns:
        str, the prompt followed by the generated text.

    Raises:
        ValueError: `prompt` has no tokens (naming --prompt), or bad sampling settings.
    """
    prompt_ids = _prompt_ids(tokenizer, prompt)  # (1, prompt_len)
    generate_ids = _compiled_generate(model, max_new_tokens, temperature, top_k, top_p)
    output = generate_ids(prompt_ids, tf.constant([seed, 0], tf.int32),
                          tf.constant(0))  # (1, prompt_len + new)
    return tokenizer.detokenize(output)[0].numpy().decode("utf-8")


def stream_text(model, tokenizer, prompt, max_new_tokens, temperature=1.0, top_k=None,
                top_p=None, seed=0, chunk_tokens=32):
    """`sample_text` in pieces, as they are generated: yields the prompt, then new text.

    Each piece is one compiled call of `generate` for `chunk_tokens` tokens that continues the
    text so far (a prefill of the context, then the cached steps) at its place in the seed's
    random stream (`first_step`), so the pieces join into the text `sample_text` returns for
    the same seed, while the user reads the first ones.

    Args:
        as `sample_text`; chunk_tokens: int >= 1, tokens per compiled call (a larger chunk
            costs fewer prefills, a smaller one shows text sooner).

    Yields:
        str pieces; their concatenation is prompt + continuation.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1; received {chunk_tokens!r}.")
    ids = _prompt_ids(tokenizer, prompt)  # (1, prompt_len)
    seed_pair = tf.constant([seed, 0], tf.int32)
    detokenize = _compiled_detokenize(tokenizer)  # Eager, its ops cost ~10x more per chunk.
    shown = detokenize(ids)[0].numpy().decode("utf-8")
    yield shown
    done = 0
    while done < max_new_tokens:
        chunk = min(chunk_tokens, max_new_tokens - done)
        ids = _compiled_generate(model, chunk, temperature, top_k, top_p)(
            ids, seed_pair, tf.constant(done))  # (1, length so far + chunk)
        done += chunk
        text = detokenize(ids)[0].numpy().decode("utf-8")
        # The text so far stays a prefix of the longer text (characters; word pieces joined
        # with spaces or glued by "##"); were it ever not, that piece waits for a later one.
        if text.startswith(shown):
            yield text[len(shown):]
            shown = text


def unknown_characters(tokenizer, text):
    """The characters of `text` (not whitespace) that `tokenizer` reads as `[UNK]`, in order."""
    seen = []
    for character in dict.fromkeys(text):
        if character.isspace():
            continue
        ids = tokenizer.tokenize(tf.constant(character)).numpy()
        if tokenizer.unk_id in ids:
            seen.append(character)
    return seen


def check_prompt(tokenizer, prompt):
    """Raises `ValueError` (naming --prompt) if `prompt` has no tokens, e.g. "" or only spaces
    for a WordPiece tokenizer: there is nothing to continue."""
    _prompt_ids(tokenizer, prompt)


def _prompt_ids(tokenizer, prompt):
    prompt_ids = tokenizer.tokenize(tf.constant([prompt])).to_tensor()  # (1, prompt_len)
    if prompt_ids.shape[1] == 0:
        raise ValueError(f"--prompt={prompt!r} has no tokens; give at least one character.")
    return tf.cast(prompt_ids, tf.int32)


def _compiled_detokenize(tokenizer):
    if tokenizer not in _COMPILED_DETOKENIZE:
        _COMPILED_DETOKENIZE[tokenizer] = tf.function(
            tokenizer.detokenize, input_signature=[tf.TensorSpec([None, None], tf.int32)])
    return _COMPILED_DETOKENIZE[tokenizer]


def _compiled_generate(model, max_new_tokens, temperature, top_k, top_p):
    """`generate` as a `tf.function(ids, seed, first_step)`, traced once per model and settings."""
    key = (max_new_tokens, temperature, top_k, top_p)
    compiled = _COMPILED_GENERATE.setdefault(model, {})
    if key not in compiled:
        def generate_ids(ids, seed, first_step):
            return generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed, first_step=first_step)

        compiled[key] = tf.function(
            generate_ids,
            input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([2], tf.int32),
                             tf.TensorSpec([], tf.int32)],
        )
    return compiled[key]
