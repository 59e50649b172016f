import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data.features import model_inputs
from keras_llm.generation.decoding import generate
from keras_llm.models.gpt import GPTLanguageModel
from keras_llm.models.lstm_backbone import LSTMBackbone
from keras_llm.models.lstm_language_model import LSTMLanguageModel
from keras_llm.models.transformer_backbone import GPTBackbone

VOCABULARY_SIZE = 11


class _CropRevealingModel:
    """A fake language model whose next token reveals the context it was given.

    Next token = (first token of the context + context length) mod VOCABULARY_SIZE, with a
    certain one-hot prediction, so greedy decoding is a deterministic function of the crop.
    """

    def __init__(self, max_context):
        self.max_context = max_context

    def __call__(self, inputs, training=False):
        token_ids = inputs["token_ids"]
        seq_len = tf.shape(token_ids)[1]
        tf.debugging.assert_less_equal(seq_len, self.max_context)
        next_token = (token_ids[:, 0] + seq_len) % VOCABULARY_SIZE  # (batch,)
        one_hot = tf.one_hot(next_token, VOCABULARY_SIZE) * 100.0  # (batch, vocabulary_size)
        return tf.tile(one_hot[:, None, :], [1, seq_len, 1])  # (batch, seq_len, vocabulary_size)


def _nanogpt_reference(prompt, max_new_tokens, max_context):
    sequence = list(prompt)
    for _ in range(max_new_tokens):
        context = sequence[-max_context:]
        sequence.append((context[0] + len(context)) % VOCABULARY_SIZE)
    return sequence


@pytest.mark.parametrize("prompt_len", [1, 3, 9])
def test_recomputation_crops_like_nanogpt(prompt_len):
    prompt = np.array([list(range(2, 2 + prompt_len)), list(range(7, 7 + prompt_len))], "int32")
    out = generate(_CropRevealingModel(4), prompt, max_new_tokens=6, temperature=0.0,
                   use_cache=False)
    assert out.dtype == tf.int32 and out.shape == (2, prompt_len + 6)
    for row in range(2):
        assert out.numpy()[row].tolist() == _nanogpt_reference(prompt[row], 6, 4)


def _gpt(max_context=6, seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = GPTLanguageModel(GPTBackbone(vocabulary_size=VOCABULARY_SIZE, sequence_length=max_context,
                                         num_layers=2, num_heads=2, hidden_dim=8))
    model(model_inputs(np.ones((1, 2), "int32")))
    return model


def _lstm(seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = LSTMLanguageModel(LSTMBackbone(vocabulary_size=VOCABULARY_SIZE, hidden_dim=8, num_layers=2))
    model(model_inputs(np.ones((1, 2), "int32")))
    return model


def _python_greedy(model, prompt, max_new_tokens, max_context):
    """The loop spelled out: full recomputation on the last max_context tokens."""
    sequence = list(prompt)
    for _ in range(max_new_tokens):
        context = np.array([sequence[-max_context:] if max_context else sequence], "int32")
        logits = model(model_inputs(context)).numpy()[0, -1]
        sequence.append(int(logits.argmax()))
    return sequence


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_greedy_matches_a_python_loop_past_the_context(name, use_cache):
    model = _gpt() if name == "gpt" else _lstm()
    prompt = [3, 1, 4, 1, 5]  # 5 + 9 new tokens: past the GPT's context of 6
    out = generate(model, np.array([prompt], "int32"), 9, temperature=0.0, use_cache=use_cache)
    assert out.numpy()[0].tolist() == _python_greedy(model, prompt, 9, model.max_context)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_cached_logits_equal_full_recomputation_at_every_step(name):
    model = _gpt() if name == "gpt" else _lstm()
    recorded = {}
    import keras_llm.generation.decoding as decoding
    original = decoding.sample_next_token

    def recording_sampler(logits, *args, **kwargs):
        recorded.setdefault(use_cache, []).append(logits.numpy())
        return original(logits, *args, **kwargs)

    decoding.sample_next_token = recording_sampler
    try:
        prompt = np.array([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2]], "int32")
        for use_cache in (True, False):
            generate(model, prompt, 8, prompt_lengths=[3, 5], temperature=0.0,
                     use_cache=use_cache)
    finally:
        decoding.sample_next_token = original
    assert len(recorded[True]) == len(recorded[False]) == 8
    for cached, full in zip(recorded[True], recorded[False]):
        np.testing.assert_allclose(cached, full, atol=1e-4)


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_a_batch_of_different_lengths_gives_each_row_what_it_gives_alone(name):
    model = _gpt() if name == "gpt" else _lstm()
    prompts = [[3, 1, 4], [2, 7, 1, 8, 2], [9]]
    batch = np.zeros((3, 5), "int32")
    for row, prompt in enumerate(prompts):
        batch[row, :len(prompt)] = prompt
    out = generate(model, batch, 4, prompt_lengths=[3, 5, 1], temperature=0.0).numpy()
    for row, prompt in enumerate(prompts):
        alone = generate(model, np.array([prompt], "int32"), 4, temperature=0.0).numpy()[0]
        assert out[row, :len(prompt) + 4].tolist() == alone.tolist()
        assert not out[row, len(prompt) + 4:].any()  # zeros after the row's tokens


def test_keeps_prompt_and_zero_new_tokens():
    prompt = np.array([[1, 2, 3], [4, 5, 6]], "int32")
    out = generate(_gpt(), prompt, max_new_tokens=4, seed=1).numpy()
    np.testing.assert_array_equal(out[:, :3], prompt)
    assert np.all((out >= 0) & (out < VOCABULARY_SIZE))
    np.testing.assert_array_equal(generate(_gpt(), prompt, max_new_tokens=0).numpy(), prompt)


def test_prompt_longer_than_the_context_keeps_its_last_tokens():
    model = _gpt()
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]  # 8 > context 6
    out = generate(model, np.array([prompt], "int32"), 3, temperature=0.0).numpy()[0]
    assert out.tolist() == _python_greedy(model, prompt, 3, 6)


