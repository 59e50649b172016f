"""A bidirectional Transformer encoder with mean pooling and a classification head."""


import keras
from keras import ops

from keras_llm.layers.initializers import gpt2_normal
from keras_llm.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_llm.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_llm.layers.transformer_stack import gpt2_block_stack
from keras_llm.layers.validation import check_dropout_rate
from keras_llm.layers.validation import check_positive_int
from keras_llm.models.classifier_inputs import classifier_output_dim
from keras_llm.models.classifier_inputs import unpack_classifier_inputs


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerClassifier(keras.Model):
    """Token + position embedding -> encoder blocks -> LayerNorm -> masked mean pool -> Dense.

    The blocks are `GPTBackbone`'s blocks without the causal mask (pre-LayerNorm, GPT-2 init
    with residual projections scaled by `1 / sqrt(2 * num_layers)`), so the LSTM and Transformer
    classifiers differ only in the sequence model. Padded positions are masked as attention keys
    and excluded from the mean, so trailing padding changes no logit.

    Args:
        vocabulary_size: int, number of token ids (0 is padding).
        sequence_length: int, the longest sequence the model accepts.
        num_layers: int, number of encoder blocks.
        num_heads: int, attention heads per block; must divide `hidden_dim`.
        hidden_dim: int, model width.
        intermediate_dim: int or `None`, MLP width; `None` means `4 * hidden_dim`.
        dropout: float in [0, 1), dropout on embeddings, attention probabilities, residual
            branches and the pooled vector.
        num_classes: int >= 2; 2 gives one sigmoid logit, more give `num_classes` softmax logits.
        token_dropout: float in [0, 1), word dropout (Iyyer et al. 2015): during training each
            token's embedding is zeroed with this probability (the rest scaled by 1 / (1 - rate)).
        layer_norm_epsilon: float, epsilon of every LayerNorm.
        **kwargs: passed to `keras.Model`.

    Call arguments:
        inputs: dict with `"token_ids"`, int32 `(batch, seq_len)` with `seq_len <=
            sequence_length`, and `"padding_mask"`, bool `(batch, seq_len)` True at real tokens.
        training: bool, whether dropout is active.

    Returns:
        float32 logits `(batch, 1)` when `num_classes == 2`, else `(batch, num_classes)`.
        A row with no real token pools to zeros and gets finite logits (the head's bias).

    Raises:
        ValueError: at construction for bad sizes or `hidden_dim % num_heads != 0`; at call
            time if `inputs` lacks a key or `seq_len > sequence_length`.
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim=None,
        dropout=0.1,
        num_classes=2,
        layer_norm_epsilon=1e-5,
        token_dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.intermediate_dim = check_positive_int(
            "intermediate_dim",
            4 * self.hidden_dim if intermediate_dim is None else intermediate_dim,
        )
        self.dropout = check_dropout_rate(dropout)
        self.token_dropout = check_dropout_rate(token_dropout, "token_dropout")
        output_dim = classifier_output_dim(num_classes)
        self.num_classes = int(num_classes)
        self.layer_norm_epsilon = float(layer_norm_epsilon)

        self.embedding = TokenAndPositionEmbedding(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            hidden_dim=self.hidden_dim,
            embeddings_initializer=gpt2_normal(),
            dtype=self.dtype_policy,
            name="embedding",
        )
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )
        # Word dropout (Iyyer et al. 2015): zero whole token embeddings, one draw per token.
        self.token_dropout_layer = keras.layers.Dropout(
            self.token_dropout, noise_shape=(None, None, 1), dtype=self.dtype_policy,
            name="token_dropout",
        )
        # GPT-2's depth-scaled init of the residual projections (see keras_llm.models.gpt).
        self.encoder_blocks = gpt2_block_stack(
            TransformerEncoderBlock,
            self.num_layers,
            "encoder_block",
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
        self.classification_head = keras.layers.Dense(
            output_dim,
            kernel_initializer=gpt2_normal(),
            dtype=self.dtype_policy,
            name="classification_head",
        )

    def build(self, input_shape):
        token_ids_shape = input_shape["token_ids"]  # (batch, seq_len)
        hidden_shape = (*token_ids_shape, self.hidden_dim)  # (batch, seq_len, hidden_dim)
        self.embedding.build(token_ids_shape)
        for block in self.encoder_blocks:
            block.build(hidden_shape)
        self.final_layer_norm.build(hidden_shape)
        self.classification_head.build((token_ids_shape[0], self.hidden_dim))

    def call(self, inputs, training=None):
        token_ids, padding_mask = unpack_classifier_inputs(inputs, "TransformerClassifier")
        x = self.embedding(token_ids)  # (batch, seq_len, hidden_dim)
        x = self.token_dropout_layer(x, training=training)
        x = self.dropout_layer(x, training=training)
        for block in self.encoder_blocks:
            # (batch, seq_len, hidden_dim)
            x = block(x, padding_mask=padding_mask, training=training)
        x = self.final_layer_norm(x)

        # Mean over real tokens only; the max(., 1) keeps an all-padding row at 0 / 1 = 0, not NaN.
        weights = ops.expand_dims(ops.cast(padding_mask, x.dtype), axis=-1)  # (batch, seq_len, 1)
        num_tokens = ops.maximum(ops.sum(weights, axis=1), 1.0)  # (batch, 1)
        pooled = ops.sum(x * weights, axis=1) / num_tokens  # (batch, hidden_dim)
        pooled = self.dropout_layer(pooled, training=training)
        logits = self.classification_head(pooled)  # (batch, 1) or (batch, num_classes)
        return ops.cast(logits, "float32")

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
                "num_classes": self.num_classes,
                "token_dropout": self.token_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
