import json

import keras
import numpy as np
import pytest

from keras_llm.data.features import model_inputs
from keras_llm.models.gpt import GPTLanguageModel
from keras_llm.models.transformer_backbone import GPTBackbone

VOCABULARY_SIZE, SEQUENCE_LENGTH, NUM_LAYERS, NUM_HEADS, HIDDEN_DIM = 23, 10, 2, 2, 8


def _backbone(**kwargs):
    defaults = dict(vocabulary_size=VOCABULARY_SIZE, sequence_length=SEQUENCE_LENGTH,
                    num_layers=NUM_LAYERS, num_heads=NUM_HEADS, hidden_dim=HIDDEN_DIM)
    return GPTBackbone(**{**defaults, **kwargs})


def _model(tie_embeddings=True, **backbone_kwargs):
    return GPTLanguageModel(_backbone(**backbone_kwargs), tie_embeddings=tie_embeddings)


def _token_ids(batch_size=2, seq_len=SEQUENCE_LENGTH, seed=0):
    return np.random.default_rng(seed).integers(0, VOCABULARY_SIZE, size=(batch_size, seq_len)).astype("int32")


def _inputs(**kwargs):
    return model_inputs(_token_ids(**kwargs))


def test_logits_shape_and_dtype():
    logits = _model()(_inputs(seq_len=7))
    assert logits.shape == (2, 7, VOCABULARY_SIZE)
    assert logits.dtype == "float32"


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_is_causal(tie_embeddings):
    model = _model(tie_embeddings=tie_embeddings)
    token_ids = _token_ids()
    logits = model(model_inputs(token_ids)).numpy()
    for k in (1, 4, 9):
        changed = token_ids.copy()
        changed[:, k:] = (changed[:, k:] + 1 + _token_ids(seed=k)[:, k:] % 5) % VOCABULARY_SIZE
        changed_logits = model(model_inputs(changed)).numpy()
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
    model(_inputs())
    assert model.count_params() == _expected_parameter_count(tie_embeddings, intermediate_dim=12)


def test_tied_model_has_no_output_kernel_and_uses_embedding_table():
    model = _model(tie_embeddings=True)
    inputs = _inputs()
    logits = model(inputs).numpy()
    assert model.output_projection is None
    assert len(model.weights) == len(model.backbone.weights)  # no weight outside the backbone
    assert isinstance(model.backbone.token_embedding, keras.layers.ReversibleEmbedding)
    hidden = model.backbone(inputs).numpy()  # (batch, seq_len, hidden_dim)
    table = model.backbone.embedding.token_embedding.embeddings.numpy()  # (vocabulary_size, hidden_dim)
    np.testing.assert_allclose(logits, hidden @ table.T, atol=1e-5)


def test_default_intermediate_dim_is_four_times_hidden_dim():
    assert _model().backbone.intermediate_dim == 4 * HIDDEN_DIM


def test_residual_projections_use_depth_scaled_init():
    model = _model(num_layers=8, num_heads=4, hidden_dim=128)
    model(_inputs())
    block = model.backbone.transformer_blocks[0]
    residual_std = 0.02 / np.sqrt(2 * 8)  # GPT-2 / nanoGPT
    assert abs(block.self_attention.output_projection.kernel.numpy().std() - residual_std) < 0.1 * residual_std
    assert abs(block.feed_forward_output.kernel.numpy().std() - residual_std) < 0.1 * residual_std
    assert abs(block.self_attention.query_key_value.kernel.numpy().std() - 0.02) < 0.002


def test_indivisible_hidden_dim_raises_naming_both():
    with pytest.raises(ValueError, match=r"hidden_dim=9.*num_heads=2"):
        GPTBackbone(vocabulary_size=5, sequence_length=4, num_layers=1, num_heads=2, hidden_dim=9)


def test_too_long_input_raises():
    with pytest.raises(ValueError, match=f"sequence_length={SEQUENCE_LENGTH}"):
        _model()(_inputs(seq_len=SEQUENCE_LENGTH + 1))


def test_backbone_right_padding_mask_changes_nothing_for_real_tokens():
    backbone = _backbone(num_layers=1)
    token_ids = _token_ids()
    padding_mask = np.array([[True] * 10, [True] * 6 + [False] * 4])
    np.testing.assert_allclose(
        backbone(model_inputs(token_ids, padding_mask)).numpy()[1, :6],
        backbone(model_inputs(token_ids)).numpy()[1, :6],
        atol=1e-6,
    )


