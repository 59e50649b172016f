"""Pools a padded sequence of hidden states into one vector per sequence, over real tokens only."""

import keras
from keras import ops

POOLING_MODES = ("mean", "last_token", "bidirectional_final_states")


@keras.saving.register_keras_serializable(package="keras_llm")
class SequencePooling(keras.layers.Layer):
    """`(batch, seq_len, hidden_dim)` hidden states -> `(batch, hidden_dim)`, ignoring padding.

    Modes:
        - `"mean"`: the mean over real tokens (an encoder's bag of contextual vectors). An
          all-padding row pools to zeros.
        - `"last_token"`: the state at each row's last real token: what a causal model (GPT, a
          forward LSTM) has computed after reading the whole text. Padding must be on the right;
          an all-padding row takes position 0.
        - `"bidirectional_final_states"`: for a bidirectional RNN whose features are
          `[forward, backward]` halves: the forward half at the last real token concatenated
          with the backward half at position 0, i.e. each direction's final state (what
          `keras.layers.Bidirectional(return_sequences=False)` returns; Schuster & Paliwal 1997).

    Args:
        mode: one of `POOLING_MODES`.
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        hidden_states: float tensor `(batch, seq_len, hidden_dim)`.
        padding_mask: bool tensor `(batch, seq_len)`, True at real tokens (right padding).

    Returns:
        Float tensor `(batch, hidden_dim)`.

    Raises:
        ValueError: an unknown `mode`.
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}; received mode={mode!r}.")
        self.mode = mode
        # Accepts the Keras mask an LSTM attaches to its outputs (the padding mask is passed
        # explicitly), and attaches none to the pooled vectors.
        self.supports_masking = True

    def call(self, hidden_states, padding_mask):
        padding_mask = ops.cast(padding_mask, "bool")
        if self.mode == "mean":
            # The max(., 1) keeps an all-padding row at 0 / 1 = 0 rather than NaN.
            weights = ops.expand_dims(ops.cast(padding_mask, hidden_states.dtype), -1)  # (b, t, 1)
            num_tokens = ops.maximum(ops.sum(weights, axis=1), 1.0)  # (batch, 1)
            return ops.sum(hidden_states * weights, axis=1) / num_tokens  # (batch, hidden_dim)
        last = ops.maximum(ops.sum(ops.cast(padding_mask, "int32"), axis=1) - 1, 0)  # (batch,)
        # (batch, hidden_dim): the row of each sequence's last real token.
        at_last = ops.take_along_axis(hidden_states, last[:, None, None], axis=1)[:, 0, :]
        if self.mode == "last_token":
            return at_last
        half = ops.shape(hidden_states)[-1] // 2
        forward = at_last[:, :half]  # (batch, hidden_dim / 2)
        backward = hidden_states[:, 0, half:]  # (batch, hidden_dim / 2)
        return ops.concatenate([forward, backward], axis=-1)  # (batch, hidden_dim)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
