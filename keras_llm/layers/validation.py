"""Constructor argument checks shared by layers and models; errors name the argument."""

import numbers


def check_positive_int(arg_name, value):
    """Returns `int(value)` if `value` is an integer >= 1.

    Args:
        arg_name: str, the argument's name, quoted in the error.
        value: the received value.

    Raises:
        ValueError: if `value` is not an integer (bools rejected) or is < 1.
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{arg_name} must be a positive int; received {arg_name}={value!r}.")
    return int(value)


def check_dropout_rate(value, arg_name="dropout"):
    """Returns `float(value)` if it is a rate in [0, 1).

    Raises:
        ValueError: if `value` is not a number in [0, 1).
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{arg_name} must be a float in [0, 1); received {arg_name}={value!r}.")
    return float(value)
