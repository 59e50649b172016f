import keras
import numpy as np
import tensorflow as tf

from keras_llm import config as config_lib
from keras_llm.data.features import model_inputs
from keras_llm.evaluation.attention_maps import (CELL_PIXELS, HEAD_GAP, attention_image,
                                                 transformer_trace)
from keras_llm.models.builders import build_language_model


def _layer_norm(x, layer):
    gamma, beta = (w.numpy() for w in (layer.gamma, layer.beta))
    mean, variance = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta


def test_trace_matches_a_numpy_attention_and_the_backbone_output():
    keras.utils.set_random_seed(3)
    config = config_lib.ModelConfig(num_layers=2, num_heads=2, hidden_dim=8, sequence_length=6)
    model = build_language_model(config, vocabulary_size=11)
    token_ids = tf.constant([[3, 1, 4, 1, 5, 9]], tf.int32)
    inputs = model_inputs(token_ids)
    model(inputs)
    backbone = model.backbone
    trace = transformer_trace(backbone, inputs)
    assert len(trace) == 2

    x = np.asarray(backbone.embedding(token_ids))  # (1, 6, 8)
    for block, (hidden, probs) in zip(backbone.transformer_blocks, trace):
        attention = block.self_attention
        kernel, bias = (w.numpy() for w in attention.query_key_value.weights)
        qkv = _layer_norm(x, block.attention_layer_norm) @ kernel + bias  # (1, 6, 24)
        query = qkv[0, :, :8].reshape(6, 2, 4).transpose(1, 0, 2)  # (heads, 6, 4)
        key = qkv[0, :, 8:16].reshape(6, 2, 4).transpose(1, 0, 2)
        scores = query @ key.transpose(0, 2, 1) / 2.0  # sqrt(head_dim = 4)
        scores = np.where(np.tril(np.ones((6, 6), bool)), scores, -np.inf)  # causal
        expected = np.exp(scores - scores.max(-1, keepdims=True))
        expected /= expected.sum(-1, keepdims=True)
        np.testing.assert_allclose(probs[0], expected, rtol=1e-4, atol=1e-6)
        x = np.asarray(block(tf.constant(x), training=False))
        np.testing.assert_allclose(hidden, x, rtol=1e-5, atol=1e-6)
    # The last block's output, normalized, is the backbone's output.
    np.testing.assert_allclose(np.asarray(backbone.final_layer_norm(trace[-1][0])),
                               np.asarray(backbone(inputs)), rtol=1e-5, atol=1e-5)


def test_image_tiles_heads_left_to_right_with_white_gaps():
    probs = np.zeros((2, 3, 3), np.float32)
    probs[0] = np.eye(3)
    probs[1, :, 0] = 1.0  # Head 1: every query looks at the first token.
    image = attention_image(probs)
    side = 3 * CELL_PIXELS
    assert image.shape == (1, side, 2 * side + HEAD_GAP, 3)
    head0, gap, head1 = image[0, :, :side], image[0, :, side:side + HEAD_GAP], image[0, :, -side:]
    np.testing.assert_array_equal(gap, 1.0)
    one, zero = head0[0, 0], head0[0, -1]  # viridis(1) is yellow, viridis(0) dark purple.
    assert one[0] > 0.9 and one[1] > 0.9 and zero[0] < 0.3
    np.testing.assert_array_equal(head0[-1, -1], one)  # The diagonal.
    np.testing.assert_array_equal(head1[-1, 0], one)
    np.testing.assert_array_equal(head1[0, -1], zero)
