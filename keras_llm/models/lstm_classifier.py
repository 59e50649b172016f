"""The classic recurrent text classifier: Embedding -> (Bi)LSTM -> Dense."""

import keras
from keras import ops

from keras_llm.layers.validation import check_dropout_rate
from keras_llm.layers.validation import check_positive_int
from keras_llm.models.classifier_inputs import classifier_output_dim
from keras_llm.models.classifier_inputs import unpack_classifier_inputs


def _mask_without_empty_rows(padding_mask):
    """Unmasks position 0 of rows that have no real token; leaves every other row unchanged.

    Keras 3.15's cuDNN LSTM path (`keras/src/backend/tensorflow/rnn.py`, `_assert_valid_mask`)
    asserts that no row is fully masked. Eagerly the failed assertion is caught and Keras falls
    back to the generic kernel, but inside a `tf.function` it surfaces when the graph runs and
    fails the step (read from the source; GPU only, since on CPU cuDNN is never tried). With this
    mask an all-padding row (e.g. an empty review) reads one padding token, which gives it a
    finite, meaningless logit and changes nothing for the other rows.

    Args:
        padding_mask: bool tensor `(batch, seq_len)`, True at real tokens.

    Returns:
        bool tensor `(batch, seq_len)`.
    """
    has_tokens = ops.any(padding_mask, axis=1, keepdims=True)  # (batch, 1)
    positions = ops.arange(ops.shape(padding_mask)[1])  # (seq_len,)
    is_first_position = ops.expand_dims(positions == 0, axis=0)  # (1, seq_len)
    return ops.logical_or(
        padding_mask, ops.logical_and(ops.logical_not(has_tokens), is_first_position)
    )  # (batch, seq_len)


@keras.saving.register_keras_serializable(package="keras_llm")
class LSTMClassifier(keras.Model):
    """`Embedding -> dropout -> LSTM (or bidirectional LSTM) -> dropout -> Dense` on padded batches.

    The padding mask is passed to the LSTM, so padded steps leave the state untouched and a
    sequence classifies the same however much trailing padding it carries. The LSTM reads its
    final state (the last real token for each row). Dropout sits on the non-recurrent
    connections only (Zaremba et al. 2014), which keeps the LSTM on the cuDNN kernel on GPU.

    On GPU the cuDNN kernel requires right-padded masks (real tokens first, then padding), which
    is what the classification pipelines produce.

    Args:
        vocabulary_size: int, number of token ids (0 is padding).
        embedding_dim: int, token embedding size.
        hidden_dim: int, LSTM units (per direction when bidirectional).
        bidirectional: bool, whether to wrap the LSTM in `keras.layers.Bidirectional` (the
            forward and backward final states are concatenated, `2 * hidden_dim` features).
        dropout: float in [0, 1), dropout rate on the embeddings and on the LSTM's output.
        num_classes: int >= 2; 2 gives one sigmoid logit, more give `num_classes` softmax logits.
        token_dropout: float in [0, 1), word dropout (Iyyer et al. 2015): during training each
            token's embedding is zeroed with this probability (the rest scaled by 1 / (1 - rate)).
        **kwargs: passed to `keras.Model`.

    Call arguments:
        inputs: dict with `"token_ids"`, int32 `(batch, seq_len)`, and `"padding_mask"`, bool
            `(batch, seq_len)` True at real tokens (right padding).
        training: bool, whether dropout is active.

    Returns:
        float32 logits `(batch, 1)` when `num_classes == 2`, else `(batch, num_classes)`.
        A row with no real token gets finite logits.

    Raises:
        ValueError: at construction for bad sizes; at call time if `inputs` lacks a key.
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim=32,
        hidden_dim=64,
        bidirectional=False,
        dropout=0.0,
        num_classes=2,
        token_dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.bidirectional = bool(bidirectional)
        self.dropout = check_dropout_rate(dropout)
        self.token_dropout = check_dropout_rate(token_dropout, "token_dropout")
        output_dim = classifier_output_dim(num_classes)
        self.num_classes = int(num_classes)

        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size,
            self.embedding_dim,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        lstm = keras.layers.LSTM(self.hidden_dim, dtype=self.dtype_policy, name="lstm")
        if self.bidirectional:
            lstm = keras.layers.Bidirectional(
                lstm, dtype=self.dtype_policy, name="bidirectional_lstm"
            )
        self.lstm = lstm
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )
        # Word dropout (Iyyer et al. 2015): zero whole token embeddings, one draw per token.
        self.token_dropout_layer = keras.layers.Dropout(
            self.token_dropout, noise_shape=(None, None, 1), dtype=self.dtype_policy,
            name="token_dropout",
        )
        self.classification_head = keras.layers.Dense(
            output_dim, dtype=self.dtype_policy, name="classification_head"
        )

    def build(self, input_shape):
        token_ids_shape = input_shape["token_ids"]  # (batch, seq_len)
        self.token_embedding.build(token_ids_shape)
        self.lstm.build((*token_ids_shape, self.embedding_dim))
        lstm_output_dim = 2 * self.hidden_dim if self.bidirectional else self.hidden_dim
        self.classification_head.build((token_ids_shape[0], lstm_output_dim))

    def call(self, inputs, training=None):
        token_ids, padding_mask = unpack_classifier_inputs(inputs, "LSTMClassifier")
        x = self.token_embedding(token_ids)  # (batch, seq_len, embedding_dim)
        x = self.token_dropout_layer(x, training=training)
        x = self.dropout_layer(x, training=training)
        mask = _mask_without_empty_rows(padding_mask)  # (batch, seq_len)
        x = self.lstm(x, mask=mask, training=training)  # (batch, hidden_dim or 2 * hidden_dim)
        x = self.dropout_layer(x, training=training)
        logits = self.classification_head(x)  # (batch, 1) or (batch, num_classes)
        return ops.cast(logits, "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim,
                "bidirectional": self.bidirectional,
                "dropout": self.dropout,
                "num_classes": self.num_classes,
                "token_dropout": self.token_dropout,
            }
        )
        return config
