"""Text-level sampling: which prompts a tokenizer covers, and prompt + continuation as text."""

import keras
import numpy as np
import pytest

from keras_llm.data.character_tokenizer import CharacterTokenizer
from keras_llm.generation.text_sampling import covers, sample_prompts, sample_text


def test_prompts_the_tokenizer_cannot_spell_are_left_out():
    tokenizer = CharacterTokenizer.from_texts(["ROMEO: hi\n"])
    assert covers(tokenizer, "ROMEO:") and not covers(tokenizer, "春") and not covers(tokenizer, "")
    assert sample_prompts(tokenizer) == ["\n", "ROMEO:"]
    assert sample_prompts(CharacterTokenizer.from_texts(["ab"])) == ["\n"]


class AlwaysNext(keras.Model):
    """Logits that make token `id + 1` (mod vocabulary) certain after each token."""

    max_context = 8

    def __init__(self, vocabulary_size):
        super().__init__()
        self.vocabulary_size = vocabulary_size

    def call(self, inputs):
        token_ids = inputs["token_ids"]
        following = (token_ids + 1) % self.vocabulary_size  # (batch, seq_len)
        return 100.0 * keras.ops.one_hot(following, self.vocabulary_size)


def test_greedy_sample_is_the_prompt_then_the_certain_tokens():
    tokenizer = CharacterTokenizer.from_texts(["abcd"])  # ids: a=2, b=3, c=4, d=5.
    model = AlwaysNext(tokenizer.vocabulary_size)
    assert sample_text(model, tokenizer, "ab", 2, temperature=0.0) == "abcd"
    with pytest.raises(ValueError, match="--prompt=''"):
        sample_text(model, tokenizer, "", 2)
