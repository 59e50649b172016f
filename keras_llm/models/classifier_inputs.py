"""The input contract shared by the text classifiers, and their output width."""

import numbers

from keras import ops

# Keys of the dict every classifier takes (and the classification pipelines produce).
TOKEN_IDS_KEY = "token_ids"
PADDING_MASK_KEY = "padding_mask"


def unpack_classifier_inputs(inputs, model_name):
    """Returns `(token_ids, padding_mask)` from a classifier's input dict.

    Args:
        inputs: dict with `"token_ids"` (int32 `(batch, seq_len)`, padding id 0) and
            `"padding_mask"` (bool `(batch, seq_len)`, True at real tokens). Extra keys are
            ignored.
        model_name: str, used in the error message.

    Returns:
        `token_ids` unchanged and `padding_mask` cast to bool.

    Raises:
        ValueError: if `inputs` is not a dict holding both keys.
    """
    if not isinstance(inputs, dict) or not {TOKEN_IDS_KEY, PADDING_MASK_KEY} <= set(inputs):
        received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise ValueError(
            f"{model_name} expects a dict with keys '{TOKEN_IDS_KEY}' (int32, (batch, seq_len))"
            f" and '{PADDING_MASK_KEY}' (bool, (batch, seq_len)); received {received}."
        )
    return inputs[TOKEN_IDS_KEY], ops.cast(inputs[PADDING_MASK_KEY], "bool")


def classifier_output_dim(num_classes):
    """Returns 1 for two classes (one sigmoid logit) and `num_classes` otherwise (softmax logits).

    Args:
        num_classes: int >= 2.

    Raises:
        ValueError: if `num_classes` is not an int >= 2.
    """
    is_int = isinstance(num_classes, numbers.Integral) and not isinstance(num_classes, bool)
    if not is_int or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; received num_classes={num_classes!r}.")
    return 1 if num_classes == 2 else int(num_classes)
