"""Text-level sampling: which prompts a tokenizer covers, and prompt + continuation as text."""

import keras
import numpy as np
import pytest

from keras_llm.data.character_tokenizer import CharacterTokenizer
from keras_llm.data.features import model_inputs
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


def test_streamed_pieces_join_into_the_sampled_text_in_order():
    from keras_llm.generation.text_sampling import stream_text
    from keras_llm.models.gpt import GPTLanguageModel
    from keras_llm.models.transformer_backbone import GPTBackbone

    keras.utils.set_random_seed(3)
    tokenizer = CharacterTokenizer.from_texts(["abcdefgh ij\n"])
    model = GPTLanguageModel(GPTBackbone(vocabulary_size=tokenizer.vocabulary_size,
                                         sequence_length=12, num_layers=2, num_heads=2,
                                         hidden_dim=8))
    model(model_inputs(np.ones((1, 2), "int32")))
    # 30 tokens past a 12-token context: cached steps, then the sliding window, across chunks.
    for settings in ({"temperature": 1.0, "seed": 5}, {"temperature": 0.0},
                     {"temperature": 0.8, "top_k": 3, "seed": 11}):
        whole = sample_text(model, tokenizer, "abc", 30, **settings)
        pieces = list(stream_text(model, tokenizer, "abc", 30, chunk_tokens=7, **settings))
        assert pieces[0] == "abc" and len(pieces) == 1 + 5  # 7+7+7+7+2 tokens
        assert "".join(pieces) == whole, settings
    assert list(stream_text(model, tokenizer, "abc", 0)) == ["abc"]


def test_unknown_characters_are_named_once_in_order():
    from keras_llm.generation.text_sampling import unknown_characters

    tokenizer = CharacterTokenizer.from_texts(["ROMEO: hi\n"])
    assert unknown_characters(tokenizer, "RÉMO 春 É") == ["É", "春"]
    assert unknown_characters(tokenizer, "ROMEO: hi") == []
