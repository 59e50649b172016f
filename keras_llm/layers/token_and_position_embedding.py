"""Token embeddings plus learned absolute position embeddings, as in GPT-2."""

import keras
import tensorflow as tf
from keras import ops

from keras_llm.layers.initializers import clone_initializer
from keras_llm.layers.initializers import resolve_initializer
from keras_llm.layers.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_llm")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Sums a token embedding and a learned position embedding (GPT-2's `wte` + `wpe`).

    Position `t` of every sequence gets row `t` of a trainable `(sequence_length, hidden_dim)`
    table, so a sequence may be at most `sequence_length` tokens long.

    Args:
        vocabulary_size: int, number of token ids; ids must lie in `[0, vocabulary_size)`.
        sequence_length: int, the longest sequence the layer accepts (rows of the position table).
        hidden_dim: int, size of each embedding vector.
        embeddings_initializer: initializer of both tables. `None` (the default) means
            normal(0, 0.02), GPT-2's and nanoGPT's init; a Keras name, config dict or
            initializer instance is also accepted.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        token_ids: int tensor `(batch, seq_len)` with `seq_len <= sequence_length`.

    Returns:
        Float tensor `(batch, seq_len, hidden_dim)` in the layer's compute dtype.

    Raises:
        ValueError: at construction if a size is not a positive integer; at call time if
            `seq_len > sequence_length` (an `InvalidArgumentError` when `seq_len` is only known
            while the graph runs).
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        hidden_dim,
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.embeddings_initializer = resolve_initializer(embeddings_initializer)

        # Reversible, so a tied language-model head can project onto the vocabulary with it.
        self.token_embedding = keras.layers.ReversibleEmbedding(
            self.vocabulary_size,
            self.hidden_dim,
            embeddings_initializer=clone_initializer(self.embeddings_initializer),
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.position_embedding = keras.layers.Embedding(
            self.sequence_length,
            self.hidden_dim,
            embeddings_initializer=clone_initializer(self.embeddings_initializer),
            dtype=self.dtype_policy,
            name="position_embedding",
        )

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.position_embedding.build((self.sequence_length,))

    def call(self, token_ids):
        seq_len = ops.shape(token_ids)[1]
        message = (
            f"TokenAndPositionEmbedding '{self.name}': token_ids has more positions than "
            f"sequence_length={self.sequence_length}; crop the input to the last "
            f"{self.sequence_length} tokens."
        )
        if isinstance(seq_len, int):
            if seq_len > self.sequence_length:
                raise ValueError(f"{message} Received seq_len={seq_len}.")
        else:
            # The length is only known when the graph runs. An out-of-range gather fails on CPU
            # but silently returns zeros on GPU, so check explicitly.
            tf.debugging.assert_less_equal(seq_len, self.sequence_length, message=message)
        positions = ops.arange(seq_len)  # (seq_len,)
        position_vectors = self.position_embedding(positions)  # (seq_len, hidden_dim)
        token_vectors = self.token_embedding(token_ids)  # (batch, seq_len, hidden_dim)
        return token_vectors + position_vectors[None, :, :]  # (batch, seq_len, hidden_dim)

    def embed_at(self, token_ids, positions):
        """Embeds tokens at explicit positions (the cached decoder's one new token per row).

        Args:
            token_ids: int tensor `(batch, seq_len)`.
            positions: int tensor `(batch, seq_len)`, each in `[0, sequence_length)`; the caller
                guarantees the range (the decoder never passes the context).

        Returns:
            Float tensor `(batch, seq_len, hidden_dim)`.
        """
        # (batch, seq_len, hidden_dim) each
        return self.token_embedding(token_ids) + self.position_embedding(positions)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "hidden_dim": self.hidden_dim,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config
