import json

import numpy as np
import pytest

from keras_llm.layers.transformer_decoder_block import TransformerDecoderBlock
from tests.layers import numpy_reference

NUM_HEADS, HIDDEN_DIM, INTERMEDIATE_DIM = 2, 8, 12


def _random_inputs(batch_size=2, seq_len=5, seed=0):
    return np.random.default_rng(seed).normal(size=(batch_size, seq_len, HIDDEN_DIM)).astype("float32")


def _block(**kwargs):
    block = TransformerDecoderBlock(
        num_heads=NUM_HEADS, hidden_dim=HIDDEN_DIM, intermediate_dim=INTERMEDIATE_DIM, **kwargs
    )
    block.build((None, None, HIDDEN_DIM))
    numpy_reference.randomize_weights(block, seed=1)
    return block


def test_matches_numpy_reference():
    block = _block(layer_norm_epsilon=1e-5)
    x = _random_inputs()
    expected = numpy_reference.transformer_block(
        x.astype(np.float64), numpy_reference.block_weights(block), NUM_HEADS, 1e-5, causal=True
    )
    np.testing.assert_allclose(block(x).numpy(), expected, atol=1e-5)


def test_matches_numpy_reference_with_padding_mask():
    block = _block()
    x = _random_inputs()
    padding_mask = np.array([[True] * 5, [True, True, True, False, False]])
    expected = numpy_reference.transformer_block(
        x.astype(np.float64), numpy_reference.block_weights(block), NUM_HEADS, 1e-5, causal=True,
        padding_mask=padding_mask,
    )
    np.testing.assert_allclose(block(x, padding_mask=padding_mask).numpy(), expected, atol=1e-5)


def test_matches_numpy_reference_with_left_padding():
    block = _block()
    x = _random_inputs()
    padding_mask = np.array([[False, False, True, True, True], [False] * 4 + [True]])
    expected = numpy_reference.transformer_block(
        x.astype(np.float64), numpy_reference.block_weights(block), NUM_HEADS, 1e-5, causal=True,
        padding_mask=padding_mask,
    )
    np.testing.assert_allclose(block(x, padding_mask=padding_mask).numpy(), expected, atol=1e-5)


def test_left_padded_positions_never_read_later_tokens():
    block = _block()
    x = _random_inputs()
    padding_mask = np.array([[False, False, True, True, True]] * 2)
    changed = x.copy()
    changed[:, 2:] += 1.0  # Only the real (later) tokens change.
    np.testing.assert_allclose(block(changed, padding_mask=padding_mask).numpy()[:, :2],
                               block(x, padding_mask=padding_mask).numpy()[:, :2], atol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_is_causal(k):
    block = _block()
    x = _random_inputs()
    changed = x.copy()
    changed[:, k:] = _random_inputs(seed=7)[:, k:]
    np.testing.assert_allclose(block(changed).numpy()[:, :k], block(x).numpy()[:, :k], atol=1e-6)
    # The changed positions themselves do change: the test could fail.
    assert not np.allclose(block(changed).numpy()[:, k:], block(x).numpy()[:, k:], atol=1e-3)


def test_dropout_only_in_training():
    block = _block(dropout=0.5)
    x = _random_inputs()
    np.testing.assert_allclose(block(x, training=False).numpy(), block(x).numpy())
    assert not np.allclose(block(x, training=True).numpy(), block(x, training=False).numpy())


def test_indivisible_hidden_dim_raises_naming_both():
    with pytest.raises(ValueError, match=r"hidden_dim=10.*num_heads=3"):
        TransformerDecoderBlock(num_heads=3, hidden_dim=10, intermediate_dim=16)


def test_config_round_trip():
    block = _block(dropout=0.1, layer_norm_epsilon=1e-6)
    config = block.get_config()
    json.dumps(config)  # JSON-serializable, so it can be written next to a checkpoint.
    restored = TransformerDecoderBlock.from_config(config)
    assert restored.get_config() == config
    restored.build((None, None, HIDDEN_DIM))
    restored.set_weights(block.get_weights())
    x = _random_inputs()
    np.testing.assert_allclose(restored(x).numpy(), block(x).numpy(), atol=1e-6)
