"""`gpt2_block_stack`: names and GPT-2's depth-scaled initialization, for both block kinds."""

import keras
import numpy as np
import pytest

from keras_llm.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_llm.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_llm.layers.transformer_stack import gpt2_block_stack


@pytest.mark.parametrize("block_class", [TransformerDecoderBlock, TransformerEncoderBlock])
def test_blocks_are_named_and_residual_projections_scaled_by_depth(block_class):
    keras.utils.set_random_seed(3)
    blocks = gpt2_block_stack(block_class, 8, "block", num_heads=4, hidden_dim=256,
                              intermediate_dim=512, dropout=0.1)
    assert [block.name for block in blocks] == [f"block_{i}" for i in range(8)]
    for block in blocks:
        block.build((None, None, 256))
    residual_std = 0.02 / np.sqrt(2 * 8)  # GPT-2 sec. 2.3: two residual additions per block.
    for block in (blocks[0], blocks[-1]):
        assert block.dropout == 0.1
        for kernel, expected in ((block.self_attention.output_projection.kernel, residual_std),
                                 (block.feed_forward_output.kernel, residual_std),
                                 (block.feed_forward_intermediate.kernel, 0.02)):
            assert abs(kernel.numpy().std() - expected) < 0.05 * expected
    # Each block draws its own weights.
    first, last = (b.feed_forward_output.kernel.numpy() for b in (blocks[0], blocks[-1]))
    assert not np.allclose(first, last)
