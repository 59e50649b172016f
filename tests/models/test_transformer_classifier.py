import json

import numpy as np
import pytest

from keras_llm.models.transformer_classifier import TransformerClassifier
from tests.models import classifier_checks


def _model(**kwargs):
    defaults = dict(vocabulary_size=12, sequence_length=12, num_layers=2, num_heads=2, hidden_dim=8)
    return TransformerClassifier(**{**defaults, **kwargs})


def test_trailing_padding_changes_nothing():
    classifier_checks.check_trailing_padding_changes_nothing(_model())


@pytest.mark.parametrize("num_classes", [2, 4])
def test_all_padding_row_changes_nothing(num_classes):
    classifier_checks.check_all_padding_row_changes_nothing(_model(num_classes=num_classes))


def test_output_shape_and_dtype():
    inputs = classifier_checks.classifier_inputs([[1, 2], [3]], seq_len=4)
    assert _model()(inputs).shape == (2, 1)
    logits = _model(num_classes=3)(inputs)
    assert logits.shape == (2, 3)
    assert logits.dtype == "float32"


def test_pooling_is_mean_over_real_tokens():
    model = _model(num_layers=1)
    inputs = classifier_checks.classifier_inputs([[3, 1, 4], [1, 5]], seq_len=6)
    logits = model(inputs).numpy()
    hidden = model.embedding(inputs["token_ids"])
    for block in model.encoder_blocks:
        hidden = block(hidden, padding_mask=inputs["padding_mask"])
    hidden = model.final_layer_norm(hidden).numpy()  # (batch, seq_len, hidden_dim)
    pooled = np.stack([hidden[0, :3].mean(0), hidden[1, :2].mean(0)])
    head = model.classification_head
    expected = pooled @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_indivisible_hidden_dim_raises_naming_both():
    with pytest.raises(ValueError, match=r"hidden_dim=10.*num_heads=4"):
        _model(hidden_dim=10, num_heads=4)


def test_config_round_trip():
    model = _model(num_classes=3, intermediate_dim=16)
    json.dumps(model.get_config())
    classifier_checks.check_config_round_trip(
        model, TransformerClassifier, classifier_checks.classifier_inputs([[1, 2, 3], [4]], seq_len=5)
    )


def test_keras_file_round_trip(tmp_path):
    classifier_checks.check_keras_file_round_trip(
        _model(), classifier_checks.classifier_inputs([[1, 2, 3], [4]], seq_len=5), tmp_path / "transformer.keras"
    )
