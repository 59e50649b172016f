import numpy as np
import pytest

from keras_llm.data.features import model_inputs, token_ids_shape, unpack_inputs


def test_model_inputs_defaults_to_every_token_real():
    inputs = model_inputs(np.array([[3, 4, 5]], "int32"))
    assert sorted(inputs) == ["padding_mask", "token_ids"]
    np.testing.assert_array_equal(np.asarray(inputs["padding_mask"]), [[True, True, True]])


def test_unpack_casts_the_mask_to_bool_and_names_missing_keys():
    token_ids, mask = unpack_inputs({"token_ids": np.ones((1, 2), "int32"),
                                     "padding_mask": np.array([[1, 0]])}, "M")
    np.testing.assert_array_equal(np.asarray(mask), [[True, False]])
    with pytest.raises(ValueError, match=r"M expects a dict .*received \['token_ids'\]"):
        unpack_inputs({"token_ids": np.ones((1, 2), "int32")}, "M")
    with pytest.raises(ValueError, match="received ndarray"):
        unpack_inputs(np.ones((1, 2), "int32"), "M")


def test_token_ids_shape_refuses_a_bare_shape():
    assert token_ids_shape({"token_ids": (2, 5), "padding_mask": (2, 5)}) == (2, 5)
    with pytest.raises(ValueError, match="model_inputs"):
        token_ids_shape((2, 5), "GPTBackbone")
