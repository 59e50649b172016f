"""Multi-head self-attention with one fused query/key/value projection (GPT-2's `c_attn`)."""

import math

import keras
from keras import ops

from keras_llm.layers.initializers import clone_initializer
from keras_llm.layers.initializers import resolve_initializer
from keras_llm.layers.replica_invariant_dropout import ReplicaInvariantDropout
from keras_llm.layers.validation import check_dropout_rate
from keras_llm.layers.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_llm")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Scaled dot-product self-attention over `num_heads` heads (Vaswani et al. 2017).

    One Dense layer projects the input to queries, keys and values at once, as GPT-2 and
    nanoGPT (`CausalSelfAttention.c_attn`) do; a second projects the concatenated heads back.
    Which keys a query may attend to is decided by the caller through `attention_mask`, so the
    same layer serves the causal decoder and the bidirectional encoder blocks.

    Args:
        num_heads: int, number of attention heads.
        hidden_dim: int, model width; must be divisible by `num_heads` (head size is
            `hidden_dim // num_heads`).
        dropout: float in [0, 1), dropout rate on the attention probabilities.
        kernel_initializer: initializer of the query/key/value kernel; `None` means GPT-2's
            normal(0, 0.02).
        residual_kernel_initializer: initializer of the output projection, which writes into
            the residual stream; `None` means normal(0, 0.02). GPT-style models pass a smaller
            one (see `keras_llm.models.gpt`).
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        x: float tensor `(batch, seq_len, hidden_dim)`.
        attention_mask: optional bool tensor broadcastable to `(batch, seq_len, seq_len)`;
            `attention_mask[b, i, j]` is True where query `i` may attend to key `j`. `None`
            lets every query attend to every key. A query whose keys are all masked attends
            uniformly (finite output) instead of producing NaN.
        training: bool, whether dropout is active.

    Returns:
        Float tensor `(batch, seq_len, hidden_dim)`.

    Raises:
        ValueError: if `hidden_dim` is not divisible by `num_heads`, or a size is not positive.
    """

    def __init__(
        self,
        num_heads,
        hidden_dim,
        dropout=0.0,
        kernel_initializer=None,
        residual_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        if self.hidden_dim % self.num_heads != 0:
            raise ValueError(
                "hidden_dim must be divisible by num_heads so that every head has the same size; "
                f"received hidden_dim={hidden_dim}, num_heads={num_heads}."
            )
        self.head_dim = self.hidden_dim // self.num_heads
        self.dropout = check_dropout_rate(dropout)
        self.kernel_initializer = resolve_initializer(kernel_initializer)
        self.residual_kernel_initializer = resolve_initializer(residual_kernel_initializer)

        self.query_key_value = keras.layers.Dense(
            3 * self.hidden_dim,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="query_key_value",
        )
        self.output_projection = keras.layers.Dense(
            self.hidden_dim,
            kernel_initializer=clone_initializer(self.residual_kernel_initializer),
            dtype=self.dtype_policy,
            name="output_projection",
        )
        self.attention_dropout = ReplicaInvariantDropout(
            self.dropout, dtype=self.dtype_policy, name="attention_dropout"
        )

    def build(self, input_shape):
        self.query_key_value.build(input_shape)
        self.output_projection.build(input_shape)

    def call(self, x, attention_mask=None, training=None):
        query, key, value = self.project_query_key_value(x)
        return self.attend(query, key, value, attention_mask, training=training)

    def project_query_key_value(self, x):
        """Projects `x` to per-head queries, keys and values (the cached decoder keeps the keys
        and values of earlier tokens).

        Args:
            x: float tensor `(batch, seq_len, hidden_dim)`.

        Returns:
            `(query, key, value)`, each `(batch, num_heads, seq_len, head_dim)`.
        """
        batch_size = ops.shape(x)[0]
        qkv = self.query_key_value(x)  # (batch, seq_len, 3 * hidden_dim): [query | key | value]

        def heads(projection):  # (batch, seq_len, hidden_dim) -> (batch, heads, seq_len, head_dim)
            projection = ops.reshape(projection, (batch_size, -1, self.num_heads, self.head_dim))
            return ops.transpose(projection, (0, 2, 1, 3))

        # A split, not three slices of one tensor: its gradient is one concatenation, where the
        # slices' gradients are three zero-padded copies summed.
        return tuple(heads(p) for p in ops.split(qkv, 3, axis=-1))

    def attend(self, query, key, value, attention_mask=None, training=None):
        """Scaled dot-product attention of `query` over `key`/`value`, then the output projection.

        Args:
            query: `(batch, num_heads, query_len, head_dim)`.
            key, value: `(batch, num_heads, key_len, head_dim)`.
            attention_mask: optional bool, broadcastable to `(batch, query_len, key_len)`.
            training: bool, whether dropout is active.

        Returns:
            Float tensor `(batch, query_len, hidden_dim)`.
        """
        batch_size = ops.shape(query)[0]
        key_transposed = ops.transpose(key, (0, 1, 3, 2))  # (batch, num_heads, head_dim, key_len)
        scores = ops.matmul(query, key_transposed)  # (batch, num_heads, query_len, key_len)
        # Softmax in float32 even under mixed precision, where float16 logits can overflow.
        scores = ops.cast(scores, "float32") / math.sqrt(self.head_dim)
        if attention_mask is not None:
            attention_mask = ops.cast(attention_mask, "bool")
            attention_mask = ops.expand_dims(attention_mask, axis=1)  # (batch, 1, query, key)
            # The most negative finite float32 rather than -inf: a fully masked row then gets a
            # uniform distribution instead of 0/0 = NaN, and masked keys get exactly 0 weight.
            scores = ops.where(attention_mask, scores, ops.cast(-3.4028235e38, "float32"))
        probs = ops.softmax(scores, axis=-1)  # (batch, num_heads, query_len, key_len)
        probs = ops.cast(probs, self.compute_dtype)
        probs = self.attention_dropout(probs, training=training)

        heads = ops.matmul(probs, value)  # (batch, num_heads, query_len, head_dim)
        heads = ops.transpose(heads, (0, 2, 1, 3))  # (batch, query_len, num_heads, head_dim)
        heads = ops.reshape(heads, (batch_size, -1, self.hidden_dim))  # (batch, query, hidden_dim)
        return self.output_projection(heads)  # (batch, query_len, hidden_dim)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "residual_kernel_initializer": keras.initializers.serialize(
                    self.residual_kernel_initializer
                ),
            }
        )
        return config
