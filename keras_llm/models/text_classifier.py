"""A text classifier on any backbone: backbone -> pooling over real tokens -> dropout -> Dense."""

import numbers

import keras
from keras import ops

from keras_llm.data.features import unpack_inputs
from keras_llm.layers.replica_invariant_dropout import ReplicaInvariantDropout
from keras_llm.layers.sequence_pooling import SequencePooling
from keras_llm.layers.validation import check_dropout_rate
from keras_llm.models.task import Task


def classifier_output_dim(num_classes):
    """Returns 1 for two classes (one sigmoid logit) and `num_classes` otherwise (softmax logits).

    Args:
        num_classes: int >= 2.

    Raises:
        ValueError: if `num_classes` is not an int >= 2.
    """
    is_int = isinstance(num_classes, numbers.Integral) and not isinstance(num_classes, bool)
    if not is_int or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; received num_classes={num_classes!r}.")
    return 1 if num_classes == 2 else int(num_classes)


@keras.saving.register_keras_serializable(package="keras_llm")
class TextClassifier(Task):
    """Class logits from any backbone's hidden states, pooled over real tokens only.

    The builder pairs each backbone with its usual pooling: a Transformer encoder's tokens are
    averaged (`"mean"`), an LSTM reads its final state (`"last_token"`, or
    `"bidirectional_final_states"` for a bidirectional LSTM: the classic Embedding -> LSTM ->
    Dense baseline), and a GPT backbone would use its last token. Padded positions are excluded,
    so trailing padding changes no logit.

    Args:
        backbone: a keras_llm backbone (`TransformerEncoderBackbone`, `LSTMBackbone`,
            `GPTBackbone`) mapping the input dict to `(batch, seq_len, hidden_dim)`.
        num_classes: int >= 2; 2 gives one sigmoid logit, more give `num_classes` softmax logits.
        pooling: a `SequencePooling` mode: "mean", "last_token" or "bidirectional_final_states".
        dropout: float in [0, 1), dropout on the pooled vector.
        kernel_initializer: the head kernel's initializer (a Keras name, config or instance);
            the builder gives a Transformer GPT-2's normal(0, 0.02), an LSTM Keras's default.
        **kwargs: passed to `keras.Model`.

    Call arguments:
        inputs: dict `{"token_ids": int32 (batch, seq_len), "padding_mask": bool (batch,
            seq_len)}` (`keras_llm.data.features`), right-padded.
        training: bool, whether dropout is active.

    Returns:
        float32 logits `(batch, 1)` when `num_classes == 2`, else `(batch, num_classes)`.
        A row with no real token gets finite logits.

    Raises:
        ValueError: at construction for a bad `num_classes`, `pooling` or rate; at call time if
            `inputs` lacks a key.
    """

    def __init__(self, backbone, num_classes=2, pooling="mean", dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        output_dim = classifier_output_dim(num_classes)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.dropout = check_dropout_rate(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.pooling = SequencePooling(pooling, dtype=self.dtype_policy, name="pooling")
        self.pooled_dropout = ReplicaInvariantDropout(
            self.dropout, dtype=self.dtype_policy, name="pooled_dropout"
        )
        self.classification_head = keras.layers.Dense(
            output_dim,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="classification_head",
        )

    def build(self, input_shape):
        if not self.backbone.built:  # A deserialized backbone comes built.
            self.backbone.build(input_shape)
        hidden_shape = self.backbone.compute_output_shape(input_shape)
        self.classification_head.build((hidden_shape[0], hidden_shape[-1]))

    def call(self, inputs, training=None):
        _, padding_mask = unpack_inputs(inputs, type(self).__name__)
        hidden = self.backbone(inputs, training=training)  # (batch, seq_len, hidden_dim)
        pooled = self.pooling(hidden, padding_mask)  # (batch, hidden_dim)
        pooled = self.pooled_dropout(pooled, training=training)
        logits = self.classification_head(pooled)  # (batch, 1) or (batch, num_classes)
        return ops.cast(logits, "float32")

    def compute_output_shape(self, input_shape):
        batch = self.backbone.compute_output_shape(input_shape)[0]
        return (batch, classifier_output_dim(self.num_classes))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "pooling": self.pooling.mode,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
