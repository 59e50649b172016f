"""Transformer backbones: token ids -> contextual hidden states, GPT-2's block stack.

`GPTBackbone` (causal, the language model's) and `TransformerEncoderBackbone` (bidirectional,
the classifier's) are one stack with a different block: token + position embedding, dropout,
`num_layers` pre-LayerNorm blocks, a final LayerNorm. The architecture and initialization follow
GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", sec. 2.3) as
re-implemented in nanoGPT's `model.py`: learned position embeddings, weights drawn from
normal(0, 0.02), and the projections that write into the residual stream drawn from
normal(0, 0.02 / sqrt(2 * num_layers)) (see `keras_llm.layers.transformer_stack`).
"""

import keras
from keras import ops

from keras_llm.layers.initializers import gpt2_normal
from keras_llm.layers.replica_invariant_dropout import ReplicaInvariantDropout
from keras_llm.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_llm.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_llm.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_llm.layers.transformer_stack import gpt2_block_stack
from keras_llm.layers.validation import check_dropout_rate
from keras_llm.layers.validation import check_positive_int
from keras_llm.data.features import token_ids_shape
from keras_llm.data.features import unpack_inputs


class TransformerBackbone(keras.Model):
    """The shared stack; use `GPTBackbone` or `TransformerEncoderBackbone`.

    `token + position embedding -> word dropout -> dropout -> num_layers x block -> LayerNorm`.

    Args:
        vocabulary_size: int, number of token ids.
        sequence_length: int, the longest context the model accepts (rows of the position table).
        num_layers: int, number of Transformer blocks.
        num_heads: int, attention heads per block; must divide `hidden_dim`.
        hidden_dim: int, model width.
        intermediate_dim: int or `None`, MLP width; `None` means `4 * hidden_dim` (GPT-2).
        dropout: float in [0, 1), dropout on embeddings, attention probabilities and residual
            branches (nanoGPT's single `dropout`).
        token_dropout: float in [0, 1), word dropout (Iyyer et al. 2015): during training each
            token's embedding is zeroed with this probability (the rest scaled by 1 / (1 - rate)).
        layer_norm_epsilon: float, epsilon of every LayerNorm (1e-5 as in GPT-2).
        **kwargs: passed to `keras.Model` (`name`, `dtype`, ...).

    Call arguments:
        inputs: dict with `"token_ids"`, int32 `(batch, seq_len)` with `seq_len <=
            sequence_length`, and `"padding_mask"`, bool `(batch, seq_len)`, True at real tokens
            (see `keras_llm.data.features`). Padded positions are masked as attention keys.
        training: bool, whether dropout is active.

    Returns:
        Float tensor `(batch, seq_len, hidden_dim)`, the final LayerNorm's output.

    Raises:
        ValueError: at construction if a size is not a positive int or `hidden_dim % num_heads
            != 0`; at call time if `inputs` lacks a key or `seq_len > sequence_length`.
    """

    block_class = None  # Set by the subclasses.

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim=None,
        dropout=0.0,
        token_dropout=0.0,
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
        self.token_dropout = check_dropout_rate(token_dropout, "token_dropout")
        self.layer_norm_epsilon = float(layer_norm_epsilon)

        self.embedding = TokenAndPositionEmbedding(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            hidden_dim=self.hidden_dim,
            embeddings_initializer=gpt2_normal(),
            dtype=self.dtype_policy,
            name="embedding",
        )
        # Word dropout: zero whole token embeddings, one draw per token.
        self.token_dropout_layer = ReplicaInvariantDropout(
            self.token_dropout, noise_shape=(None, None, 1), dtype=self.dtype_policy,
            name="token_dropout",
        )
        self.embedding_dropout = ReplicaInvariantDropout(
            self.dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        self.transformer_blocks = gpt2_block_stack(
            self.block_class,
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

    @property
    def token_embedding(self):
        """The `keras.layers.ReversibleEmbedding` a tied language-model head reuses."""
        return self.embedding.token_embedding

    def build(self, input_shape):
        ids_shape = token_ids_shape(input_shape, type(self).__name__)  # (batch, seq_len)
        hidden_shape = (*ids_shape, self.hidden_dim)  # (batch, seq_len, hidden_dim)
        self.embedding.build(ids_shape)
        for block in self.transformer_blocks:
            block.build(hidden_shape)
        self.final_layer_norm.build(hidden_shape)

    def call(self, inputs, training=None):
        token_ids, padding_mask = unpack_inputs(inputs, type(self).__name__)
        x = self.embedding(token_ids)  # (batch, seq_len, hidden_dim)
        x = self.token_dropout_layer(x, training=training)
        x = self.embedding_dropout(x, training=training)
        for block in self.transformer_blocks:
            # (batch, seq_len, hidden_dim)
            x = block(x, padding_mask=padding_mask, training=training)
        return self.final_layer_norm(x)  # (batch, seq_len, hidden_dim)

    def compute_output_shape(self, input_shape):
        return (*token_ids_shape(input_shape), self.hidden_dim)

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
                "token_dropout": self.token_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_llm")
class GPTBackbone(TransformerBackbone):
    """GPT-2's decoder-only stack: causal `TransformerDecoderBlock`s (see `TransformerBackbone`).

    The output at position `t` depends only on `token_ids[:, :t + 1]`. With right padding the
    padding mask changes no real token's output (causality already hides later positions); with
    left padding it keeps real tokens from attending to the padding.

    Cached decoding (`prefill`, then `decode_step` per new token) keeps every layer's keys and
    values in one tensor, `cache`: float `(num_layers, 2, batch, num_heads, cache_length,
    head_dim)` (2 = keys, values), so a new token costs one position's work instead of a pass
    over the whole context (the key/value cache of GPT-2's released sampler).
    """

    block_class = TransformerDecoderBlock

    def prefill(self, token_ids, padding_mask, cache_length):
        """Runs a right-padded prompt once and returns its hidden states and the filled cache.

        Args:
            token_ids: int32 `(batch, prompt_len)`, `prompt_len <= cache_length <=
                sequence_length`.
            padding_mask: bool `(batch, prompt_len)`, True at real tokens (right padding).
            cache_length: int, slots per layer (the longest context decoding will reach).

        Returns:
            `(hidden (batch, prompt_len, hidden_dim), cache)`; cache slots `>= prompt_len`
            are zeros.
        """
        x = self.embedding(token_ids)  # (batch, prompt_len, hidden_dim)
        caches = []
        for block in self.transformer_blocks:
            x, key, value = block.prefill(x, padding_mask)  # key, value (b, heads, prompt, d)
            pad = cache_length - ops.shape(key)[2]
            padding = [[0, 0], [0, 0], [0, pad], [0, 0]]
            caches.append(ops.stack([ops.pad(key, padding), ops.pad(value, padding)]))
        return self.final_layer_norm(x), ops.stack(caches)

    def decode_step(self, token_ids, positions, cache):
        """One new token per row at `positions`, reading and extending `cache`.

        Args:
            token_ids: int32 `(batch, 1)`.
            positions: int32 `(batch,)`, each row's position of the token (< cache_length).
            cache: the `prefill` / previous `decode_step` cache.

        Returns:
            `(hidden (batch, 1, hidden_dim), cache)`.
        """
        x = self.embedding.embed_at(token_ids, positions[:, None])  # (batch, 1, hidden_dim)
        caches = []
        for index, block in enumerate(self.transformer_blocks):
            x, key, value = block.decode_step(x, cache[index, 0], cache[index, 1], positions)
            caches.append(ops.stack([key, value]))
        return self.final_layer_norm(x), ops.stack(caches)


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerEncoderBackbone(TransformerBackbone):
    """A bidirectional encoder: `TransformerEncoderBlock`s with GPT-2's layout and init.

    Every real token attends to every real token; padded positions are masked as keys, so
    trailing padding changes no real token's output (see `TransformerBackbone`).
    """

    block_class = TransformerEncoderBlock
