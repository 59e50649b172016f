"""Request validation inside exported graphs: InvalidArgument naming the input, before any work.

TF Serving returns a failed `tf.debugging.Assert` to the client as INVALID_ARGUMENT with its
message, so each check names the input at fault and what it must be.
"""

import tensorflow as tf


def check(condition, message):
    """An `Assert` op that fails the request with `message` unless `condition` holds."""
    return tf.debugging.Assert(condition, [message])


def checked(checks, *tensors):
    """`tensors` passed through `tf.identity` after `checks`.

    Every op computed from the returned tensors waits for the checks, so a rejected request
    allocates nothing (e.g. no buffer sized by a huge `max_new_tokens`).

    Returns:
        list of tensors, one per argument.
    """
    with tf.control_dependencies(checks):
        return [tf.identity(tensor) for tensor in tensors]