def test_left_padding_mask_keeps_real_tokens_from_the_padding():
    backbone = _backbone(num_layers=1)
    row = _token_ids(batch_size=1, seq_len=6)
    padded = np.concatenate([np.full((1, 4), 3, "int32"), row], axis=1)  # 4 pad tokens on the left
    mask = np.array([[False] * 4 + [True] * 6])
    # Real tokens see only real tokens, but positions shift by 4: compare against the same
    # positions with other pad ids, which must change nothing.
    other = padded.copy()
    other[:, :4] = 7
    hidden = backbone(model_inputs(padded, mask)).numpy()[:, 4:]
    np.testing.assert_allclose(backbone(model_inputs(other, mask)).numpy()[:, 4:], hidden, atol=1e-6)
    assert not np.allclose(backbone(model_inputs(other)).numpy()[:, 4:], hidden, atol=1e-6)


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_config_round_trip(tie_embeddings):
    model = _model(tie_embeddings=tie_embeddings, dropout=0.1)
    inputs = _inputs()
    logits = model(inputs).numpy()
    config = model.get_config()
    json.dumps(config)
    assert config["backbone"]["config"]["num_layers"] == NUM_LAYERS  # nested, KerasHub style
    restored = GPTLanguageModel.from_config(config)
    assert restored.get_config() == config
    restored(inputs)
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(restored(inputs).numpy(), logits, atol=1e-6)


def test_backbone_config_round_trip():
    backbone = _backbone(num_layers=1)
    inputs = _inputs()
    hidden = backbone(inputs).numpy()
    restored = GPTBackbone.from_config(backbone.get_config())
    assert restored.get_config() == backbone.get_config()
    restored(inputs)
    restored.set_weights(backbone.get_weights())
    np.testing.assert_allclose(restored(inputs).numpy(), hidden, atol=1e-6)


def test_keras_file_save_and_load(tmp_path):
    model = _model(tie_embeddings=True)
    inputs = _inputs()
    logits = model(inputs).numpy()
    path = tmp_path / "gpt.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, GPTLanguageModel)
    # (JSON turns the nested build shapes' tuples into lists.)
    assert json.loads(json.dumps(loaded.get_config())) == json.loads(json.dumps(model.get_config()))
    np.testing.assert_allclose(loaded(inputs).numpy(), logits, atol=1e-6)


def test_summary_after_call():
    model = _model()
    model(_inputs())
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    assert any("backbone" in line for line in lines)


def test_mixed_precision_logits_are_float32_and_close_to_float32_model():
    mixed = _model(dtype="mixed_float16")
    inputs = _inputs()
    logits = mixed(inputs)
    assert logits.dtype == "float32"
    assert mixed.backbone.transformer_blocks[0].self_attention.query_key_value.compute_dtype == "float16"
    reference = _model()
    reference(inputs)
    reference.set_weights(mixed.get_weights())  # variables stay float32 under mixed precision
    np.testing.assert_allclose(logits.numpy(), reference(inputs).numpy(), atol=1e-2)


def test_checkpoint_paths_of_the_previous_layout_are_kept():
    """Weight paths below the model are what checkpoints name: GPT runs of 0.1 still resume."""
    from keras_llm.config import ModelConfig
    from keras_llm.models.builders import build_language_model
    model = build_language_model(ModelConfig(num_layers=1, num_heads=2, hidden_dim=8,
                                             sequence_length=SEQUENCE_LENGTH), VOCABULARY_SIZE)
    model(_inputs())
    names = sorted(v.path.split("/", 1)[1] for v in model.weights)
    assert names[:3] == ["backbone/embedding/position_embedding/embeddings",
                         "backbone/embedding/token_embedding/embeddings",
                         "backbone/final_layer_norm/beta"]
    assert "backbone/transformer_block_0/self_attention/query_key_value/kernel" in names


def test_rejects_a_backbone_of_another_kind():
    from keras_llm.models.lstm_backbone import LSTMBackbone
    with pytest.raises(TypeError, match="GPTBackbone"):
        GPTLanguageModel(LSTMBackbone(vocabulary_size=5, hidden_dim=4))


def test_bare_token_ids_are_refused_naming_the_contract():
    with pytest.raises(ValueError, match="padding_mask"):
        _model()(_token_ids())
