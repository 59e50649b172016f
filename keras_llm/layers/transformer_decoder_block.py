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

    # --------------------------------------------------------------- cached decoding (no dropout)

    def prefill(self, x, padding_mask):
        """The block on a right-padded prompt, also returning its keys and values for the cache.

        Args:
            x: float tensor `(batch, prompt_len, hidden_dim)`.
            padding_mask: bool tensor `(batch, prompt_len)`, True at real tokens.

        Returns:
            `(output, key, value)`: output `(batch, prompt_len, hidden_dim)` equal to `call`'s,
            key and value `(batch, num_heads, prompt_len, head_dim)`.
        """
        h = self.attention_layer_norm(x)
        query, key, value = self.self_attention.project_query_key_value(h)
        h = self.self_attention.attend(query, key, value, self.attention_mask(x, padding_mask))
        return self.feed_forward(x + h), key, value

    def decode_step(self, x, key_cache, value_cache, positions):
        """One new token per row, attending over the cached keys and values of earlier positions.

        The new token's key and value are written at slot `positions[b]` of the cache with
        `tf.where` over a one-hot mask (no `XlaDynamicUpdateSlice`, which stock TF Serving cannot
        run without XLA), and the query attends to slots `<= positions[b]`.

        Args:
            x: float tensor `(batch, 1, hidden_dim)`, the new tokens' residual stream.
            key_cache, value_cache: `(batch, num_heads, cache_length, head_dim)`.
            positions: int32 `(batch,)`, each row's position of the new token (< cache_length).

        Returns:
            `(output (batch, 1, hidden_dim), key_cache, value_cache)` with the slots written.
        """
        slots = ops.arange(ops.shape(key_cache)[2], dtype="int32")  # (cache_length,)
        positions = ops.cast(positions, "int32")
        h = self.attention_layer_norm(x)
        query, key, value = self.self_attention.project_query_key_value(h)  # (b, heads, 1, d)
        write = ops.expand_dims(slots[None, :] == positions[:, None], (1, 3))  # (b, 1, cache, 1)
        key_cache = ops.where(write, key, key_cache)  # (batch, num_heads, cache_length, head_dim)
        value_cache = ops.where(write, value, value_cache)
        visible = (slots[None, :] <= positions[:, None])[:, None, :]  # (batch, 1, cache_length)
        h = self.self_attention.attend(query, key_cache, value_cache, visible)
        return self.feed_forward(x + h), key_cache, value_cache
