"""The GPT language model: a `GPTBackbone` and a projection to next-token logits.

With `tie_embeddings=True` (GPT-2, nanoGPT) the output projection is the transpose of the token
embedding table (Press & Wolf 2017, "Using the Output Embedding to Improve Language Models"):
the backbone's token embedding is a `keras.layers.ReversibleEmbedding`, and the head calls it
with `reverse=True`. With `tie_embeddings=False` it is a separate bias-free
`Dense(vocabulary_size)` (nanoGPT's `lm_head` has no bias either).
"""

import keras
from keras import ops

from keras_llm.layers.initializers import gpt2_normal
from keras_llm.models.task import Task
from keras_llm.models.transformer_backbone import GPTBackbone


@keras.saving.register_keras_serializable(package="keras_llm")
class GPTLanguageModel(Task):
    """Next-token logits from a `GPTBackbone`.

    Args:
        backbone: a `GPTBackbone` (unbuilt or built).
        tie_embeddings: bool, whether the output projection reuses the token embedding table.
        **kwargs: passed to `keras.Model`.

    Call arguments:
        inputs: dict `{"token_ids": int32 (batch, seq_len), "padding_mask": bool (batch,
            seq_len)}` with `seq_len <= backbone.sequence_length` (`keras_llm.data.features`).
        training: bool, whether dropout is active.

    Returns:
        float32 logits `(batch, seq_len, vocabulary_size)`; position `t` scores token `t + 1`
        and depends only on `token_ids[:, :t + 1]`. Always float32, also under mixed precision,
        so the loss is computed in float32.

    Raises:
        TypeError: `backbone` is not a `GPTBackbone`.
    """

    def __init__(self, backbone, tie_embeddings=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(backbone, GPTBackbone):
            raise TypeError(f"backbone must be a GPTBackbone; received {type(backbone).__name__}.")
        self.backbone = backbone
        self.tie_embeddings = bool(tie_embeddings)
        self.output_projection = None
        if not self.tie_embeddings:
            self.output_projection = keras.layers.Dense(
                self.vocabulary_size,
                use_bias=False,
                kernel_initializer=gpt2_normal(),
                dtype=self.dtype_policy,
                name="output_projection",
            )

    def build(self, input_shape):
        if not self.backbone.built:  # A deserialized backbone comes built.
            self.backbone.build(input_shape)
        if self.output_projection is not None:
            ids_shape = self.backbone.compute_output_shape(input_shape)
            self.output_projection.build(ids_shape)

    def call(self, inputs, training=None):
        hidden = self.backbone(inputs, training=training)  # (batch, seq_len, hidden_dim)
        # (batch, seq_len, vocabulary_size): hidden @ embeddings^T when tied.
        return self._logits(hidden)

    def _logits(self, hidden):
        if self.tie_embeddings:
            return ops.cast(self.backbone.token_embedding(hidden, reverse=True), "float32")
        return ops.cast(self.output_projection(hidden), "float32")

    @property
    def vocabulary_size(self):
        return self.backbone.vocabulary_size

    @property
    def sequence_length(self):
        return self.backbone.sequence_length

    @property
    def max_context(self):
        """The most tokens one prediction conditions on: the position table's length."""
        return self.backbone.sequence_length

    def prefill(self, token_ids, padding_mask, cache_length):
        """Logits of a right-padded prompt and the key/value cache (see `GPTBackbone.prefill`).

        Returns:
            `(logits float32 (batch, prompt_len, vocabulary_size), cache)`.
        """
        hidden, cache = self.backbone.prefill(token_ids, padding_mask, cache_length)
        return self._logits(hidden), cache

    def decode_step(self, token_ids, positions, cache):
        """Next-token logits for one new token per row (see `GPTBackbone.decode_step`).

        Returns:
            `(logits float32 (batch, vocabulary_size), cache)`.
        """
        hidden, cache = self.backbone.decode_step(token_ids, positions, cache)
        return self._logits(hidden)[:, 0, :], cache

    def compute_output_shape(self, input_shape):
        return (*self.backbone.compute_output_shape(input_shape)[:-1], self.vocabulary_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tie_embeddings": self.tie_embeddings,
            }
        )
        return config
