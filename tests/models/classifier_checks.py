"""Padding-invariance and round-trip checks shared by the classifier tests."""

import keras
import numpy as np

from keras_llm.data.features import PADDING_MASK_KEY
from keras_llm.data.features import TOKEN_IDS_KEY


def classifier_inputs(rows, seq_len):
    """Right-pads lists of token ids (ids >= 1) with 0 to `seq_len`; returns the input dict."""
    token_ids = np.zeros((len(rows), seq_len), "int32")
    for i, row in enumerate(rows):
        token_ids[i, : len(row)] = row
    return {TOKEN_IDS_KEY: token_ids, PADDING_MASK_KEY: token_ids != 0}


def check_trailing_padding_changes_nothing(model):
    row = [5, 3, 9, 2, 7]
    unpadded = model(classifier_inputs([row], seq_len=5)).numpy()
    padded = model(classifier_inputs([row], seq_len=12)).numpy()
    np.testing.assert_allclose(padded, unpadded, atol=1e-5)


def check_all_padding_row_changes_nothing(model):
    rows = [[4, 8, 1], [6, 2, 2, 9, 3, 1]]
    logits = model(classifier_inputs(rows, seq_len=8)).numpy()
    with_empty = model(classifier_inputs([rows[0], [], rows[1]], seq_len=8)).numpy()
    assert np.all(np.isfinite(with_empty))
    np.testing.assert_allclose(with_empty[[0, 2]], logits, atol=1e-5)
    # Different inputs give different logits: the comparisons above could fail.
    assert not np.allclose(logits[0], logits[1], atol=1e-6)


def check_config_round_trip(model, model_class, inputs):
    logits = model(inputs).numpy()
    config = model.get_config()
    restored = model_class.from_config(config)
    assert restored.get_config() == config
    restored(inputs)
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(restored(inputs).numpy(), logits, atol=1e-6)


def check_keras_file_round_trip(model, inputs, path):
    """Saves to a .keras file and reloads: the dict-input build config must rebuild every weight."""
    logits = model(inputs).numpy()
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded(inputs).numpy(), logits, atol=1e-6)
