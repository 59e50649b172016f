"""Summed, masked losses: the trainer divides by the GLOBAL count of real targets.

Returning (sum, count) rather than a mean lets the trainer average over the global batch
across replicas and micro-batches, so the loss and its gradient do not depend on how the batch
was split (cf. `tf.nn.compute_average_loss` in the TF custom-training-loop guide).
"""

import tensorflow as tf


def token_cross_entropy(targets, logits, mask):
    """Summed next-token cross-entropy over real tokens.

    Args:
        targets: int32 (batch, seq_len), the next token at each position.
        logits: float (batch, seq_len, vocabulary_size).
        mask: float32 (batch, seq_len), 1 for real tokens, 0 for padding.

    Returns:
        (loss_sum, count): float32 scalars; `loss_sum / count` is the mean loss in nats per token.
    """
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=targets, logits=tf.cast(logits, tf.float32)
    )  # (batch, seq_len)
    mask = tf.cast(mask, tf.float32)
    return tf.reduce_sum(per_token * mask), tf.reduce_sum(mask)


def classification_cross_entropy(labels, logits, mask):
    """Summed cross-entropy of a classifier: sigmoid when logits are (batch, 1), else softmax.

    Args:
        labels: int32 (batch,), class indices.
        logits: float (batch, 1) for a binary head, (batch, num_classes) otherwise.
        mask: float32 (batch,), 1 for real examples.

    Returns:
        (loss_sum, count): float32 scalars, the loss in nats.
    """
    logits = tf.cast(logits, tf.float32)
    if logits.shape[-1] == 1:
        per_example = tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.cast(labels, tf.float32), logits=logits[:, 0]
        )
    else:
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    mask = tf.cast(mask, tf.float32)
    return tf.reduce_sum(per_example * mask), tf.reduce_sum(mask)
