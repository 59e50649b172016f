"""The stacked-LSTM language model, the recurrent baseline for the GPT models."""

import keras
from keras import ops

from keras_llm.models.lstm_backbone import LSTMBackbone
from keras_llm.models.task import Task


@keras.saving.register_keras_serializable(package="keras_llm")
class LSTMLanguageModel(Task):
    """`LSTMBackbone -> Dense(vocabulary_size)`: next-token logits at every position.

    The classic word/character-level LSTM language model (Zaremba et al. 2014), with the same
    inputs and loss as `GPTLanguageModel`.

    Args:
        backbone: a unidirectional `LSTMBackbone`.
        **kwargs: passed to `keras.Model`.

    Call arguments:
        inputs: dict `{"token_ids": int32 (batch, seq_len), "padding_mask": bool (batch,
            seq_len)}` (`keras_llm.data.features`); any `seq_len`.
        training: bool, whether dropout is active.

    Returns:
        float32 logits `(batch, seq_len, vocabulary_size)`; position `t` depends only on
        `token_ids[:, :t + 1]`.

    Raises:
        TypeError: `backbone` is not an `LSTMBackbone`.
        ValueError: `backbone` is bidirectional (it would see the tokens it must predict).
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(backbone, LSTMBackbone):
            raise TypeError(
                f"backbone must be an LSTMBackbone; received {type(backbone).__name__}.")
        if backbone.bidirectional:
            raise ValueError("A language model needs a causal backbone; received an LSTMBackbone "
                             "with bidirectional=True.")
        self.backbone = backbone
        self.output_projection = keras.layers.Dense(
            self.vocabulary_size, dtype=self.dtype_policy, name="output_projection"
        )

    def build(self, input_shape):
        if not self.backbone.built:  # A deserialized backbone comes built.
            self.backbone.build(input_shape)
        self.output_projection.build(self.backbone.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        hidden = self.backbone(inputs, training=training)  # (batch, seq_len, hidden_dim)
        logits = self.output_projection(hidden)  # (batch, seq_len, vocabulary_size)
        return ops.cast(logits, "float32")

    max_context = None  # The state carries the whole history: no context window.

    @property
    def vocabulary_size(self):
        return self.backbone.vocabulary_size

    def prefill(self, token_ids, padding_mask, cache_length=None):
        """Logits of right-padded prompts and the LSTM state after each (`cache_length` unused).

        Returns:
            `(logits float32 (batch, prompt_len, vocabulary_size), state)`.
        """
        del cache_length
        hidden, state = self.backbone.prefill(token_ids, padding_mask)
        return ops.cast(self.output_projection(hidden), "float32"), state

    def decode_step(self, token_ids, positions, state):
        """Next-token logits for one new token per row (`positions` unused: the state is the
        history).

        Returns:
            `(logits float32 (batch, vocabulary_size), state)`.
        """
        del positions
        hidden, state = self.backbone.decode_step(token_ids, state)
        return ops.cast(self.output_projection(hidden[:, 0, :]), "float32"), state

    def compute_output_shape(self, input_shape):
        return (*self.backbone.compute_output_shape(input_shape)[:-1], self.vocabulary_size)
