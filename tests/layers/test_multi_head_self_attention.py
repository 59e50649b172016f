import keras
import numpy as np
import pytest

from keras_llm.layers.multi_head_self_attention import MultiHeadSelfAttention
from tests.layers import numpy_reference


def _layer(**kwargs):
    layer = MultiHeadSelfAttention(num_heads=2, hidden_dim=6, **kwargs)
    layer.build((None, None, 6))
    numpy_reference.randomize_weights(layer, seed=3)
    return layer


def _reference(layer, x, allowed):
    """Single-example attention written head by head from the layer's weights."""
    w_qkv = layer.query_key_value.kernel.numpy()
    b_qkv = layer.query_key_value.bias.numpy()
    qkv = x @ w_qkv + b_qkv  # (seq_len, 18)
    q, k, v = qkv[:, :6], qkv[:, 6:12], qkv[:, 12:]
    heads = []
    for h in range(2):
        cols = slice(3 * h, 3 * h + 3)
        scores = np.where(allowed, q[:, cols] @ k[:, cols].T / np.sqrt(3), -1e30)
        heads.append(numpy_reference.softmax(scores) @ v[:, cols])
    return np.concatenate(heads, -1) @ layer.output_projection.kernel.numpy() + layer.output_projection.bias.numpy()


def test_matches_reference_with_arbitrary_mask():
    layer = _layer()
    x = np.random.default_rng(0).normal(size=(1, 4, 6)).astype("float32")
    allowed = np.array([[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0], [1, 0, 0, 1]], bool)
    out = layer(x, attention_mask=allowed[None]).numpy()[0]
    np.testing.assert_allclose(out, _reference(layer, x[0].astype(np.float64), allowed), atol=1e-5)


def test_fully_masked_query_attends_uniformly():
    layer = _layer()
    x = np.random.default_rng(1).normal(size=(1, 3, 6)).astype("float32")
    allowed = np.array([[[0, 0, 0], [1, 1, 1], [1, 1, 1]]], bool)
    out = layer(x, attention_mask=allowed).numpy()
    # Query 0 has no visible key: it averages all values (finite) instead of producing NaN.
    values = (x[0] @ layer.query_key_value.kernel.numpy() + layer.query_key_value.bias.numpy())[:, 12:]
    expected = values.mean(axis=0) @ layer.output_projection.kernel.numpy() + layer.output_projection.bias.numpy()
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-5)


def test_separate_initializer_copies_give_different_kernels():
    layer = MultiHeadSelfAttention(num_heads=2, hidden_dim=6)
    layer.build((None, None, 6))
    qkv = layer.query_key_value.kernel.numpy()
    out = layer.output_projection.kernel.numpy()
    assert not np.allclose(qkv[:, :6], out)


def test_one_shared_initializer_instance_still_gives_each_kernel_its_own_draw():
    # A seedless Keras 3 initializer draws its seed once, at construction: two layers given the
    # same instance would get identical same-shape kernels unless each clones it.
    shared = keras.initializers.RandomNormal(stddev=0.02)
    first = MultiHeadSelfAttention(num_heads=2, hidden_dim=6, kernel_initializer=shared,
                                   residual_kernel_initializer=shared)
    second = MultiHeadSelfAttention(num_heads=2, hidden_dim=6, kernel_initializer=shared,
                                    residual_kernel_initializer=shared)
    for layer in (first, second):
        layer.build((None, None, 6))
    assert not np.allclose(first.query_key_value.kernel.numpy(),
                           second.query_key_value.kernel.numpy())
    assert not np.allclose(first.output_projection.kernel.numpy(),
                           second.output_projection.kernel.numpy())


def test_bad_dropout_raises():
    with pytest.raises(ValueError, match="dropout"):
        MultiHeadSelfAttention(num_heads=2, hidden_dim=6, dropout=1.0)
