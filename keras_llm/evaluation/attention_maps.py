"""What a Transformer looks at: every block's attention probabilities for one text, as images.

`transformer_trace` replays a `TransformerBackbone`'s forward pass block by block (embedding,
then each pre-LN block) and, at each block, recomputes the attention probabilities from the
block's own query/key projection and attention mask, exactly as `MultiHeadSelfAttention.attend`
does. The model's `call` is not changed for this: the probabilities are recomputed only when a
dashboard asks for them (at evaluation), never in the train step.

`attention_image` turns one block's `(num_heads, seq_len, seq_len)` probabilities into one RGB
image with the heads tiled side by side, for `tf.summary.image`.
"""

import math

import numpy as np
from keras import ops

from keras_llm.data.features import unpack_inputs
from keras_llm.models.transformer_backbone import TransformerBackbone

# Pixels per attention cell: a 64-token context becomes a 256-pixel square per head.
CELL_PIXELS = 4
# Pixels of white between two heads.
HEAD_GAP = 4


def transformer_backbone(model):
    """The model's `TransformerBackbone`, or None (LSTM models have no attention to show)."""
    backbone = getattr(model, "backbone", None)
    return backbone if isinstance(backbone, TransformerBackbone) else None


def transformer_trace(backbone, inputs):
    """Runs `backbone` (inference mode) and returns every block's output and attention.

    Args:
        backbone: a `TransformerBackbone` (GPT's causal or the classifiers' encoder).
        inputs: the model input dict, `token_ids` int32 `(batch, seq_len)` and `padding_mask`
            bool `(batch, seq_len)`.

    Returns:
        list, one `(hidden, probs)` per block: `hidden` float32 numpy `(batch, seq_len,
        hidden_dim)`, the block's output; `probs` float32 numpy `(batch, num_heads, seq_len,
        seq_len)`, `probs[b, h, i, j]` the weight query `i` gives key `j` (rows sum to 1;
        masked keys get 0).
    """
    token_ids, padding_mask = unpack_inputs(inputs, type(backbone).__name__)
    x = backbone.embedding(token_ids)  # (batch, seq_len, hidden_dim)
    trace = []
    for block in backbone.transformer_blocks:
        attention = block.self_attention
        mask = block.attention_mask(x, padding_mask)  # (batch or 1, seq_len or 1, seq_len)
        query, key, _ = attention.project_query_key_value(block.attention_layer_norm(x))
        # (batch, num_heads, seq_len, seq_len), as MultiHeadSelfAttention.attend computes it.
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
        scores = ops.cast(scores, "float32") / math.sqrt(attention.head_dim)
        if mask is not None:
            scores = ops.where(ops.expand_dims(ops.cast(mask, "bool"), 1), scores,
                               ops.cast(-3.4028235e38, "float32"))
        probs = ops.softmax(scores, axis=-1)
        x = block(x, padding_mask=padding_mask, training=False)
        trace.append((np.asarray(ops.convert_to_numpy(x), np.float32),
                      np.asarray(ops.convert_to_numpy(probs), np.float32)))
    return trace


def attention_image(probs):
    """Tiles one block's heads side by side as an RGB image (viridis: dark 0, yellow 1).

    Args:
        probs: float array `(num_heads, seq_len, seq_len)` in [0, 1]; row `i` is query `i`.

    Returns:
        float32 array `(1, seq_len * CELL_PIXELS, num_heads * (seq_len * CELL_PIXELS +
        HEAD_GAP) - HEAD_GAP, 3)` in [0, 1], a batch of one image for `tf.summary.image`.
        Head `h` occupies columns `h * (side + HEAD_GAP)` to `h * (side + HEAD_GAP) + side`
        with `side = seq_len * CELL_PIXELS`; the gaps are white.
    """
    from matplotlib import colormaps  # Imported here: only dashboards need it.

    probs = np.clip(np.asarray(probs, np.float32), 0.0, 1.0)
    num_heads, seq_len, _ = probs.shape
    side = seq_len * CELL_PIXELS
    image = np.ones((side, num_heads * (side + HEAD_GAP) - HEAD_GAP, 3), np.float32)
    colors = colormaps["viridis"]
    for head in range(num_heads):
        cells = np.kron(probs[head], np.ones((CELL_PIXELS, CELL_PIXELS), np.float32))
        left = head * (side + HEAD_GAP)
        image[:, left:left + side] = colors(cells)[..., :3]
    return image[None]
