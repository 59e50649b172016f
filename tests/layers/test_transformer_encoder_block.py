import numpy as np
import pytest

from keras_llm.layers.transformer_encoder_block import TransformerEncoderBlock
from tests.layers import numpy_reference

NUM_HEADS, HIDDEN_DIM, INTERMEDIATE_DIM = 2, 8, 12


def _random_inputs(batch_size=2, seq_len=5, seed=0):
    return np.random.default_rng(seed).normal(size=(batch_size, seq_len, HIDDEN_DIM)).astype("float32")


def _block(**kwargs):
    block = TransformerEncoderBlock(
        num_heads=NUM_HEADS, hidden_dim=HIDDEN_DIM, intermediate_dim=INTERMEDIATE_DIM, **kwargs
    )
    block.build((None, None, HIDDEN_DIM))
    numpy_reference.randomize_weights(block, seed=2)
    return block


def test_matches_numpy_reference_with_padding_mask():
    block = _block()
    x = _random_inputs()
    padding_mask = np.array([[True] * 5, [True, True, False, False, False]])
    expected = numpy_reference.transformer_block(
        x.astype(np.float64), numpy_reference.block_weights(block), NUM_HEADS, 1e-5, causal=False,
        padding_mask=padding_mask,
    )
    np.testing.assert_allclose(block(x, padding_mask=padding_mask).numpy(), expected, atol=1e-5)


def test_is_bidirectional():
    block = _block()
    x = _random_inputs()
    changed = x.copy()
    changed[:, -1] = _random_inputs(seed=9)[:, -1]
    # Unlike the decoder block, the first position sees the last one.
    assert not np.allclose(block(changed).numpy()[:, 0], block(x).numpy()[:, 0], atol=1e-4)


def test_trailing_padding_changes_no_real_position():
    block = _block()
    x = _random_inputs(batch_size=1, seq_len=3)
    padded = np.concatenate([x, _random_inputs(batch_size=1, seq_len=4, seed=5)], axis=1)  # junk after
    padding_mask = np.array([[True] * 3 + [False] * 4])
    np.testing.assert_allclose(
        block(padded, padding_mask=padding_mask).numpy()[:, :3], block(x).numpy(), atol=1e-5
    )


def test_all_padding_row_is_finite():
    block = _block()
    out = block(_random_inputs(batch_size=1), padding_mask=np.zeros((1, 5), bool)).numpy()
    assert np.all(np.isfinite(out))


def test_indivisible_hidden_dim_raises_naming_both():
    with pytest.raises(ValueError, match=r"hidden_dim=6.*num_heads=4"):
        TransformerEncoderBlock(num_heads=4, hidden_dim=6, intermediate_dim=16)


def test_config_round_trip():
    block = _block(dropout=0.2)
    config = block.get_config()
    restored = TransformerEncoderBlock.from_config(config)
    assert restored.get_config() == config
    restored.build((None, None, HIDDEN_DIM))
    restored.set_weights(block.get_weights())
    x = _random_inputs()
    np.testing.assert_allclose(restored(x).numpy(), block(x).numpy(), atol=1e-6)
