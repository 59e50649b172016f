import numpy as np
import tensorflow as tf

from keras_llm.training import losses


def test_token_cross_entropy_ignores_padding_hand_worked():
    # Vocabulary of 2. Logits [0, ln 3] give p = [1/4, 3/4]; uniform logits give p = [1/2, 1/2].
    logits = tf.constant([[[0.0, np.log(3.0)], [0.0, 0.0], [5.0, -5.0]]])  # (1, 3, 2)
    targets = tf.constant([[1, 0, 1]])
    mask = tf.constant([[1.0, 1.0, 0.0]])  # The third position is padding.
    loss_sum, count = losses.token_cross_entropy(targets, logits, mask)
    # -ln(3/4) - ln(1/2) = ln(4/3) + ln 2; the padded position (-ln sigmoid(-10) ~ 10) is ignored.
    np.testing.assert_allclose(loss_sum.numpy(), np.log(4 / 3) + np.log(2.0), rtol=1e-6)
    assert count.numpy() == 2.0


def test_classification_cross_entropy_binary_and_multiclass():
    loss_sum, count = losses.classification_cross_entropy(
        tf.constant([1, 0, 1]), tf.constant([[0.0], [np.log(3.0)], [9.0]]), tf.constant([1.0, 1.0, 0.0])
    )
    # sigmoid(0) = 1/2 for label 1; sigmoid(ln 3) = 3/4 for label 0 -> -ln(1/4); third masked.
    np.testing.assert_allclose(loss_sum.numpy(), np.log(2.0) + np.log(4.0), rtol=1e-6)
    assert count.numpy() == 2.0
    loss_sum, count = losses.classification_cross_entropy(
        tf.constant([2]), tf.constant([[0.0, 0.0, np.log(2.0)]]), tf.constant([1.0])
    )
    np.testing.assert_allclose(loss_sum.numpy(), -np.log(2.0 / 4.0), rtol=1e-6)
