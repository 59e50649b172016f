"""A pre-LayerNorm Transformer block with bidirectional self-attention (GPT-2's block layout)."""

import keras
from keras import ops

from keras_llm.layers.initializers import clone_initializer
from keras_llm.layers.initializers import resolve_initializer
from keras_llm.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_llm.layers.replica_invariant_dropout import ReplicaInvariantDropout
from keras_llm.layers.validation import check_dropout_rate
from keras_llm.layers.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerEncoderBlock(keras.layers.Layer):
    """`x + Attention(LN(x))`, then `x + MLP(LN(x))`; every token may attend to every real token.

    The pre-LayerNorm layout is GPT-2's (Radford et al. 2019, sec. 2.3; nanoGPT `Block`): each
    sublayer reads a normalized copy of the residual stream and adds its output back. The MLP
    is `Dense(intermediate_dim) -> GELU -> Dense(hidden_dim)`, with GPT-2's tanh approximation
    of GELU (Hendrycks & Gimpel 2016). Dropout is applied to the attention probabilities and to
    each sublayer's output before the residual addition, as in nanoGPT.

    `TransformerDecoderBlock` is this block with a causal mask added.

    Args:
        num_heads: int, number of attention heads.
        hidden_dim: int, model width; must be divisible by `num_heads`.
        intermediate_dim: int, width of the MLP's hidden layer (GPT-2 uses `4 * hidden_dim`).
        dropout: float in [0, 1), dropout rate (attention probabilities and residual branches).
        layer_norm_epsilon: float, epsilon of both LayerNorms (1e-5 as in GPT-2).
        kernel_initializer: initializer of the attention input projection and the MLP's first
            layer; `None` means GPT-2's normal(0, 0.02).
        residual_kernel_initializer: initializer of the two projections that write into the
            residual stream (attention output, MLP output); `None` means normal(0, 0.02).
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        x: float tensor `(batch, seq_len, hidden_dim)`.
        padding_mask: optional bool tensor `(batch, seq_len)`, True at real tokens. Padded
            positions are masked as keys, so they change no real token's output.
        training: bool, whether dropout is active.

    Returns:
        Float tensor `(batch, seq_len, hidden_dim)`.

    Raises:
        ValueError: if `hidden_dim % num_heads != 0` (the message names both) or a size is
            not positive.
    """

    def __init__(
        self,
        num_heads,
        hidden_dim,
        intermediate_dim,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        kernel_initializer=None,
        residual_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.dropout = check_dropout_rate(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = resolve_initializer(kernel_initializer)
        self.residual_kernel_initializer = resolve_initializer(residual_kernel_initializer)

        # Validates num_heads and hidden_dim (divisibility included).
        self.self_attention = MultiHeadSelfAttention(
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            dropout=self.dropout,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            residual_kernel_initializer=clone_initializer(self.residual_kernel_initializer),
            dtype=self.dtype_policy,
            name="self_attention",
        )
        self.num_heads = self.self_attention.num_heads
        self.hidden_dim = self.self_attention.hidden_dim
        self.attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="attention_layer_norm"
        )
        self.attention_output_dropout = ReplicaInvariantDropout(
            self.dropout, dtype=self.dtype_policy, name="attention_output_dropout"
        )
        self.feed_forward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="feed_forward_layer_norm"
        )
        self.feed_forward_intermediate = keras.layers.Dense(
            self.intermediate_dim,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="feed_forward_intermediate",
        )
        self.feed_forward_output = keras.layers.Dense(
            self.hidden_dim,
            kernel_initializer=clone_initializer(self.residual_kernel_initializer),
            dtype=self.dtype_policy,
            name="feed_forward_output",
        )
        self.feed_forward_dropout = ReplicaInvariantDropout(
            self.dropout, dtype=self.dtype_policy, name="feed_forward_dropout"
        )

    def build(self, input_shape):
        intermediate_shape = (*input_shape[:-1], self.intermediate_dim)
        self.attention_layer_norm.build(input_shape)
        self.self_attention.build(input_shape)
        self.feed_forward_layer_norm.build(input_shape)
        self.feed_forward_intermediate.build(input_shape)
        self.feed_forward_output.build(intermediate_shape)

    def attention_mask(self, x, padding_mask):
        """Returns which keys each query may see: bool `(batch, 1, seq_len)` or `None`.

        Args:
            x: float tensor `(batch, seq_len, hidden_dim)` (unused here; the decoder needs it).
            padding_mask: optional bool tensor `(batch, seq_len)`, True at real tokens.
        """
        del x
        if padding_mask is None:
            return None
        return ops.expand_dims(ops.cast(padding_mask, "bool"), axis=1)  # (batch, 1, seq_len)

    def call(self, x, padding_mask=None, training=None):
        attention_mask = self.attention_mask(x, padding_mask)
        h = self.attention_layer_norm(x)  # (batch, seq_len, hidden_dim)
        h = self.self_attention(h, attention_mask=attention_mask, training=training)
        x = x + self.attention_output_dropout(h, training=training)  # (batch, seq_len, hidden_dim)
        return self.feed_forward(x, training=training)

    def feed_forward(self, x, training=None):
        """The second residual branch: `x + MLP(LN(x))`, `(batch, seq_len, hidden_dim)`."""
        h = self.feed_forward_layer_norm(x)
        h = self.feed_forward_intermediate(h)  # (batch, seq_len, intermediate_dim)
        # GPT-2 uses the tanh approximation of GELU ("gelu_new" in its released code).
        h = keras.activations.gelu(h, approximate=True)
        h = self.feed_forward_output(h)  # (batch, seq_len, hidden_dim)
        return x + self.feed_forward_dropout(h, training=training)  # (batch, seq_len, hidden_dim)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "residual_kernel_initializer": keras.initializers.serialize(
                    self.residual_kernel_initializer
                ),
            }
        )
        return config
