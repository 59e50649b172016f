import numpy as np
import pytest
import tensorflow as tf

from keras_llm.layers.token_and_position_embedding import TokenAndPositionEmbedding


def _layer():
    layer = TokenAndPositionEmbedding(vocabulary_size=11, sequence_length=6, hidden_dim=4)
    layer.build((None, None))
    return layer


def test_output_is_token_row_plus_position_row():
    layer = _layer()
    token_table = layer.token_embedding.embeddings.numpy()  # (11, 4)
    position_table = layer.position_embedding.embeddings.numpy()  # (6, 4)
    token_ids = np.array([[3, 0, 10], [1, 2, 3]], "int32")
    expected = token_table[token_ids] + position_table[:3][None]
    np.testing.assert_allclose(layer(token_ids).numpy(), expected, atol=1e-7)


def test_default_init_is_gpt2_normal():
    layer = TokenAndPositionEmbedding(vocabulary_size=4000, sequence_length=64, hidden_dim=32)
    layer.build((None, None))
    table = layer.token_embedding.embeddings.numpy()
    assert abs(table.std() - 0.02) < 0.001
    # Token and position tables are drawn with different seeds.
    assert not np.allclose(table[:64], layer.position_embedding.embeddings.numpy())


def test_too_long_input_raises_static():
    with pytest.raises(ValueError, match="sequence_length=6"):
        _layer()(np.zeros((1, 7), "int32"))


def test_too_long_input_raises_in_graph():
    layer = _layer()
    call = tf.function(layer.__call__, input_signature=[tf.TensorSpec((None, None), tf.int32)])
    assert call(tf.zeros((1, 6), tf.int32)).shape == (1, 6, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sequence_length=6"):
        call(tf.zeros((1, 7), tf.int32))


def test_bad_size_raises():
    with pytest.raises(ValueError, match="hidden_dim"):
        TokenAndPositionEmbedding(vocabulary_size=11, sequence_length=6, hidden_dim=0)


def test_config_round_trip():
    layer = _layer()
    config = layer.get_config()
    restored = TokenAndPositionEmbedding.from_config(config)
    assert restored.get_config() == config
    restored.build((None, None))
    restored.set_weights(layer.get_weights())
    token_ids = np.array([[1, 2, 3, 4]], "int32")
    np.testing.assert_allclose(restored(token_ids).numpy(), layer(token_ids).numpy())
