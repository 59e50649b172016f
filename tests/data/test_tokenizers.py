"""Tests for keras_llm/data/tokenizers.py (load_tokenizer errors) and what both tokenizers share:
surviving a SavedModel round trip."""

import pytest
import tensorflow as tf

from keras_llm.data.character_tokenizer import CharacterTokenizer
from keras_llm.data.tokenizers import load_tokenizer
from keras_llm.data.wordpiece_tokenizer import WordPieceTokenizer
from tests.data.tokenizer_test_data import ROUND_TRIP_TEXTS, TINY_CHARACTERS, TINY_PIECES, strings, to_list


# --- load_tokenizer errors --------------------------------------------------------------------------


def test_load_tokenizer_missing_directory(tmp_path):
    missing = tmp_path / "nothing_here"
    with pytest.raises(ValueError, match=rf"{missing}/tokenizer.json: expected a tokenizer config"):
        load_tokenizer(str(missing))


@pytest.mark.parametrize(
    "config_text, vocabulary_text, message",
    [
        ("{not json", None, r"tokenizer.json: expected a tokenizer config written by save\(\) as JSON"),
        ('{"type": "bpe"}', None, r'tokenizer.json: expected a JSON object with "type" "character" or "wordpiece"'),
        ('{"type": "wordpiece", "format_version": 7}', None, r"tokenizer.json: expected format_version 1, received 7"),
        (None, "[PAD]\n[UNK]\na\nb\n", r"vocab.txt: expected 7 tokens \(vocabulary_size in .*\), received 4"),
        (None, "[PAD]\n[UNK]\na", r"vocab.txt: expected one word piece per line, each ending in a newline"),
        (None, "[UNK]\n[PAD]\n,\ngreat\nthe\n##est\n好\n", r"vocab.txt / .*tokenizer.json: vocabulary: expected"),
        (None, b"[PAD]\n[UNK]\n\xff\n", r"vocab.txt: expected one word piece per line, could not read it"),
        (
            '{"type": "wordpiece", "format_version": 1, "vocabulary_size": 7}',
            None,
            r"vocab.txt / .*tokenizer.json: lower_case: expected a bool, received None",
        ),
    ],
)
def test_load_tokenizer_corrupt_files(tmp_path, config_text, vocabulary_text, message):
    WordPieceTokenizer(vocabulary=TINY_PIECES, lower_case=True).save(str(tmp_path))
    if config_text is not None:
        (tmp_path / "tokenizer.json").write_text(config_text)
    if isinstance(vocabulary_text, bytes):
        (tmp_path / "vocab.txt").write_bytes(vocabulary_text)
    elif vocabulary_text is not None:
        (tmp_path / "vocab.txt").write_text(vocabulary_text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_tokenizer(str(tmp_path))


def test_load_tokenizer_missing_or_corrupt_character_vocabulary(tmp_path):
    CharacterTokenizer(vocabulary=TINY_CHARACTERS).save(str(tmp_path))
    (tmp_path / "vocabulary.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match=r"vocabulary.json: expected a JSON list of strings"):
        load_tokenizer(str(tmp_path))
    (tmp_path / "vocabulary.json").unlink()
    with pytest.raises(ValueError, match=r"vocabulary.json: expected a JSON list of tokens, could not read it"):
        load_tokenizer(str(tmp_path))


# --- SavedModel ---------------------------------------------------------------------------------------


class _TokenizerModule(tf.Module):
    """What an export wraps: tokenize and detokenize as tf.functions with fixed signatures."""

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, texts):
        return self.tokenizer.tokenize(texts)

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1)])
    def detokenize(self, token_ids):
        return self.tokenizer.detokenize(token_ids)


@pytest.mark.parametrize(
    "make_tokenizer, texts",
    [
        (lambda: CharacterTokenizer.from_texts(ROUND_TRIP_TEXTS), ROUND_TRIP_TEXTS),
        (lambda: WordPieceTokenizer(vocabulary=TINY_PIECES, lower_case=True), ["The greatest, 好!", "", "great"]),
    ],
    ids=["character", "wordpiece"],
)
def test_saved_model_round_trip(tmp_path, make_tokenizer, texts):
    tokenizer = make_tokenizer()
    expected_ids = to_list(tokenizer.tokenize(texts))
    expected_texts = strings(tokenizer.detokenize(tokenizer.tokenize(texts)))
    tf.saved_model.save(_TokenizerModule(tokenizer), str(tmp_path))
    del tokenizer  # the reloaded tables must come from the SavedModel, not from this object

    reloaded = tf.saved_model.load(str(tmp_path))
    ids = reloaded.tokenize(tf.constant(texts))
    assert to_list(ids) == expected_ids
    assert strings(reloaded.detokenize(ids)) == expected_texts
