"""NumPy reference of the pre-LayerNorm Transformer block, written from the equations (no Keras).

    h = x + W_o . Attention(LN_1(x)) ;  y = h + W_2 . gelu_tanh(W_1 . LN_2(h))
    Attention(z) = concat_heads(softmax(q k^T / sqrt(head_dim) + mask) v),  [q k v] = z W_qkv
"""

import numpy as np


def layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def gelu_tanh(x):
    # Hendrycks & Gimpel 2016, eq. for the tanh approximation used by GPT-2.
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def block_weights(block):
    """Reads a TransformerEncoderBlock/TransformerDecoderBlock's weights into a dict of arrays."""
    attention = block.self_attention
    return {
        "ln1_gamma": block.attention_layer_norm.gamma.numpy(),
        "ln1_beta": block.attention_layer_norm.beta.numpy(),
        "qkv_kernel": attention.query_key_value.kernel.numpy(),
        "qkv_bias": attention.query_key_value.bias.numpy(),
        "out_kernel": attention.output_projection.kernel.numpy(),
        "out_bias": attention.output_projection.bias.numpy(),
        "ln2_gamma": block.feed_forward_layer_norm.gamma.numpy(),
        "ln2_beta": block.feed_forward_layer_norm.beta.numpy(),
        "fc1_kernel": block.feed_forward_intermediate.kernel.numpy(),
        "fc1_bias": block.feed_forward_intermediate.bias.numpy(),
        "fc2_kernel": block.feed_forward_output.kernel.numpy(),
        "fc2_bias": block.feed_forward_output.bias.numpy(),
    }


def transformer_block(x, weights, num_heads, epsilon, causal, padding_mask=None):
    """Returns the block output for `x` (batch, seq_len, hidden_dim), looping over batch and heads.

    `padding_mask` (batch, seq_len) bool masks keys; `causal` hides keys j > i from query i. A
    causal query left with no key (left padding) attends to itself alone.
    """
    batch_size, seq_len, hidden_dim = x.shape
    head_dim = hidden_dim // num_heads
    out = np.zeros_like(x, dtype=np.float64)
    for b in range(batch_size):
        z = layer_norm(x[b], weights["ln1_gamma"], weights["ln1_beta"], epsilon)
        qkv = z @ weights["qkv_kernel"] + weights["qkv_bias"]  # (seq_len, 3 * hidden_dim)
        q, k, v = qkv[:, :hidden_dim], qkv[:, hidden_dim : 2 * hidden_dim], qkv[:, 2 * hidden_dim :]
        allowed = np.ones((seq_len, seq_len), bool)
        if causal:
            allowed &= np.tril(np.ones((seq_len, seq_len), bool))
        if padding_mask is not None:
            allowed &= padding_mask[b][None, :]
        if causal:
            empty = ~allowed.any(axis=1)
            allowed[empty, np.flatnonzero(empty)] = True
        heads = []
        for h in range(num_heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            scores = q[:, cols] @ k[:, cols].T / np.sqrt(head_dim)
            scores = np.where(allowed, scores, -1e30)
            heads.append(softmax(scores) @ v[:, cols])
        attended = np.concatenate(heads, axis=-1) @ weights["out_kernel"] + weights["out_bias"]
        h1 = x[b] + attended
        z = layer_norm(h1, weights["ln2_gamma"], weights["ln2_beta"], epsilon)
        mlp = gelu_tanh(z @ weights["fc1_kernel"] + weights["fc1_bias"]) @ weights["fc2_kernel"] + weights["fc2_bias"]
        out[b] = h1 + mlp
    return out


def randomize_weights(layer, seed, scale=0.3):
    """Overwrites every weight of `layer` with normal(0, scale) noise (LayerNorm gammas around 1),
    so zero biases or unit gammas cannot hide a mistake."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        values = rng.normal(0.0, scale, size=weight.shape)
        if weight.name == "gamma":
            values += 1.0
        weight.assign(values.astype(np.float32))
