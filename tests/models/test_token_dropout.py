import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.models.lstm_backbone import LSTMBackbone
from keras_llm.models.transformer_backbone import TransformerEncoderBackbone

INPUTS = {
    "token_ids": tf.constant([[5, 6, 7, 8, 0, 0], [9, 3, 4, 0, 0, 0]], tf.int32),
    "padding_mask": tf.constant([[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]]) > 0,
}
BACKBONES = {
    "lstm": lambda rate: LSTMBackbone(20, embedding_dim=8, hidden_dim=8, token_dropout=rate),
    "transformer": lambda rate: TransformerEncoderBackbone(20, 6, 1, 2, 8, dropout=0.0,
                                                           token_dropout=rate),
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_token_dropout_only_acts_in_training(name):
    keras.utils.set_random_seed(0)
    plain = BACKBONES[name](0.0)
    plain(INPUTS)
    dropped = BACKBONES[name](0.5)
    dropped(INPUTS)
    dropped.set_weights(plain.get_weights())
    np.testing.assert_allclose(dropped(INPUTS, training=False), plain(INPUTS, training=False),
                               atol=1e-6)
    assert not np.allclose(dropped(INPUTS, training=True), plain(INPUTS, training=True))
    assert dropped.get_config()["token_dropout"] == 0.5
    assert type(dropped).from_config(dropped.get_config()).token_dropout == 0.5


def test_token_dropout_zeroes_whole_token_embeddings():
    keras.utils.set_random_seed(1)
    model = BACKBONES["lstm"](0.5)
    model(INPUTS)
    embedded = model.token_embedding(INPUTS["token_ids"])  # (batch, seq_len, embedding_dim)
    dropped = model.token_dropout_layer(embedded, training=True).numpy()
    zero_tokens = np.all(dropped == 0.0, axis=-1)
    kept = ~zero_tokens
    # Each token is zeroed entirely or kept entirely (scaled by 1 / (1 - 0.5)).
    np.testing.assert_allclose(dropped[kept], 2.0 * embedded.numpy()[kept], rtol=1e-6)
    assert zero_tokens.any() and kept.any()
    with pytest.raises(ValueError, match="token_dropout must be a float in"):
        LSTMBackbone(20, hidden_dim=4, token_dropout=1.0)
