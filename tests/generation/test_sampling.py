import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data.features import model_inputs
from keras_llm.generation.sampling import generate
from keras_llm.generation.sampling import sample_next_token
from keras_llm.models.gpt import GPTLanguageModel
from keras_llm.models.lstm_backbone import LSTMBackbone
from keras_llm.models.lstm_language_model import LSTMLanguageModel
from keras_llm.models.transformer_backbone import GPTBackbone

VOCABULARY_SIZE = 20


def _logits(batch_size=4, seed=0):
    return np.random.default_rng(seed).normal(scale=2.0, size=(batch_size, VOCABULARY_SIZE)).astype("float32")


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------- sample_next_token


def test_temperature_zero_is_argmax():
    logits = _logits()
    tokens = sample_next_token(logits, temperature=0.0, seed=3)
    assert tokens.dtype == tf.int32 and tokens.shape == (4,)
    np.testing.assert_array_equal(tokens.numpy(), logits.argmax(-1))


def test_tensor_temperature_zero_is_argmax():
    logits = _logits()
    tokens = sample_next_token(logits, temperature=tf.constant(0.0), seed=3)
    np.testing.assert_array_equal(tokens.numpy(), logits.argmax(-1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_one_is_greedy(seed):
    logits = _logits()
    tokens = sample_next_token(logits, temperature=1.0, top_k=1, seed=seed)
    np.testing.assert_array_equal(tokens.numpy(), logits.argmax(-1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_top_p_is_greedy(seed):
    logits = _logits()
    tokens = sample_next_token(logits, temperature=1.0, top_p=1e-6, seed=seed)
    np.testing.assert_array_equal(tokens.numpy(), logits.argmax(-1))


def test_top_k_never_samples_outside_the_top_k():
    k = 3
    logits = np.tile(_logits(batch_size=2), (1000, 1))  # 2000 draws, 1000 per distinct row
    tokens = sample_next_token(logits, temperature=1.0, top_k=k, seed=[5, 6]).numpy()
    top_k_sets = np.argsort(-logits, axis=-1)[:, :k]
    assert all(token in allowed for token, allowed in zip(tokens, top_k_sets))
    # All k tokens do occur for each row, so the filter is not degenerate greedy.
    for row in range(2):
        assert set(tokens[row::2]) == set(top_k_sets[row])


def test_top_p_samples_only_the_nucleus():
    # probabilities 0.5, 0.3, 0.15, 0.05: the 0.75-nucleus is {0, 1} (0.5 < 0.75 <= 0.8).
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], "float32"))
    tokens = sample_next_token(np.tile(logits, (2000, 1)), temperature=1.0, top_p=0.75, seed=[1, 2]).numpy()
    assert set(tokens) == {0, 1}
    # Renormalized over the nucleus: P(0) = 0.5 / 0.8.
    assert abs(np.mean(tokens == 0) - 0.625) < 0.04


def test_frequencies_follow_tempered_softmax():
    logits = np.array([[2.0, 1.0, 0.0, -1.0]], "float32")
    for temperature in (1.0, 0.5):
        tokens = sample_next_token(np.tile(logits, (20000, 1)), temperature=temperature, seed=[7, int(temperature * 10)])
        frequencies = np.bincount(tokens.numpy(), minlength=4) / 20000
        np.testing.assert_allclose(frequencies, _softmax(logits[0] / temperature), atol=0.015)


def test_same_seed_same_tokens_and_different_seed_different_tokens():
    logits = np.zeros((500, VOCABULARY_SIZE), "float32")  # uniform: 500 independent draws
    first = sample_next_token(logits, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(sample_next_token(logits, seed=[1, 2]).numpy(), first)
    np.testing.assert_array_equal(sample_next_token(logits, seed=tf.constant([1, 2])).numpy(), first)
    assert not np.array_equal(sample_next_token(logits, seed=[1, 3]).numpy(), first)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"temperature": -1.0}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p")],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sample_next_token(_logits(), **kwargs)


# ---------------------------------------------------------------- generate


class _CropRevealingModel:
    """A fake language model whose next token reveals the context it was given.

    Next token = (first token of the context + context length) mod VOCABULARY_SIZE, with a
    certain one-hot prediction, so greedy decoding is a deterministic function of the crop.
    """

    def __init__(self, sequence_length):
        self.sequence_length = sequence_length

    def __call__(self, inputs, training=False):
        token_ids = inputs["token_ids"]
        seq_len = tf.shape(token_ids)[1]
        tf.debugging.assert_less_equal(seq_len, self.sequence_length)
        next_token = (token_ids[:, 0] + seq_len) % VOCABULARY_SIZE  # (batch,)
        one_hot = tf.one_hot(next_token, VOCABULARY_SIZE) * 100.0  # (batch, vocabulary_size)
        return tf.tile(one_hot[:, None, :], [1, seq_len, 1])  # (batch, seq_len, vocabulary_size)


def _nanogpt_reference(prompt, max_new_tokens, sequence_length):
    sequence = list(prompt)
    for _ in range(max_new_tokens):
        context = sequence[-sequence_length:]
        sequence.append((context[0] + len(context)) % VOCABULARY_SIZE)
    return sequence


@pytest.mark.parametrize("prompt_len", [1, 3, 9])
def test_generate_crops_like_nanogpt(prompt_len):
    sequence_length = 4
    prompt = np.array([list(range(2, 2 + prompt_len)), list(range(7, 7 + prompt_len))], "int32")
    out = generate(_CropRevealingModel(sequence_length), prompt, max_new_tokens=6, sequence_length=sequence_length, temperature=0.0)
    assert out.dtype == tf.int32 and out.shape == (2, prompt_len + 6)
    for row in range(2):
        assert out.numpy()[row].tolist() == _nanogpt_reference(prompt[row], 6, sequence_length)


def _gpt(sequence_length=6):
    return GPTLanguageModel(GPTBackbone(vocabulary_size=VOCABULARY_SIZE, sequence_length=sequence_length, num_layers=1, num_heads=2, hidden_dim=8))


def test_generate_greedy_matches_a_python_loop():
    model = _gpt()
    prompt = np.array([[3, 1, 4, 1, 5, 9, 2]], "int32")  # longer than sequence_length=6
    out = generate(model, prompt, max_new_tokens=5, sequence_length=6, temperature=0.0).numpy()
    sequence = prompt[0].tolist()
    for _ in range(5):
        logits = model(model_inputs(np.array([sequence[-6:]], "int32"))).numpy()[0, -1]
        sequence.append(int(logits.argmax()))
    assert out[0].tolist() == sequence


def test_generate_keeps_prompt_and_zero_new_tokens():
    prompt = np.array([[1, 2, 3], [4, 5, 6]], "int32")
    out = generate(_gpt(), prompt, max_new_tokens=4, sequence_length=6, seed=1).numpy()
    np.testing.assert_array_equal(out[:, :3], prompt)
    assert np.all((out >= 0) & (out < VOCABULARY_SIZE))
    np.testing.assert_array_equal(generate(_gpt(), prompt, max_new_tokens=0, sequence_length=6).numpy(), prompt)


def test_generate_in_tf_function_is_reproducible_and_matches_eager():
    model = _gpt()  # not built yet: generate builds it before the loop
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
        return generate(model, prompt_ids, max_new_tokens, 6, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)

    prompt = tf.constant([[3, 1, 4, 1, 5, 9, 2, 6]], tf.int32)
    args = (tf.constant(7), tf.constant(1.0), tf.constant(10), tf.constant(0.95), tf.constant([4, 2]))
    first = generate_fn(prompt, *args).numpy()
    assert first.shape == (1, 15)
    np.testing.assert_array_equal(generate_fn(prompt, *args).numpy(), first)
    eager = generate(model, prompt, 7, 6, temperature=1.0, top_k=10, top_p=0.95, seed=[4, 2]).numpy()
    np.testing.assert_array_equal(eager, first)
    # A different prompt length reuses the same trace.
    assert generate_fn(prompt[:, :2], *args).shape == (1, 9)


def test_different_seeds_give_different_continuations():
    model = _gpt()
    prompt = np.ones((8, 2), "int32")
    first = generate(model, prompt, 10, 6, seed=0).numpy()
    assert not np.array_equal(generate(model, prompt, 10, 6, seed=1).numpy(), first)
    np.testing.assert_array_equal(generate(model, prompt, 10, 6, seed=0).numpy(), first)


def test_generate_with_lstm_language_model():
    model = LSTMLanguageModel(LSTMBackbone(vocabulary_size=VOCABULARY_SIZE, hidden_dim=8, num_layers=1))
    out = generate(model, np.array([[1, 2]], "int32"), max_new_tokens=3, sequence_length=16, top_k=5)
    assert out.shape == (1, 5)
