"""GPT-2's Transformer block: pre-LayerNorm, causal self-attention, GELU MLP."""

import keras
from keras import ops

from keras_llm.layers.transformer_encoder_block import TransformerEncoderBlock


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerDecoderBlock(TransformerEncoderBlock):
    """`x + CausalAttention(LN(x))`, then `x + MLP(LN(x))` (nanoGPT's `Block`).

    `TransformerEncoderBlock` (same weights, arguments and call signature) with a causal mask:
    the query at position `i` attends only to keys at positions `<= i`, so the output at `i`
    never depends on later tokens (Radford et al. 2018, GPT's masked self-attention).

    Padding: padded positions are masked as keys, so a real token never reads them, whether the
    batch is padded on the right (where causality already hides them) or on the left (prompts of
    different lengths in one generation batch). A left-padded query, which has no real key at or
    before it, attends to itself alone, so its own (meaningless) output never depends on later
    tokens either (attending uniformly to every key, as a fully masked row otherwise would,
    would read the future).
    """

    def attention_mask(self, x, padding_mask):
        """Returns causal AND padding, with rows left empty by them given their diagonal.

        Returns:
            bool `(batch or 1, seq_len, seq_len)`; `[b, i, j]` is True where query `i` may
            attend to key `j`.

        Args:
            x: float tensor `(batch, seq_len, hidden_dim)`, read only for `seq_len`.
            padding_mask: optional bool tensor `(batch, seq_len)`, True at real tokens.
        """
        seq_len = ops.shape(x)[1]
        positions = ops.arange(seq_len)  # (seq_len,)
        # causal[i, j] is True where key j is not in the future of query i.
        causal = positions[None, :] <= positions[:, None]  # (seq_len, seq_len)
        causal = causal[None, :, :]  # (1, seq_len, seq_len)
        padding = super().attention_mask(x, padding_mask)  # (batch, 1, seq_len) or None
        if padding is None:
            return causal
        allowed = ops.logical_and(causal, padding)  # (batch, seq_len, seq_len)
        no_key = ops.logical_not(ops.any(allowed, axis=-1, keepdims=True))  # (batch, seq_len, 1)
        diagonal = (positions[None, :] == positions[:, None])[None, :, :]  # (1, seq_len, seq_len)
        return ops.logical_or(allowed, ops.logical_and(no_key, diagonal))
