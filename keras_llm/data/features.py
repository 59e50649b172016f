"""The features every pipeline yields and every keras_llm model takes, as KerasHub's backbones do.

Every backbone and task model is called on one dict:

    {"token_ids":    int32 (batch, seq_len), 0 at padded positions,
     "padding_mask": bool  (batch, seq_len), True at real tokens}

so language models, classifiers, the LSTM and the Transformer compare on identical inputs, and
a classifier can be built on any backbone (e.g. a pretrained language model's).
"""

from keras import ops

TOKEN_IDS_KEY = "token_ids"
PADDING_MASK_KEY = "padding_mask"


def model_inputs(token_ids, padding_mask=None):
    """Returns the input dict for `token_ids`; no `padding_mask` means every token is real.

    Args:
        token_ids: int tensor `(batch, seq_len)`.
        padding_mask: optional bool tensor `(batch, seq_len)`, True at real tokens.

    Returns:
        `{"token_ids": token_ids, "padding_mask": bool (batch, seq_len)}`.
    """
    if padding_mask is None:
        padding_mask = ops.ones(ops.shape(token_ids), dtype="bool")
    return {TOKEN_IDS_KEY: token_ids, PADDING_MASK_KEY: padding_mask}


def _contract_error(model_name, received):
    return ValueError(
        f"{model_name} expects a dict with keys '{TOKEN_IDS_KEY}' (int32, (batch, seq_len)) and "
        f"'{PADDING_MASK_KEY}' (bool, (batch, seq_len)); received {received}. "
        "keras_llm.data.features.model_inputs(token_ids) builds one."
    )


def unpack_inputs(inputs, model_name):
    """Returns `(token_ids, padding_mask)` from a model's input dict.

    Args:
        inputs: dict with `"token_ids"` (int32 `(batch, seq_len)`) and `"padding_mask"` (bool
            `(batch, seq_len)`, True at real tokens). Extra keys are ignored.
        model_name: str, used in the error message.

    Returns:
        `token_ids` unchanged and `padding_mask` cast to bool.

    Raises:
        ValueError: if `inputs` is not a dict holding both keys.
    """
    if not isinstance(inputs, dict) or not {TOKEN_IDS_KEY, PADDING_MASK_KEY} <= set(inputs):
        received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise _contract_error(model_name, received)
    return inputs[TOKEN_IDS_KEY], ops.cast(inputs[PADDING_MASK_KEY], "bool")


def token_ids_shape(input_shape, model_name="The model"):
    """The `(batch, seq_len)` shape of `token_ids` from a model's `build` input shape (a dict).

    Raises:
        ValueError: `input_shape` is not the shape of an input dict (e.g. bare token ids).
    """
    if not isinstance(input_shape, dict) or TOKEN_IDS_KEY not in input_shape:
        raise _contract_error(model_name, f"input shape {input_shape}")
    return tuple(input_shape[TOKEN_IDS_KEY])
