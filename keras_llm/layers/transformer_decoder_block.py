"""GPT-2's Transformer block: pre-LayerNorm, causal self-attention, GELU MLP."""

import keras
from keras import ops

from keras_llm.layers.transformer_encoder_block import TransformerEncoderBlock


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerDecoderBlock(TransformerEncoderBlock):
    """`x + CausalAttention(LN(x))`, then `x + MLP(LN(x))` (nanoGPT's `Block`).

    Identical to `TransformerEncoderBlock` (same weights, same arguments) except that position
    `i` attends only to positions `<= i`, so the output at `i` never depends on later tokens.

    Args:
        num_heads: int, number of attention heads.
        hidden_dim: int, model width; must be divisible by `num_heads`.
        intermediate_dim: int, width of the MLP's hidden layer (GPT-2 uses `4 * hidden_dim`).
        dropout: float in [0, 1), dropout rate (attention probabilities and residual branches).
        layer_norm_epsilon: float, epsilon of both LayerNorms (1e-5 as in GPT-2).
        kernel_initializer: initializer of the attention input projection and the MLP's first
            layer; `None` means GPT-2's normal(0, 0.02).
        residual_kernel_initializer: initializer of the two projections that write into the
            residual stream; `None` means normal(0, 0.02). `GPTBackbone` passes GPT-2's
            `0.02 / sqrt(2 * num_layers)`.
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        x: float tensor `(batch, seq_len, hidden_dim)`.
        padding_mask: optional bool tensor `(batch, seq_len)`, True at real tokens; padded
            positions are additionally masked as keys. With right padding it changes nothing,
            since causality already hides later positions.
        training: bool, whether dropout is active.

    Returns:
        Float tensor `(batch, seq_len, hidden_dim)`.

    Raises:
        ValueError: if `hidden_dim % num_heads != 0` (the message names both) or a size is
            not positive.
    """

    def attention_mask(self, x, padding_mask):
        """Returns the causal mask AND the padding mask: bool `(batch or 1, seq_len, seq_len)`.

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
        return ops.logical_and(causal, padding)  # (batch, seq_len, seq_len)
