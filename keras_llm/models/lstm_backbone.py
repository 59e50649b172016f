"""The recurrent backbone of both LSTM baselines: token ids -> hidden states per position."""

import keras
from keras import ops

from keras_llm.layers.precomputed_input_lstm import PrecomputedInputLSTM
from keras_llm.layers.replica_invariant_dropout import ReplicaInvariantDropout
from keras_llm.layers.validation import check_dropout_rate
from keras_llm.layers.validation import check_positive_int
from keras_llm.data.features import token_ids_shape
from keras_llm.data.features import unpack_inputs


def _mask_without_empty_rows(padding_mask):
    """Unmasks position 0 of rows that have no real token; leaves every other row unchanged.

    Keras 3.15's cuDNN LSTM path (`keras/src/backend/tensorflow/rnn.py`, `_assert_valid_mask`)
    asserts that no row is fully masked. Eagerly the failed assertion is caught and Keras falls
    back to the generic kernel, but inside a `tf.function` it surfaces when the graph runs and
    fails the step (read from the source; GPU only, since on CPU cuDNN is never tried). With this
    mask an all-padding row (e.g. an empty review) reads one padding token, which gives it a
    finite, meaningless output and changes nothing for the other rows.

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
class LSTMBackbone(keras.Model):
    """`Embedding -> word dropout -> dropout -> num_layers x (LSTM -> dropout)`, every position.

    Dropout sits on the non-recurrent connections only (Zaremba et al. 2014, "Recurrent Neural
    Network Regularization"): the embedding output and each LSTM layer's output. The recurrent
    connections stay dropout-free, which also keeps the layers on the fused cuDNN kernel on GPU.
    Weights use Keras's LSTM defaults (Glorot-uniform input kernel, orthogonal recurrent kernel,
    forget-gate bias 1 as recommended by Jozefowicz et al. 2015). The layers are
    `PrecomputedInputLSTM`s: `keras.layers.LSTM` with the input projection of all positions
    done before the time loop (the same weights and outputs, a faster step on CPU).

    The padding mask is passed to every LSTM, so padded steps leave the state untouched. On GPU
    the cuDNN kernel requires right padding (real tokens first), which every keras_llm pipeline
    produces.

    Args:
        vocabulary_size: int, number of token ids (0 is padding).
        hidden_dim: int, units of every LSTM layer (per direction when bidirectional).
        num_layers: int, number of stacked LSTM layers.
        embedding_dim: int or `None`, token embedding size; `None` means `hidden_dim`.
        bidirectional: bool, wrap each LSTM in `keras.layers.Bidirectional`; the output is then
            `[forward, backward]`, `2 * hidden_dim` features (not causal: for classifiers only).
        dropout: float in [0, 1), dropout rate on the non-recurrent connections.
        token_dropout: float in [0, 1), word dropout (Iyyer et al. 2015): during training each
            token's embedding is zeroed with this probability (the rest scaled by 1 / (1 - rate)).
        **kwargs: passed to `keras.Model`.

    Call arguments:
        inputs: dict `{"token_ids": int32 (batch, seq_len), "padding_mask": bool (batch,
            seq_len)}` (`keras_llm.data.features`); any `seq_len`.
        training: bool, whether dropout is active.

    Returns:
        Float tensor `(batch, seq_len, output_dim)`, `output_dim = hidden_dim` (or
        `2 * hidden_dim` when bidirectional). Unidirectional: position `t` depends only on
        `token_ids[:, :t + 1]`.

    Raises:
        ValueError: if a size is not a positive int or a rate is outside [0, 1).
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_layers=1,
        embedding_dim=None,
        bidirectional=False,
        dropout=0.0,
        token_dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.embedding_dim = check_positive_int(
            "embedding_dim", self.hidden_dim if embedding_dim is None else embedding_dim
        )
        self.bidirectional = bool(bidirectional)
        self.dropout = check_dropout_rate(dropout)
        self.token_dropout = check_dropout_rate(token_dropout, "token_dropout")
        self.output_dim = 2 * self.hidden_dim if self.bidirectional else self.hidden_dim

        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size, self.embedding_dim, dtype=self.dtype_policy,
            name="token_embedding",
        )
        # Word dropout: zero whole token embeddings, one draw per token.
        self.token_dropout_layer = ReplicaInvariantDropout(
            self.token_dropout, noise_shape=(None, None, 1), dtype=self.dtype_policy,
            name="token_dropout",
        )
        self.lstm_layers = []
        for i in range(self.num_layers):
            lstm = PrecomputedInputLSTM(
                self.hidden_dim, return_sequences=True, dtype=self.dtype_policy, name=f"lstm_{i}"
            )
            if self.bidirectional:
                lstm = keras.layers.Bidirectional(
                    lstm, dtype=self.dtype_policy, name=f"bidirectional_lstm_{i}"
                )
            self.lstm_layers.append(lstm)
        # One Dropout layer applied at several places: it has no weights, only a seed generator.
        self.dropout_layer = ReplicaInvariantDropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )

    def build(self, input_shape):
        ids_shape = token_ids_shape(input_shape, type(self).__name__)  # (batch, seq_len)
        self.token_embedding.build(ids_shape)
        feature_dim = self.embedding_dim
        for lstm in self.lstm_layers:
            lstm.build((*ids_shape, feature_dim))  # (batch, seq_len, features)
            feature_dim = self.output_dim

    def call(self, inputs, training=None):
        token_ids, padding_mask = unpack_inputs(inputs, type(self).__name__)
        x = self.token_embedding(token_ids)  # (batch, seq_len, embedding_dim)
        x = self.token_dropout_layer(x, training=training)
        x = self.dropout_layer(x, training=training)
        mask = _mask_without_empty_rows(padding_mask)  # (batch, seq_len)
        for lstm in self.lstm_layers:
            x = lstm(x, mask=mask, training=training)  # (batch, seq_len, output_dim)
            x = self.dropout_layer(x, training=training)
        return x

    # ----------------------------------------------- stateful decoding (unidirectional, no dropout)

    def prefill(self, token_ids, padding_mask):
        """Reads right-padded prompts; returns their outputs and each layer's final state.

        Args:
            token_ids: int32 `(batch, prompt_len)`.
            padding_mask: bool `(batch, prompt_len)`, True at real tokens (right padding): a
                row's state is the one after its last real token.

        Returns:
            `(hidden (batch, prompt_len, hidden_dim), state)`, state float `(num_layers, 2,
            batch, hidden_dim)` (2 = the LSTM's h and c).
        """
        x = self.token_embedding(token_ids)  # (batch, prompt_len, embedding_dim)
        mask = _mask_without_empty_rows(ops.cast(padding_mask, "bool"))
        zeros = ops.zeros((ops.shape(token_ids)[0], self.hidden_dim), x.dtype)  # (batch, hidden)
        states = []
        for lstm in self.lstm_layers:
            _, x, (h, c) = lstm.inner_loop(x, [zeros, zeros], mask)  # x (b, prompt, hidden)
            states.append(ops.stack([h, c]))
        return x, ops.stack(states)

    def decode_step(self, token_ids, state):
        """One new token per row, from and to the per-layer `state` of `prefill`.

        Args:
            token_ids: int32 `(batch, 1)`.
            state: float `(num_layers, 2, batch, hidden_dim)`.

        Returns:
            `(hidden (batch, 1, hidden_dim), state)`.
        """
        x = self.token_embedding(token_ids)[:, 0, :]  # (batch, embedding_dim)
        states = []
        for index, lstm in enumerate(self.lstm_layers):
            x, (h, c) = lstm.cell(x, [state[index, 0], state[index, 1]])  # x (batch, hidden)
            states.append(ops.stack([h, c]))
        return x[:, None, :], ops.stack(states)

    def compute_output_shape(self, input_shape):
        return (*token_ids_shape(input_shape), self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "embedding_dim": self.embedding_dim,
                "bidirectional": self.bidirectional,
                "dropout": self.dropout,
                "token_dropout": self.token_dropout,
            }
        )
        return config
