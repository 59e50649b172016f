import numpy as np
import pytest

from keras_llm.layers.sequence_pooling import SequencePooling

# (batch=3, seq_len=4, hidden_dim=4); row 1 has 2 real tokens, row 2 none.
HIDDEN = np.arange(48, dtype="float32").reshape(3, 4, 4)
MASK = np.array([[True, True, True, True], [True, True, False, False], [False] * 4])


def test_mean_is_over_real_tokens_and_zero_for_an_empty_row():
    pooled = SequencePooling("mean")(HIDDEN, MASK).numpy()
    np.testing.assert_allclose(pooled[0], HIDDEN[0].mean(0))
    np.testing.assert_allclose(pooled[1], HIDDEN[1, :2].mean(0))
    np.testing.assert_allclose(pooled[2], np.zeros(4))


def test_last_token_reads_each_rows_last_real_position():
    pooled = SequencePooling("last_token")(HIDDEN, MASK).numpy()
    np.testing.assert_allclose(pooled, np.stack([HIDDEN[0, 3], HIDDEN[1, 1], HIDDEN[2, 0]]))


def test_bidirectional_final_states_take_forward_last_and_backward_first():
    pooled = SequencePooling("bidirectional_final_states")(HIDDEN, MASK).numpy()
    np.testing.assert_allclose(pooled[1], np.concatenate([HIDDEN[1, 1, :2], HIDDEN[1, 0, 2:]]))
    np.testing.assert_allclose(pooled[0], np.concatenate([HIDDEN[0, 3, :2], HIDDEN[0, 0, 2:]]))


def test_unknown_mode_raises_naming_the_modes():
    with pytest.raises(ValueError, match="last_token"):
        SequencePooling("max")


def test_config_round_trip():
    layer = SequencePooling("last_token")
    assert SequencePooling.from_config(layer.get_config()).mode == "last_token"
