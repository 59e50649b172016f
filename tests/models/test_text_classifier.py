import json

import keras
import numpy as np
import pytest

from keras_llm.data.features import model_inputs
from keras_llm.models.lstm_backbone import LSTMBackbone
from keras_llm.models.lstm_backbone import _mask_without_empty_rows
from keras_llm.models.text_classifier import TextClassifier
from keras_llm.models.transformer_backbone import GPTBackbone
from keras_llm.models.transformer_backbone import TransformerEncoderBackbone
from tests.models import classifier_checks

# Each backbone with the pooling the builder pairs it with (plus a GPT backbone: a classifier can
# be built on any backbone).
CLASSIFIERS = {
    "lstm": lambda **kw: TextClassifier(
        LSTMBackbone(vocabulary_size=12, embedding_dim=6, hidden_dim=5), pooling="last_token", **kw),
    "bilstm": lambda **kw: TextClassifier(
        LSTMBackbone(vocabulary_size=12, embedding_dim=6, hidden_dim=5, bidirectional=True),
        pooling="bidirectional_final_states", **kw),
    "transformer": lambda **kw: TextClassifier(
        TransformerEncoderBackbone(vocabulary_size=12, sequence_length=12, num_layers=2,
                                   num_heads=2, hidden_dim=8), pooling="mean", **kw),
    "gpt": lambda **kw: TextClassifier(
        GPTBackbone(vocabulary_size=12, sequence_length=12, num_layers=1, num_heads=2,
                    hidden_dim=8), pooling="last_token", **kw),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_trailing_padding_changes_nothing(name):
    classifier_checks.check_trailing_padding_changes_nothing(CLASSIFIERS[name]())


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_all_padding_row_changes_nothing(name):
    classifier_checks.check_all_padding_row_changes_nothing(CLASSIFIERS[name](num_classes=3))


@pytest.mark.parametrize("num_classes, output_dim", [(2, 1), (5, 5)])
def test_output_shape(num_classes, output_dim):
    logits = CLASSIFIERS["lstm"](num_classes=num_classes)(
        classifier_checks.classifier_inputs([[1, 2], [3]], seq_len=4))
    assert logits.shape == (2, output_dim)
    assert logits.dtype == "float32"


def test_bilstm_parameter_count():
    model = CLASSIFIERS["bilstm"]()
    model(classifier_checks.classifier_inputs([[1, 2]], seq_len=3))
    v, e, h = 12, 6, 5
    lstm = 4 * (e * h + h * h + h)
    assert model.count_params() == v * e + 2 * lstm + (2 * h + 1)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_classifier_equals_the_classic_final_state_model(bidirectional):
    """Embedding -> (Bi)LSTM(return_sequences=False) -> Dense, built with plain Keras layers."""
    pooling = "bidirectional_final_states" if bidirectional else "last_token"
    model = CLASSIFIERS["bilstm" if bidirectional else "lstm"](num_classes=3)
    inputs = classifier_checks.classifier_inputs([[1, 2, 3, 4], [5, 6], [7]], seq_len=6)
    logits = model(inputs).numpy()
    assert model.get_config()["pooling"] == pooling
    embedding = keras.layers.Embedding(12, 6)
    lstm = keras.layers.LSTM(5)
    if bidirectional:
        lstm = keras.layers.Bidirectional(lstm)
    head = keras.layers.Dense(3)
    x = lstm(embedding(inputs["token_ids"]), mask=inputs["padding_mask"])
    head(x)
    embedding.set_weights(model.backbone.token_embedding.get_weights())
    lstm.set_weights(model.backbone.lstm_layers[0].get_weights())
    head.set_weights(model.classification_head.get_weights())
    reference = head(lstm(embedding(inputs["token_ids"]), mask=inputs["padding_mask"])).numpy()
    np.testing.assert_allclose(logits, reference, atol=1e-6)


def test_transformer_pooling_is_mean_over_real_tokens():
    model = CLASSIFIERS["transformer"]()
    inputs = classifier_checks.classifier_inputs([[3, 1, 4], [1, 5]], seq_len=6)
    logits = model(inputs).numpy()
    hidden = model.backbone(inputs).numpy()  # (batch, seq_len, hidden_dim)
    pooled = np.stack([hidden[0, :3].mean(0), hidden[1, :2].mean(0)])
    head = model.classification_head
    expected = pooled @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_empty_rows_get_one_unmasked_step_only():
    mask = np.array([[True, True, False], [False, False, False]])
    expected = np.array([[True, True, False], [True, False, False]])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(_mask_without_empty_rows(mask)), expected)


def test_missing_input_key_raises():
    with pytest.raises(ValueError, match="padding_mask"):
        CLASSIFIERS["lstm"]()({"token_ids": np.ones((1, 3), "int32")})


def test_bad_num_classes_and_pooling_raise():
    with pytest.raises(ValueError, match="num_classes"):
        CLASSIFIERS["lstm"](num_classes=1)
    with pytest.raises(ValueError, match="pooling"):
        TextClassifier(LSTMBackbone(vocabulary_size=5, hidden_dim=4), pooling="max")


def test_indivisible_hidden_dim_raises_naming_both():
    with pytest.raises(ValueError, match=r"hidden_dim=10.*num_heads=4"):
        TransformerEncoderBackbone(vocabulary_size=5, sequence_length=4, num_layers=1,
                                   num_heads=4, hidden_dim=10)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_config_round_trip(name):
    model = CLASSIFIERS[name](num_classes=3, dropout=0.2)
    config = model.get_config()
    json.dumps(config)
    classifier_checks.check_config_round_trip(
        model, TextClassifier, classifier_checks.classifier_inputs([[1, 2, 3], [4]], seq_len=5))


@pytest.mark.parametrize("name", ["bilstm", "transformer"])
def test_keras_file_round_trip(name, tmp_path):
    classifier_checks.check_keras_file_round_trip(
        CLASSIFIERS[name](), classifier_checks.classifier_inputs([[1, 2, 3], [4]], seq_len=5),
        tmp_path / f"{name}.keras")


def test_gpt_backbone_classifier_reads_the_last_real_token():
    model = CLASSIFIERS["gpt"]()
    inputs = classifier_checks.classifier_inputs([[3, 1, 4], [1, 5]], seq_len=6)
    hidden = model.backbone(inputs).numpy()
    pooled = np.stack([hidden[0, 2], hidden[1, 1]])
    head = model.classification_head
    np.testing.assert_allclose(model(inputs).numpy(),
                               pooled @ head.kernel.numpy() + head.bias.numpy(), atol=1e-5)
