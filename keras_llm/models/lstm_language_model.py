"""A stacked-LSTM word/character language model, the recurrent baseline for the GPT models."""

import keras
from keras import ops

from keras_llm.layers.validation import check_dropout_rate
from keras_llm.layers.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_llm")
class LSTMLanguageModel(keras.Model):
    """`Embedding -> num_layers x LSTM -> Dense(vocabulary_size)`: next-token logits at every step.

    Dropout is applied only to the non-recurrent connections (the embedding output, between
    LSTM layers and before the output projection), as in Zaremba et al. 2014, "Recurrent Neural
    Network Regularization"; the recurrent connections stay dropout-free, which also keeps the
    LSTM layers eligible for the fused cuDNN kernel on GPU. Weights use Keras's LSTM defaults
    (Glorot-uniform input kernel, orthogonal recurrent kernel, forget-gate bias 1 as
    recommended by Jozefowicz et al. 2015).

    Args:
        vocabulary_size: int, number of token ids.
        hidden_dim: int, units of every LSTM layer.
        num_layers: int, number of stacked LSTM layers.
        dropout: float in [0, 1), dropout rate on the non-recurrent connections.
        embedding_dim: int or `None`, token embedding size; `None` means `hidden_dim`.
        **kwargs: passed to `keras.Model`.

    Call arguments:
        token_ids: int32 tensor `(batch, seq_len)`; any `seq_len`.
        training: bool, whether dropout is active.

    Returns:
        float32 logits `(batch, seq_len, vocabulary_size)`; position `t` depends only on
        `token_ids[:, :t + 1]`.

    Raises:
        ValueError: if a size is not a positive int or `dropout` is outside [0, 1).
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_layers,
        dropout=0.0,
        embedding_dim=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.embedding_dim = check_positive_int(
            "embedding_dim", self.hidden_dim if embedding_dim is None else embedding_dim
        )
        self.dropout = check_dropout_rate(dropout)

        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size,
            self.embedding_dim,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.lstm_layers = [
            keras.layers.LSTM(
                self.hidden_dim, return_sequences=True, dtype=self.dtype_policy, name=f"lstm_{i}"
            )
            for i in range(self.num_layers)
        ]
        # One Dropout layer applied at several places: it has no weights, only a seed generator.
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )
        self.output_projection = keras.layers.Dense(
            self.vocabulary_size, dtype=self.dtype_policy, name="output_projection"
        )

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        feature_dim = self.embedding_dim
        for lstm in self.lstm_layers:
            lstm.build((*input_shape, feature_dim))  # (batch, seq_len, features)
            feature_dim = self.hidden_dim
        self.output_projection.build((*input_shape, self.hidden_dim))

    def call(self, token_ids, training=None):
        x = self.token_embedding(token_ids)  # (batch, seq_len, embedding_dim)
        x = self.dropout_layer(x, training=training)
        for lstm in self.lstm_layers:
            x = lstm(x, training=training)  # (batch, seq_len, hidden_dim)
            x = self.dropout_layer(x, training=training)
        logits = self.output_projection(x)  # (batch, seq_len, vocabulary_size)
        return ops.cast(logits, "float32")

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.vocabulary_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "dropout": self.dropout,
                "embedding_dim": self.embedding_dim,
            }
        )
        return config
