"""A stack of pre-LayerNorm Transformer blocks with GPT-2's depth-scaled initialization.

GPT-2 (Radford et al. 2019, sec. 2.3) and nanoGPT (`model.py`, `_init_weights`) draw every
weight from normal(0, 0.02), except the projections that write into the residual stream, drawn
from normal(0, 0.02 / sqrt(2 * num_layers)): each block adds two branches to the stream, and the
scaling keeps the stream's variance from growing with depth. `GPTBackbone` stacks causal
`TransformerDecoderBlock`s this way, `TransformerClassifier` bidirectional
`TransformerEncoderBlock`s.
"""

import math

from keras_llm.layers.initializers import GPT2_INITIALIZER_STDDEV, gpt2_normal


def gpt2_block_stack(block_class, num_layers, name_prefix, **block_kwargs):
    """Returns `num_layers` blocks of `block_class`, initialized as GPT-2's.

    Args:
        block_class: `TransformerDecoderBlock` or `TransformerEncoderBlock` (any layer taking
            `kernel_initializer` and `residual_kernel_initializer`).
        num_layers: int >= 1, the depth of the stack (it sets the residual scaling).
        name_prefix: str; block `i` is named `f"{name_prefix}_{i}"` (checkpoint paths use it).
        **block_kwargs: the rest of the block's arguments (num_heads, hidden_dim,
            intermediate_dim, dropout, layer_norm_epsilon, dtype, ...), the same for every block.

    Returns:
        A list of `num_layers` unbuilt blocks, each with its own initializer instances (so its
        own random draws).
    """
    residual_stddev = GPT2_INITIALIZER_STDDEV / math.sqrt(2 * num_layers)
    return [
        block_class(
            kernel_initializer=gpt2_normal(),
            residual_kernel_initializer=gpt2_normal(residual_stddev),
            name=f"{name_prefix}_{i}",
            **block_kwargs,
        )
        for i in range(num_layers)
    ]
