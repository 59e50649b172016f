"""GPT-2-style decoder-only Transformer: a backbone (ids -> hidden states) and a language model.

The architecture and initialization follow GPT-2 (Radford et al. 2019, "Language Models are
Unsupervised Multitask Learners", sec. 2.3) as re-implemented in nanoGPT's `model.py`:
learned position embeddings, pre-LayerNorm blocks, a final LayerNorm, weights drawn from
normal(0, 0.02), and the projections that write into the residual stream drawn from
normal(0, 0.02 / sqrt(2 * num_layers)) -- "a modified initialization which accounts for the
accumulation on the residual path with model depth" (two residual additions per block).
"""


import keras
from keras import ops

from keras_llm.layers.initializers import gpt2_normal
from keras_llm.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_llm.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_llm.layers.transformer_stack import gpt2_block_stack
from keras_llm.layers.validation import check_dropout_rate
from keras_llm.layers.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_llm")
class GPTBackbone(keras.Model):
    """Token ids to contextual hidden states with a stack of causal Transformer blocks.

    `token + position embedding -> dropout -> num_layers x TransformerDecoderBlock -> LayerNorm`.

    Args:
        vocabulary_size: int, number of token ids.
        sequence_length: int, the longest context the model accepts (rows of the position table).
        num_layers: int, number of Transformer blocks.
        num_heads: int, attention heads per block; must divide `hidden_dim`.
        hidden_dim: int, model width.
        intermediate_dim: int or `None`, MLP width; `None` means `4 * hidden_dim` (GPT-2).
        dropout: float in [0, 1), dropout on embeddings, attention probabilities and residual
            branches (nanoGPT's single `dropout`).
        layer_norm_epsilon: float, epsilon of every LayerNorm (1e-5 as in GPT-2).
        **kwargs: passed to `keras.Model` (`name`, `dtype`, ...).

    Call arguments:
        token_ids: int tensor `(batch, seq_len)`, `seq_len <= sequence_length`.
        padding_mask: optional bool tensor `(batch, seq_len)`, True at real tokens; padded
            positions are masked as keys. Unneeded for right-padded batches (causality already
            hides them from every real token).
        training: bool, whether dropout is active.

    Returns:
        Float tensor `(batch, seq_len, hidden_dim)`, the final LayerNorm's output.

    Raises:
        ValueError: if a size is not a positive int or `hidden_dim % num_heads != 0`.
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim=None,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        # GPT-2's MLP is four times as wide as the model.
        self.intermediate_dim = check_positive_int(
            "intermediate_dim",
            4 * self.hidden_dim if intermediate_dim is None else intermediate_dim,
        )
        self.dropout = check_dropout_rate(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)

        self.embedding = TokenAndPositionEmbedding(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            hidden_dim=self.hidden_dim,
            embeddings_initializer=gpt2_normal(),
            dtype=self.dtype_policy,
            name="embedding",
        )
        self.embedding_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        # GPT-2 sec. 2.3: residual projections drawn with std 0.02 / sqrt(2 * num_layers).
        self.transformer_blocks = gpt2_block_stack(
            TransformerDecoderBlock,
            self.num_layers,
            "transformer_block",
            num_heads=self.num_heads,
            hidden_dim=self.hidden_dim,
            intermediate_dim=self.intermediate_dim,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
        )
        self.final_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="final_layer_norm"
        )

    def build(self, input_shape):
        hidden_shape = (*input_shape, self.hidden_dim)  # (batch, seq_len, hidden_dim)
        self.embedding.build(input_shape)
        for block in self.transformer_blocks:
            block.build(hidden_shape)
        self.final_layer_norm.build(hidden_shape)

    def call(self, token_ids, padding_mask=None, training=None):
        x = self.embedding(token_ids)  # (batch, seq_len, hidden_dim)
        x = self.embedding_dropout(x, training=training)
        for block in self.transformer_blocks:
            # (batch, seq_len, hidden_dim)
            x = block(x, padding_mask=padding_mask, training=training)
        return self.final_layer_norm(x)  # (batch, seq_len, hidden_dim)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_llm")
class GPTLanguageModel(keras.Model):
    """`GPTBackbone` plus a projection to next-token logits over the vocabulary.

    With `tie_embeddings=True` (GPT-2, nanoGPT) the output projection is the transpose of the
    token embedding table (Press & Wolf 2017, "Using the Output Embedding to Improve Language
    Models"), so the model has no separate output kernel. With `tie_embeddings=False` it is a
    separate bias-free `Dense(vocabulary_size)` (nanoGPT's `lm_head` has no bias either).

    Args:
        vocabulary_size: int, number of token ids.
        sequence_length: int, the longest context the model accepts.
        num_layers: int, number of Transformer blocks.
        num_heads: int, attention heads per block; must divide `hidden_dim`.
        hidden_dim: int, model width.
        intermediate_dim: int or `None`, MLP width; `None` means `4 * hidden_dim`.
        dropout: float in [0, 1), dropout rate (see `GPTBackbone`).
        layer_norm_epsilon: float, epsilon of every LayerNorm.
        tie_embeddings: bool, whether the output projection reuses the token embedding table.
        **kwargs: passed to `keras.Model`.

    Call arguments:
        token_ids: int32 tensor `(batch, seq_len)`, `seq_len <= sequence_length`.
        training: bool, whether dropout is active.

    Returns:
        float32 logits `(batch, seq_len, vocabulary_size)`; position `t` scores token `t + 1`
        and depends only on `token_ids[:, :t + 1]`. Always float32, also under mixed precision,
        so the loss is computed in float32.

    Raises:
        ValueError: if a size is not a positive int or `hidden_dim % num_heads != 0`.
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim=None,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        tie_embeddings=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = GPTBackbone(
            vocabulary_size=vocabulary_size,
            sequence_length=sequence_length,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            layer_norm_epsilon=layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="backbone",
        )
        # The validated hyperparameters, for get_config and for callers (e.g. the sampler's crop).
        self.vocabulary_size = self.backbone.vocabulary_size
        self.sequence_length = self.backbone.sequence_length
        self.num_layers = self.backbone.num_layers
        self.num_heads = self.backbone.num_heads
        self.hidden_dim = self.backbone.hidden_dim
        self.intermediate_dim = self.backbone.intermediate_dim
        self.dropout = self.backbone.dropout
        self.layer_norm_epsilon = self.backbone.layer_norm_epsilon
        self.tie_embeddings = bool(tie_embeddings)
        if self.tie_embeddings:
            self.output_projection = None
        else:
            self.output_projection = keras.layers.Dense(
                self.vocabulary_size,
                use_bias=False,
                kernel_initializer=gpt2_normal(),
                dtype=self.dtype_policy,
                name="output_projection",
            )

    def build(self, input_shape):
        self.backbone.build(input_shape)
        if self.output_projection is not None:
            self.output_projection.build((*input_shape, self.hidden_dim))

    def call(self, token_ids, training=None):
        hidden = self.backbone(token_ids, training=training)  # (batch, seq_len, hidden_dim)
        if self.tie_embeddings:
            # (vocabulary_size, hidden_dim), read in the compute dtype under mixed precision.
            embeddings = ops.cast(self.backbone.embedding.token_embedding.embeddings, hidden.dtype)
            # (batch, seq_len, vocabulary_size)
            logits = ops.matmul(hidden, ops.transpose(embeddings))
        else:
            logits = self.output_projection(hidden)  # (batch, seq_len, vocabulary_size)
        return ops.cast(logits, "float32")

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.vocabulary_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "tie_embeddings": self.tie_embeddings,
            }
        )
        return config
