"""Vocabularies, texts and tensor helpers shared by the tokenizer tests."""

import tensorflow as tf

from keras_llm.data.tokenizer_base import PAD_TOKEN, UNK_TOKEN

# ids:            0          1          2     3    4    5
TINY_CHARACTERS = [PAD_TOKEN, UNK_TOKEN, "\n", " ", "a", "b"]
# ids:            0          1          2    3        4      5        6
TINY_PIECES = [PAD_TOKEN, UNK_TOKEN, ",", "great", "the", "##est", "好"]

ROUND_TRIP_TEXTS = [
    "Hello, world!",
    "我喜欢这个酒店。",
    "🙂👍🏽",  # U+1F642, then U+1F44D and the skin-tone modifier U+1F3FD
    "tab\there\nnew line\r\n  two spaces",
    "",
]

def to_list(ids):
    if isinstance(ids, tf.RaggedTensor):
        return ids.to_list()
    return ids.numpy().tolist()


def strings(tensor):
    return [text.decode("utf-8") for text in tensor.numpy()]
