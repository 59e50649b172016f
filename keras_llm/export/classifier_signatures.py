"""The serving signatures of a text classifier: raw strings in, class predictions out.

    serving_default(text [-1] string)
        -> probabilities [-1, num_classes] float32, label [-1] string (the training labels'
           names), score [-1] float32 (the chosen label's probability)
    classify_token_ids(token_ids [-1, -1] int32, padding_mask [-1, -1] bool)
        -> probabilities, label, score as above

Normalization, WordPiece and truncation run in the graph with the same function as training
(`keras_llm.data.classification_dataset.encode_texts`), so a served text gets the ids it got in
training.
"""

import tensorflow as tf

from keras_llm.data.classification_dataset import encode_texts
from keras_llm.data.features import model_inputs
from keras_llm.export.request_checks import check, checked


class ClassifierSignatures(tf.Module):
    """`tf.function`s to export: `serving_default` and `classify_token_ids`.

    Args:
        model: a built `TextClassifier`.
        tokenizer: its tokenizer.
        label_names: list of str, the class names in id order (`LabelVocabulary.names`).
        sequence_length: int, the most tokens per text (the run's --sequence_length).
    """

    def __init__(self, model, tokenizer, label_names, sequence_length):
        super().__init__(name="classifier_signatures")
        self.model = model
        self.tokenizer = tokenizer
        self.label_names = tf.constant(list(label_names), tf.string)
        self.sequence_length = int(sequence_length)

    def _predict(self, inputs):
        logits = self.model(inputs, training=False)  # (batch, 1) or (batch, num_classes)
        if logits.shape[-1] == 1:  # One sigmoid logit: the probability of class 1.
            positive = tf.sigmoid(logits[:, 0])
            probabilities = tf.stack([1.0 - positive, positive], axis=1)
        else:
            probabilities = tf.nn.softmax(logits, axis=-1)
        chosen = tf.argmax(probabilities, axis=-1, output_type=tf.int32)  # (batch,)
        return {"probabilities": probabilities, "label": tf.gather(self.label_names, chosen),
                "score": tf.reduce_max(probabilities, axis=-1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serving_default(self, text):
        """Classifies raw texts, tokenized and truncated exactly as in training."""
        (text,) = checked([check(tf.size(text) >= 1,
                                   "text: the batch is empty; send at least one text")], text)
        ids = encode_texts(self.tokenizer, text, self.sequence_length)
        token_ids = ids.to_tensor()  # (batch, <= sequence_length), right-padded with 0
        return self._predict(model_inputs(token_ids, token_ids != 0))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                                  tf.TensorSpec([None, None], tf.bool, name="padding_mask")])
    def classify_token_ids(self, token_ids, padding_mask):
        """Classifies already tokenized texts (at most sequence_length ids, right-padded)."""
        # The shapes first: the checks below compare the two tensors element by element, and
        # would otherwise fail with TensorFlow's own "Incompatible shapes" error.
        token_ids, padding_mask = checked([
            check(tf.reduce_all(tf.equal(tf.shape(token_ids), tf.shape(padding_mask))),
                   "token_ids and padding_mask must have the same shape"),
        ], token_ids, padding_mask)
        real = tf.reduce_sum(tf.cast(padding_mask, tf.int32), axis=1)  # (batch,)
        vocabulary_size = int(self.tokenizer.vocabulary_size)
        token_ids, padding_mask = checked([
            check(tf.shape(token_ids)[0] >= 1, "token_ids: the batch is empty"),
            check(tf.shape(token_ids)[1] <= self.sequence_length,
                   f"token_ids: at most sequence_length={self.sequence_length} ids per row"),
            check(tf.reduce_all(real >= 1),
                   "padding_mask: every row needs at least one real token"),
            # As training's batches: PAD id 0 exactly where the mask is False, on the right.
            check(tf.reduce_all(tf.equal(padding_mask, token_ids != 0)),
                  "padding_mask must be True exactly where token_ids are not 0 (the PAD id)"),
            # A False followed by a True: padding before a real token.
            check(tf.logical_not(tf.reduce_any(tf.logical_and(
                tf.logical_not(padding_mask[:, :-1]), padding_mask[:, 1:]))),
                  "token_ids must be right-padded: real tokens first, then 0s"),
            check(tf.reduce_all(tf.logical_and(token_ids >= 0, token_ids < vocabulary_size)),
                   f"token_ids must be in [0, {vocabulary_size})"),
        ], token_ids, padding_mask)
        return self._predict(model_inputs(token_ids, padding_mask))
