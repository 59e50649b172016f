import json

import keras
import numpy as np
import pytest

from keras_llm.data.features import model_inputs
from keras_llm.models.lstm_backbone import LSTMBackbone
from keras_llm.models.lstm_language_model import LSTMLanguageModel

VOCABULARY_SIZE = 17


def _token_ids(batch_size=2, seq_len=9, seed=0):
    ids = np.random.default_rng(seed).integers(0, VOCABULARY_SIZE, size=(batch_size, seq_len))
    return model_inputs(ids.astype("int32"))


def _model(**kwargs):
    return LSTMLanguageModel(
        LSTMBackbone(vocabulary_size=VOCABULARY_SIZE, hidden_dim=8, num_layers=2, **kwargs))


def test_logits_shape_and_dtype():
    logits = _model(embedding_dim=5)(_token_ids(seq_len=4))
    assert logits.shape == (2, 4, VOCABULARY_SIZE)
    assert logits.dtype == "float32"


def test_is_causal():
    model = _model()
    token_ids = _token_ids()["token_ids"]
    logits = model(model_inputs(token_ids)).numpy()
    for k in (1, 3, 8):
        changed = token_ids.copy()
        changed[:, k:] = (changed[:, k:] + 1) % VOCABULARY_SIZE
        changed_logits = model(model_inputs(changed)).numpy()
        np.testing.assert_allclose(changed_logits[:, :k], logits[:, :k], atol=1e-6)
        assert not np.allclose(changed_logits[:, k:], logits[:, k:], atol=1e-6)


def test_parameter_count():
    model = _model(embedding_dim=5)
    model(_token_ids())
    v, e, h = VOCABULARY_SIZE, 5, 8
    lstm = lambda inputs: 4 * (inputs * h + h * h + h)  # four gates: kernel, recurrent kernel, bias
    assert model.count_params() == v * e + lstm(e) + lstm(h) + (h * v + v)


def test_dropout_only_in_training():
    model = _model(dropout=0.5)
    token_ids = _token_ids()
    np.testing.assert_allclose(model(token_ids).numpy(), model(token_ids, training=False).numpy())
    assert not np.allclose(model(token_ids, training=True).numpy(), model(token_ids).numpy())


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_layers"):
        LSTMBackbone(vocabulary_size=5, hidden_dim=4, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        LSTMBackbone(vocabulary_size=5, hidden_dim=4, num_layers=1, dropout=1.5)
    with pytest.raises(ValueError, match="causal backbone"):
        LSTMLanguageModel(LSTMBackbone(vocabulary_size=5, hidden_dim=4, bidirectional=True))


def test_config_round_trip():
    model = _model(dropout=0.1, embedding_dim=6)
    token_ids = _token_ids()
    logits = model(token_ids).numpy()
    config = model.get_config()
    json.dumps(config)
    restored = LSTMLanguageModel.from_config(config)
    assert restored.get_config() == config
    restored(token_ids)
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(restored(token_ids).numpy(), logits, atol=1e-6)


def test_right_padding_changes_no_real_position():
    model = _model()
    inputs = _token_ids(seq_len=6)
    mask = np.array([[True] * 6, [True] * 3 + [False] * 3])
    padded = model(model_inputs(inputs["token_ids"], mask)).numpy()
    np.testing.assert_allclose(padded[1, :3], model(inputs).numpy()[1, :3], atol=1e-6)


def test_cached_decoding_in_mixed_bfloat16_is_close_to_float32():
    # prefill runs each LSTM's inner_loop outside Layer.__call__, where Keras does not cast the
    # float32 weights to bfloat16 (what --dtype_policy=mixed_bfloat16's validation samples do).
    ids = _token_ids(seq_len=5)
    reference = _model()
    reference(ids)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = _model()
        mixed(ids)
    finally:
        keras.config.set_dtype_policy("float32")
    mixed.set_weights(reference.get_weights())
    results = []
    for model in (reference, mixed):
        logits, state = model.prefill(ids["token_ids"], ids["padding_mask"])
        next_logits, _ = model.decode_step(ids["token_ids"][:, :1], None, state)
        results.append((logits, next_logits))
    for ours, expected in zip(results[1], results[0]):
        assert ours.dtype == "float32"
        np.testing.assert_allclose(ours, expected, atol=0.05)
