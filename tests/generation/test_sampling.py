import numpy as np
import pytest
import tensorflow as tf

from keras_llm.generation.sampling import sample_next_token

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


def _nucleus(logits, top_p):
    from keras_llm.generation.sampling import _top_p_filter
    return np.isfinite(_top_p_filter(tf.constant(logits, tf.float32), top_p).numpy())


def test_nucleus_is_exact_at_a_float32_boundary():
    # 0.5 + 0.3 reaches top_p=0.8 exactly: the third token must not join through rounding.
    logits = np.log(np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3]], np.float32))
    assert _nucleus(logits, 0.8).tolist() == [[True, True, False], [False, True, True]]
    assert _nucleus(logits, 0.81).tolist() == [[True, True, True], [True, True, True]]


def test_nucleus_ties_do_not_widen_the_set():
    # Four equally likely tokens, top_p=0.5: exactly two (the lower ids), not all four.
    assert _nucleus(np.zeros((1, 4), np.float32), 0.5).tolist() == [[True, True, False, False]]
    assert _nucleus(np.zeros((1, 4), np.float32), 1.0).tolist() == [[True] * 4]
