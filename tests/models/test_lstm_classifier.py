import keras
import numpy as np
import pytest

from keras_llm.models.lstm_classifier import LSTMClassifier
from keras_llm.models.lstm_classifier import _mask_without_empty_rows
from tests.models import classifier_checks


def _model(bidirectional, **kwargs):
    return LSTMClassifier(vocabulary_size=12, embedding_dim=6, hidden_dim=5, bidirectional=bidirectional, **kwargs)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_trailing_padding_changes_nothing(bidirectional):
    classifier_checks.check_trailing_padding_changes_nothing(_model(bidirectional))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_all_padding_row_changes_nothing(bidirectional):
    classifier_checks.check_all_padding_row_changes_nothing(_model(bidirectional, num_classes=3))


@pytest.mark.parametrize("num_classes, output_dim", [(2, 1), (5, 5)])
def test_output_shape(num_classes, output_dim):
    logits = _model(False, num_classes=num_classes)(classifier_checks.classifier_inputs([[1, 2], [3]], seq_len=4))
    assert logits.shape == (2, output_dim)
    assert logits.dtype == "float32"


def test_parameter_count():
    model = _model(True, num_classes=2)
    model(classifier_checks.classifier_inputs([[1, 2]], seq_len=3))
    v, e, h = 12, 6, 5
    lstm = 4 * (e * h + h * h + h)
    assert model.count_params() == v * e + 2 * lstm + (2 * h + 1)


def test_empty_rows_get_one_unmasked_step_only():
    mask = np.array([[True, True, False], [False, False, False]])
    expected = np.array([[True, True, False], [True, False, False]])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(_mask_without_empty_rows(mask)), expected)


def test_missing_input_key_raises():
    with pytest.raises(ValueError, match="padding_mask"):
        _model(False)({"token_ids": np.ones((1, 3), "int32")})


def test_bad_num_classes_raises():
    with pytest.raises(ValueError, match="num_classes"):
        _model(False, num_classes=1)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_config_round_trip(bidirectional):
    model = _model(bidirectional, dropout=0.2, num_classes=3)
    classifier_checks.check_config_round_trip(
        model, LSTMClassifier, classifier_checks.classifier_inputs([[1, 2, 3], [4]], seq_len=5)
    )


def test_keras_file_round_trip(tmp_path):
    classifier_checks.check_keras_file_round_trip(
        _model(True), classifier_checks.classifier_inputs([[1, 2, 3], [4]], seq_len=5), tmp_path / "lstm.keras"
    )
