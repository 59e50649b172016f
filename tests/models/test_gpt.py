import json

import keras
import numpy as np
import pytest

from keras_llm.models.gpt import GPTBackbone
from keras_llm.models.gpt import GPTLanguageModel

VOCABULARY_SIZE, SEQUENCE_LENGTH, NUM_LAYERS, NUM_HEADS, HIDDEN_DIM = 23, 10, 2, 2, 8


def _model(**kwargs):
    return GPTLanguageModel(
        vocabulary_size=VOCABULARY_SIZE,
        sequence_length=SEQUENCE_LENGTH,
        num_layers=NUM_LAYERS,
        num_heads=NUM_HEADS,
        hidden_dim=HIDDEN_DIM,
        **kwargs,
    )


def _token_ids(batch_size=2, seq_len=SEQUENCE_LENGTH, seed=0):
    return np.random.default_rng(seed).integers(0, VOCABULARY_SIZE, size=(batch_size, seq_len)).astype("int32")


def test_logits_shape_and_dtype():
    logits = _model()(_token_ids(seq_len=7))
    assert logits.shape == (2, 7, VOCABULARY_SIZE)
    assert logits.dtype == "float32"


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_is_causal(tie_embeddings):
    model = _model(tie_embeddings=tie_embeddings)
    token_ids = _token_ids()
    logits = model(token_ids).numpy()
    for k in (1, 4, 9):
        changed = token_ids.copy()
        changed[:, k:] = (changed[:, k:] + 1 + _token_ids(seed=k)[:, k:] % 5) % VOCABULARY_SIZE
        changed_logits = model(changed).numpy()
        np.testing.assert_allclose(changed_logits[:, :k], logits[:, :k], atol=1e-6)
        assert not np.allclose(changed_logits[:, k:], logits[:, k:], atol=1e-6)


def _expected_parameter_count(tie_embeddings, intermediate_dim):
    v, s, h, i = VOCABULARY_SIZE, SEQUENCE_LENGTH, HIDDEN_DIM, intermediate_dim
    embeddings = v * h + s * h
    per_block = (
        2 * h  # attention LayerNorm gamma, beta
        + h * 3 * h + 3 * h  # fused query/key/value kernel, bias
        + h * h + h  # attention output projection
        + 2 * h  # MLP LayerNorm
        + h * i + i  # MLP intermediate
        + i * h + h  # MLP output
    )
    final_layer_norm = 2 * h
    output_projection = 0 if tie_embeddings else h * v  # bias-free, like nanoGPT's lm_head
    return embeddings + NUM_LAYERS * per_block + final_layer_norm + output_projection


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_parameter_count(tie_embeddings):
    model = _model(tie_embeddings=tie_embeddings, intermediate_dim=12)
    model(_token_ids())
    assert model.count_params() == _expected_parameter_count(tie_embeddings, intermediate_dim=12)


def test_tied_model_has_no_output_kernel_and_uses_embedding_table():
    model = _model(tie_embeddings=True)
    token_ids = _token_ids()
    logits = model(token_ids).numpy()
    assert model.output_projection is None
    assert len(model.weights) == len(model.backbone.weights)  # no weight outside the backbone
    hidden = model.backbone(token_ids).numpy()  # (batch, seq_len, hidden_dim)
    table = model.backbone.embedding.token_embedding.embeddings.numpy()  # (vocabulary_size, hidden_dim)
    np.testing.assert_allclose(logits, hidden @ table.T, atol=1e-5)


def test_default_intermediate_dim_is_four_times_hidden_dim():
    assert _model().intermediate_dim == 4 * HIDDEN_DIM


def test_residual_projections_use_depth_scaled_init():
    model = GPTLanguageModel(
        vocabulary_size=VOCABULARY_SIZE, sequence_length=SEQUENCE_LENGTH, num_layers=8, num_heads=4, hidden_dim=128
    )
    model(_token_ids())
    block = model.backbone.transformer_blocks[0]
    residual_std = 0.02 / np.sqrt(2 * 8)  # GPT-2 / nanoGPT
    assert abs(block.self_attention.output_projection.kernel.numpy().std() - residual_std) < 0.1 * residual_std
    assert abs(block.feed_forward_output.kernel.numpy().std() - residual_std) < 0.1 * residual_std
    assert abs(block.self_attention.query_key_value.kernel.numpy().std() - 0.02) < 0.002


def test_indivisible_hidden_dim_raises_naming_both():
    with pytest.raises(ValueError, match=r"hidden_dim=9.*num_heads=2"):
        GPTLanguageModel(vocabulary_size=5, sequence_length=4, num_layers=1, num_heads=2, hidden_dim=9)


def test_too_long_input_raises():
    with pytest.raises(ValueError, match=f"sequence_length={SEQUENCE_LENGTH}"):
        _model()(_token_ids(seq_len=SEQUENCE_LENGTH + 1))


def test_backbone_right_padding_mask_changes_nothing_for_real_tokens():
    backbone = GPTBackbone(
        vocabulary_size=VOCABULARY_SIZE, sequence_length=SEQUENCE_LENGTH, num_layers=1, num_heads=2, hidden_dim=8
    )
    token_ids = _token_ids()
    padding_mask = np.array([[True] * 10, [True] * 6 + [False] * 4])
    np.testing.assert_allclose(
        backbone(token_ids, padding_mask=padding_mask).numpy()[1, :6], backbone(token_ids).numpy()[1, :6], atol=1e-6
    )


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_config_round_trip(tie_embeddings):
    model = _model(tie_embeddings=tie_embeddings, dropout=0.1)
    token_ids = _token_ids()
    logits = model(token_ids).numpy()
    config = model.get_config()
    json.dumps(config)
    restored = GPTLanguageModel.from_config(config)
    assert restored.get_config() == config
    restored(token_ids)
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(restored(token_ids).numpy(), logits, atol=1e-6)


def test_backbone_config_round_trip():
    backbone = GPTBackbone(
        vocabulary_size=VOCABULARY_SIZE, sequence_length=SEQUENCE_LENGTH, num_layers=1, num_heads=2, hidden_dim=8
    )
    token_ids = _token_ids()
    hidden = backbone(token_ids).numpy()
    restored = GPTBackbone.from_config(backbone.get_config())
    assert restored.get_config() == backbone.get_config()
    restored(token_ids)
    restored.set_weights(backbone.get_weights())
    np.testing.assert_allclose(restored(token_ids).numpy(), hidden, atol=1e-6)


def test_keras_file_save_and_load(tmp_path):
    model = _model(tie_embeddings=True)
    token_ids = _token_ids()
    logits = model(token_ids).numpy()
    path = tmp_path / "gpt.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, GPTLanguageModel)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded(token_ids).numpy(), logits, atol=1e-6)


def test_summary_after_call():
    model = _model()
    model(_token_ids())
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    assert any("backbone" in line for line in lines)


def test_mixed_precision_logits_are_float32_and_close_to_float32_model():
    mixed = _model(dtype="mixed_float16")
    token_ids = _token_ids()
    logits = mixed(token_ids)
    assert logits.dtype == "float32"
    assert mixed.backbone.transformer_blocks[0].self_attention.query_key_value.compute_dtype == "float16"
    reference = _model()
    reference(token_ids)
    reference.set_weights(mixed.get_weights())  # variables stay float32 under mixed precision
    np.testing.assert_allclose(logits.numpy(), reference(token_ids).numpy(), atol=1e-2)
