"""A tiny export built with tf.Module: what the exporter writes, without a trained model.

Signatures:
- `tokens(text: string (batch,))`: tensorflow-text's WhitespaceTokenizer, then a vocabulary
  lookup (an asset, so `assets/vocab.txt` and a table initializer) ->
  `token_ids: int64 (batch, 4)` (padded with 0, unknown words 1) and `joined: string (batch,)`.
- `scale(count: int32 (), temperature: float32 ())` -> `scaled: float32 ()`, a variable times both:
  scalar inputs, which the REST row format cannot carry.
"""

import json
import os

import tensorflow as tf
import tensorflow_text

VOCABULARY = ["[PAD]", "[UNK]", "the", "cat", "sat"]
EXAMPLE_REQUESTS = {"tokens": {"text": ["the cat sat", "a cat"]},
                    "scale": {"count": 3, "temperature": 0.5}}
# Worked out by hand: "a" is not in the vocabulary (id 1); rows are padded to 4 ids with 0.
EXPECTED_OUTPUTS = {"tokens": {"token_ids": [[2, 3, 4, 0], [1, 3, 0, 0]],
                               "joined": ["the|cat|sat", "a|cat"]},
                    "scale": {"scaled": 3 * 0.5 * 2.5}}


class TinyServingModule(tf.Module):
    def __init__(self, vocabulary_path):
        super().__init__()
        self.tokenizer = tensorflow_text.WhitespaceTokenizer()
        self.vocabulary = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(vocabulary_path, tf.string,
                                          tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
                                          tf.lookup.TextFileIndex.LINE_NUMBER), default_value=1)
        self.factor = tf.Variable(2.5)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def tokens(self, text):
        words = self.tokenizer.tokenize(text)  # (batch, (words)) ragged
        token_ids = tf.ragged.map_flat_values(self.vocabulary.lookup, words)
        return {"token_ids": token_ids.to_tensor(0, shape=[None, 4]),
                "joined": tf.strings.reduce_join(words, axis=-1, separator="|")}

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="count"),
                                  tf.TensorSpec([], tf.float32, name="temperature")])
    def scale(self, count, temperature):
        return {"scaled": tf.cast(count, tf.float32) * temperature * self.factor}


def save_export(version_dir, module, signatures, example_requests, expected_outputs):
    """Saves `module` with `signatures` and writes the exporter's two JSON files."""
    tf.saved_model.save(module, version_dir, signatures=signatures)
    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    for name, value in (("example_requests.json", example_requests),
                        ("expected_outputs.json", expected_outputs)):
        with open(os.path.join(extra, name), "w", encoding="utf-8") as file:
            json.dump(value, file)
    return str(version_dir)


def tiny_export(base_dir):
    """Writes `base_dir/tiny/1`, the good export; returns its path."""
    vocabulary_path = os.path.join(base_dir, "vocab.txt")
    with open(vocabulary_path, "w", encoding="utf-8") as file:
        file.write("\n".join(VOCABULARY) + "\n")
    module = TinyServingModule(vocabulary_path)
    return save_export(os.path.join(base_dir, "tiny", "1"), module,
                       {"tokens": module.tokens, "scale": module.scale},
                       EXAMPLE_REQUESTS, EXPECTED_OUTPUTS)