def test_in_tf_function_is_reproducible_and_matches_eager():
    model = _gpt()
    signature = [
        tf.TensorSpec([None, None], tf.int32),  # prompt_ids
        tf.TensorSpec([], tf.int32),  # max_new_tokens
        tf.TensorSpec([], tf.float32),  # temperature
        tf.TensorSpec([], tf.int32),  # top_k
        tf.TensorSpec([], tf.float32),  # top_p
        tf.TensorSpec([2], tf.int32),  # seed
    ]

    @tf.function(input_signature=signature)
    def generate_fn(prompt_ids, max_new_tokens, temperature, top_k, top_p, seed):
        return generate(model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p, seed=seed)

    prompt = tf.constant([[3, 1, 4, 1, 5, 9, 2, 6]], tf.int32)
    args = (tf.constant(7), tf.constant(1.0), tf.constant(10), tf.constant(0.95), tf.constant([4, 2]))
    first = generate_fn(prompt, *args).numpy()
    assert first.shape == (1, 15)
    np.testing.assert_array_equal(generate_fn(prompt, *args).numpy(), first)
    eager = generate(model, prompt, 7, temperature=1.0, top_k=10, top_p=0.95, seed=[4, 2]).numpy()
    np.testing.assert_array_equal(eager, first)
    # A shorter prompt (which fits the context: the cached path) reuses the same trace.
    assert generate_fn(prompt[:, :2], *args).shape == (1, 9)


def test_different_seeds_give_different_continuations():
    model = _gpt()
    prompt = np.ones((8, 2), "int32")
    first = generate(model, prompt, 10, seed=0).numpy()
    assert not np.array_equal(generate(model, prompt, 10, seed=1).numpy(), first)
    np.testing.assert_array_equal(generate(model, prompt, 10, seed=0).numpy(), first)


def test_negative_max_new_tokens_raises():
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(_gpt(), np.ones((1, 2), "int32"), -1)


def test_rows_stop_at_their_first_end_token():
    from keras_llm.generation.decoding import truncate_at_end_token
    tokens, counts = truncate_at_end_token(
        tf.constant([[5, 9, 6, 9], [4, 4, 4, 4], [9, 1, 2, 3]]), 9)
    assert tokens.numpy().tolist() == [[5, 9, 0, 0], [4, 4, 4, 4], [9, 0, 0, 0]]
    assert counts.numpy().tolist() == [2, 4, 1]
