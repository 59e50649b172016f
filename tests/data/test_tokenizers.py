"""Tests for keras_llm/data/tokenizers.py: hand-computed ids, exact round trips, saving and loading."""

import json
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data import tokenizers
from keras_llm.data.tokenizers import (
    PAD_TOKEN,
    UNK_TOKEN,
    CharacterTokenizer,
    WordPieceTokenizer,
    load_tokenizer,
    normalize_text,
)
from tests.conftest import shared_data_path

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

# Every word occurs once, but "##er" and "##est" occur 12 times each.
STEMS = ["low", "new", "wide", "slow", "fast", "tall", "small", "great", "kind", "bold", "cold", "dark"]
SUFFIX_CORPUS = [" ".join(stem + suffix for stem in STEMS) for suffix in ("", "er", "est")]


def _to_list(ids):
    if isinstance(ids, tf.RaggedTensor):
        return ids.to_list()
    return ids.numpy().tolist()


def _strings(tensor):
    return [text.decode("utf-8") for text in tensor.numpy()]


def _is_cjk_ideograph(character):
    # CJK Unified Ideographs, the block BertTokenizer's basic tokenizer splits on (among others).
    return 0x4E00 <= ord(character) <= 0x9FFF


# --- CharacterTokenizer -----------------------------------------------------------------------------


def test_character_tokenize_hand_computed_ids():
    tokenizer = CharacterTokenizer(vocabulary=TINY_CHARACTERS)

    ids = tokenizer.tokenize("ab a\n")
    assert isinstance(ids, tf.Tensor) and ids.dtype == tf.int32
    assert _to_list(ids) == [4, 5, 3, 4, 2]

    batch = tokenizer.tokenize(tf.constant(["ab", "c", ""]))
    assert isinstance(batch, tf.RaggedTensor) and batch.dtype == tf.int32
    assert _to_list(batch) == [[4, 5], [1], []]  # "c" is not in the vocabulary


def test_character_attributes():
    tokenizer = CharacterTokenizer(vocabulary=TINY_CHARACTERS)
    assert tokenizer.vocabulary == TINY_CHARACTERS
    assert tokenizer.vocabulary_size == 6
    assert (tokenizer.pad_id, tokenizer.unk_id) == (0, 1)
    assert CharacterTokenizer(**tokenizer.get_config()).vocabulary == TINY_CHARACTERS


def test_character_from_texts_sorts_code_points():
    tokenizer = CharacterTokenizer.from_texts(["hello", "", "hole"])
    assert tokenizer.vocabulary == [PAD_TOKEN, UNK_TOKEN, "e", "h", "l", "o"]
    assert _to_list(tokenizer.tokenize("hello")) == [3, 2, 4, 4, 5]


def test_character_from_texts_accepts_str_and_dataset():
    expected = [PAD_TOKEN, UNK_TOKEN, " ", "a", "b", "中"]
    assert CharacterTokenizer.from_texts("ab 中").vocabulary == expected
    assert CharacterTokenizer.from_texts(tf.data.Dataset.from_tensor_slices(["ab", "中 "])).vocabulary == expected
    batched = tf.data.Dataset.from_tensor_slices(["ab", "中 ", "a"]).batch(2)
    assert CharacterTokenizer.from_texts(batched).vocabulary == expected


def test_character_unknown_character_is_unk():
    tokenizer = CharacterTokenizer.from_texts(["abc"])  # a=2, b=3, c=4
    assert _to_list(tokenizer.tokenize("abz")) == [2, 3, tokenizer.unk_id]
    assert _to_list(tokenizer.tokenize(["z", "😀"])) == [[1], [1]]
    assert tokenizer.detokenize([2, 1, 3]).numpy().decode() == "a[UNK]b"


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_character_round_trip_scalar(text):
    tokenizer = CharacterTokenizer.from_texts(ROUND_TRIP_TEXTS)
    ids = tokenizer.tokenize(text)
    assert ids.shape == (len(text),)  # one id per code point
    assert tokenizer.unk_id not in _to_list(ids)
    assert tokenizer.detokenize(ids).numpy().decode("utf-8") == text


def test_character_round_trip_batch():
    tokenizer = CharacterTokenizer.from_texts(ROUND_TRIP_TEXTS)
    ids = tokenizer.tokenize(ROUND_TRIP_TEXTS)
    assert ids.shape[0] == len(ROUND_TRIP_TEXTS)
    assert ids.row_lengths().numpy().tolist() == [len(text) for text in ROUND_TRIP_TEXTS]
    assert _strings(tokenizer.detokenize(ids)) == ROUND_TRIP_TEXTS
    # The same ids, PAD-padded into a dense tensor.
    assert _strings(tokenizer.detokenize(ids.to_tensor(default_value=tokenizer.pad_id))) == ROUND_TRIP_TEXTS


def test_character_detokenize_drops_pad_and_accepts_int64():
    tokenizer = CharacterTokenizer(vocabulary=TINY_CHARACTERS)
    dense = tf.constant([[4, 5, 0, 0], [0, 4, 0, 0], [0, 0, 0, 0]], dtype=tf.int64)
    assert _strings(tokenizer.detokenize(dense)) == ["ab", "a", ""]
    assert tokenizer.detokenize(tf.constant([], tf.int32)).numpy() == b""
    assert tokenizer.detokenize([4, 99, -3]).numpy() == b"a[UNK][UNK]"  # out-of-range ids


@pytest.mark.parametrize("texts", [[], [""], "", tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))])
def test_character_from_texts_rejects_empty_text(texts):
    with pytest.raises(ValueError, match="texts: expected training text with at least one character"):
        CharacterTokenizer.from_texts(texts)


@pytest.mark.parametrize(
    "vocabulary, message",
    [
        (["a", "b"], r"vocabulary: expected \['\[PAD\]', '\[UNK\]'\] at ids 0 and 1"),
        ([PAD_TOKEN, UNK_TOKEN, "ab"], r"vocabulary\[2\]: expected a single Unicode character"),
        ([PAD_TOKEN, UNK_TOKEN, "a", "a"], r"vocabulary: expected distinct tokens, received duplicates \['a'\]"),
    ],
)
def test_character_rejects_bad_vocabulary(vocabulary, message):
    with pytest.raises(ValueError, match=message):
        CharacterTokenizer(vocabulary=vocabulary)


def test_character_rejects_bad_shapes():
    tokenizer = CharacterTokenizer(vocabulary=TINY_CHARACTERS)
    with pytest.raises(ValueError, match=r"texts: expected a scalar string or a string vector"):
        tokenizer.tokenize([["a"]])
    with pytest.raises(ValueError, match=r"token_ids: expected integer ids"):
        tokenizer.detokenize([[[1]]])
    with pytest.raises(ValueError, match=r"token_ids: expected integer ids"):
        tokenizer.detokenize([1.0])


def test_character_save_load_round_trip(tmp_path):
    # Separators and characters that break a one-token-per-line file.
    text = "a\nb\tc d\r\u2028\u0085\"\\é🙂"
    tokenizer = CharacterTokenizer.from_texts([text])
    tokenizer.save(str(tmp_path))

    config = json.loads((tmp_path / "tokenizer.json").read_text())
    assert config["type"] == "character" and config["vocabulary_size"] == len(set(text)) + 2
    assert sorted(os.listdir(tmp_path)) == ["tokenizer.json", "vocabulary.json"]  # no temporary files left

    loaded = load_tokenizer(str(tmp_path))
    assert isinstance(loaded, CharacterTokenizer)
    assert loaded.vocabulary == tokenizer.vocabulary
    assert _to_list(loaded.tokenize(text)) == _to_list(tokenizer.tokenize(text))
    assert loaded.detokenize(loaded.tokenize(text)).numpy().decode() == text


def test_character_tiny_shakespeare_round_trip_is_fast():
    text = shared_data_path("tinyshakespeare", "input.txt").read_text(encoding="utf-8")
    tokenizer = CharacterTokenizer.from_texts(text)
    assert tokenizer.vocabulary_size == 65 + 2  # 65 distinct characters (data README) + PAD, UNK
    start = time.perf_counter()
    ids = tokenizer.tokenize(text)
    restored = tokenizer.detokenize(ids)
    seconds = time.perf_counter() - start
    assert ids.shape == (1_115_394,)
    expected_ids = np.searchsorted(sorted(set(text)), list(text)) + 2  # sorted code points after PAD, UNK
    np.testing.assert_array_equal(ids.numpy(), expected_ids)
    assert restored.numpy().decode("utf-8") == text
    # Measured ~0.1 s for both on 2 shared cores; a per-character Python loop would take seconds.
    assert seconds < 3.0


# --- normalize_text ---------------------------------------------------------------------------------


def test_normalize_text_lower_case():
    texts = ["Café ＡＢＣ", "Straße ﬁ", "한국어 ÀÉÎ", "no\u00a0break"]
    assert _strings(normalize_text(tf.constant(texts), lower_case=True)) == [
        "cafe abc",
        "strasse fi",
        "한국어 aei",  # Hangul syllables survive (NFD splits them into jamo, NFC recomposes)
        "no break",
    ]


def test_normalize_text_keeps_case_and_accents_without_lower_case():
    texts = ["Café ＡＢＣ", "e\u0301"]  # decomposed é composes under NFKC
    assert _strings(normalize_text(tf.constant(texts), lower_case=False)) == ["Café ABC", "é"]


# --- WordPieceTokenizer -----------------------------------------------------------------------------


def test_wordpiece_tokenize_hand_computed_ids():
    tokenizer = WordPieceTokenizer(vocabulary=TINY_PIECES, lower_case=True)
    # "The" -> "the"; "greatest" -> "great" "##est"; "," and "好" are words of their own; "!" is unknown.
    ids = tokenizer.tokenize("The greatest, 好!")
    assert isinstance(ids, tf.Tensor) and ids.dtype == tf.int32
    assert _to_list(ids) == [4, 3, 5, 2, 6, 1]
    assert _to_list(tokenizer.tokenize(["the great", "", "greatness"])) == [[4, 3], [], [1]]
    assert tokenizer.detokenize(ids).numpy().decode() == "the greatest , 好 [UNK]"
    assert _strings(tokenizer.detokenize(tf.ragged.constant([[4, 3, 5], [], [6, 0]]))) == ["the greatest", "", "好"]


def test_wordpiece_attributes():
    tokenizer = WordPieceTokenizer(vocabulary=TINY_PIECES, lower_case=False, max_bytes_per_word=7)
    assert tokenizer.vocabulary == TINY_PIECES and tokenizer.vocabulary_size == 7
    assert (tokenizer.pad_id, tokenizer.unk_id) == (0, 1)
    assert tokenizer.get_config() == {"vocabulary": TINY_PIECES, "lower_case": False, "max_bytes_per_word": 7}
    assert _to_list(tokenizer.tokenize("greatest great")) == [1, 3]  # 8 bytes > max_bytes_per_word
    assert _to_list(tokenizer.tokenize("The")) == [1]  # not lower-cased


def test_wordpiece_learns_shared_suffixes():
    tokenizer = WordPieceTokenizer.from_texts(SUFFIX_CORPUS, vocabulary_size=45, lower_case=True)
    vocabulary = tokenizer.vocabulary
    assert vocabulary[:2] == [PAD_TOKEN, UNK_TOKEN]
    assert tokenizer.vocabulary_size <= 45
    assert {"##er", "##est"} <= set(vocabulary)
    letters = sorted(set("".join(STEMS) + "ers"))
    assert set(letters) <= set(vocabulary)  # every character, so no known word becomes [UNK]
    assert {"##" + letter for letter in letters} <= set(vocabulary)
    # An unseen combination of a stem and a suffix is split, not unknown.
    ids = _to_list(tokenizer.tokenize("darkest"))
    assert tokenizer.unk_id not in ids and vocabulary[ids[-1]] == "##est"


def test_wordpiece_from_texts_accepts_dataset():
    expected = WordPieceTokenizer.from_texts(SUFFIX_CORPUS, vocabulary_size=45, lower_case=True).vocabulary
    dataset = tf.data.Dataset.from_tensor_slices(SUFFIX_CORPUS)
    assert WordPieceTokenizer.from_texts(dataset, vocabulary_size=45, lower_case=True).vocabulary == expected
    assert WordPieceTokenizer.from_texts(dataset.batch(2), vocabulary_size=45, lower_case=True).vocabulary == expected


def test_wordpiece_vocabulary_never_exceeds_vocabulary_size():
    # 26 letters need 2 + 26 * 2 = 54 ids; with 20 at most the 9 most frequent letters fit.
    texts = ["the quick brown fox jumps over the lazy dog " * 3, "ωmega"]
    for vocabulary_size in (20, 60, 100):
        tokenizer = WordPieceTokenizer.from_texts(texts, vocabulary_size=vocabulary_size, lower_case=True)
        assert tokenizer.vocabulary_size <= vocabulary_size
    small = WordPieceTokenizer.from_texts(texts, vocabulary_size=20, lower_case=True)
    assert sum(len(token) == 1 for token in small.vocabulary) <= (20 - 2) // 2
    assert _to_list(small.tokenize("ωmega")) == [small.unk_id]  # "ω" occurs once, every letter 3+ times


def test_wordpiece_splits_cjk_one_token_per_character():
    texts = ["我喜欢这个酒店", "这个酒店很好", "酒店 hotel 很好"] * 3
    tokenizer = WordPieceTokenizer.from_texts(texts, vocabulary_size=100, lower_case=True)
    vocabulary = tokenizer.vocabulary
    for token in vocabulary[2:]:
        piece = token[2:] if token.startswith("##") else token
        cjk = [_is_cjk_ideograph(character) for character in piece]
        # No "##好" (a CJK ideograph never continues a word) and no multi-character CJK piece.
        assert not any(cjk) or (piece == token and len(piece) == 1), token
    ids = _to_list(tokenizer.tokenize("我喜欢酒店hotel"))
    assert [vocabulary[i] for i in ids] == ["我", "喜", "欢", "酒", "店", "hotel"]


def test_wordpiece_normalization_agrees_with_learning():
    texts = ["Café CAFÉ cafe", "ＡＢＣ abc Abc"]
    tokenizer = WordPieceTokenizer.from_texts(texts, vocabulary_size=50, lower_case=True)
    vocabulary = tokenizer.vocabulary
    assert {"cafe", "abc"} <= set(vocabulary)
    assert not {"é", "É", "Ａ", "A", "café"} & set(vocabulary)
    assert _to_list(tokenizer.tokenize("Café")) == _to_list(tokenizer.tokenize("cafe")) == [vocabulary.index("cafe")]
    assert _to_list(tokenizer.tokenize("ＡＢＣ")) == _to_list(tokenizer.tokenize("abc")) == [vocabulary.index("abc")]


def test_wordpiece_without_lower_case_keeps_case_but_applies_nfkc():
    tokenizer = WordPieceTokenizer.from_texts(["Café cafe ABC"], vocabulary_size=50, lower_case=False)
    assert {"Café", "cafe", "ABC"} <= set(tokenizer.vocabulary)
    assert _to_list(tokenizer.tokenize("Café")) != _to_list(tokenizer.tokenize("cafe"))
    assert _to_list(tokenizer.tokenize("ＡＢＣ")) == _to_list(tokenizer.tokenize("ABC"))


def test_wordpiece_learning_and_tokenizing_call_normalize_text(monkeypatch):
    calls = []

    def recording_normalize_text(texts, lower_case):
        calls.append(lower_case)
        return normalize_text(texts, lower_case)

    monkeypatch.setattr(tokenizers, "normalize_text", recording_normalize_text)
    tokenizer = WordPieceTokenizer.from_texts(["Café"], vocabulary_size=20, lower_case=True)
    assert calls == [True]  # one batch of training text
    tokenizer.tokenize("Café")
    assert calls == [True, True]


def test_wordpiece_round_trip_on_lower_case_words():
    corpus = ["the cat sat on the mat", "the cats sat on the mats", "a dog sat on a log"] * 4
    tokenizer = WordPieceTokenizer.from_texts(corpus, vocabulary_size=60, lower_case=True)
    texts = ["the cat sat on the mat", "a cat", "dogs sat on cats", "the catalog", "", "at"]
    ids = tokenizer.tokenize(texts)
    assert tokenizer.unk_id not in ids.flat_values.numpy()
    assert _strings(tokenizer.detokenize(ids)) == texts
    assert tokenizer.detokenize(tokenizer.tokenize("the catalog")).numpy().decode() == "the catalog"
    assert _strings(tokenizer.detokenize(ids.to_tensor())) == texts


@pytest.mark.parametrize("texts", [[], ["", "  \n"], tf.data.Dataset.from_tensor_slices(["", " "])])
def test_wordpiece_from_texts_rejects_empty_text(texts):
    with pytest.raises(ValueError, match="texts: expected training text with at least one word"):
        WordPieceTokenizer.from_texts(texts, vocabulary_size=100, lower_case=True)


def test_wordpiece_from_texts_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"vocabulary_size: expected an int > 2.*received 2"):
        WordPieceTokenizer.from_texts(["abc"], vocabulary_size=2, lower_case=True)
    with pytest.raises(ValueError, match=r"lower_case: expected a bool, received 'yes'"):
        WordPieceTokenizer.from_texts(["abc"], vocabulary_size=10, lower_case="yes")
    with pytest.raises(ValueError, match=r"texts: expected a dataset whose elements are string tensors"):
        WordPieceTokenizer.from_texts(tf.data.Dataset.range(3), vocabulary_size=10, lower_case=True)
    with pytest.raises(ValueError, match=r"texts\[1\]: expected a str, received bytes"):
        WordPieceTokenizer.from_texts(["abc", b"def"], vocabulary_size=10, lower_case=True)
    with pytest.raises(ValueError, match=r"vocabulary\[3\]: expected a non-empty piece without a newline"):
        WordPieceTokenizer(vocabulary=[PAD_TOKEN, UNK_TOKEN, "a", "b\nc"], lower_case=True)


def test_wordpiece_save_load_round_trip(tmp_path):
    tokenizer = WordPieceTokenizer(vocabulary=TINY_PIECES + ["\u2028x", "é"], lower_case=False, max_bytes_per_word=50)
    tokenizer.save(str(tmp_path / "tokenizer"))
    assert (tmp_path / "tokenizer" / "vocab.txt").read_bytes().decode("utf-8") == "".join(
        token + "\n" for token in tokenizer.vocabulary
    )
    loaded = load_tokenizer(str(tmp_path / "tokenizer"))
    assert isinstance(loaded, WordPieceTokenizer)
    assert loaded.get_config() == tokenizer.get_config()
    text = ["The greatest, 好 é", "great"]
    assert _to_list(loaded.tokenize(text)) == _to_list(tokenizer.tokenize(text))


def test_wordpiece_save_overwrites_previous_tokenizer(tmp_path):
    WordPieceTokenizer(vocabulary=TINY_PIECES, lower_case=True).save(str(tmp_path))
    WordPieceTokenizer(vocabulary=TINY_PIECES[:4], lower_case=False).save(str(tmp_path))
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.vocabulary == TINY_PIECES[:4] and loaded.lower_case is False


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
    expected_ids = _to_list(tokenizer.tokenize(texts))
    expected_texts = _strings(tokenizer.detokenize(tokenizer.tokenize(texts)))
    tf.saved_model.save(_TokenizerModule(tokenizer), str(tmp_path))
    del tokenizer  # the reloaded tables must come from the SavedModel, not from this object

    reloaded = tf.saved_model.load(str(tmp_path))
    ids = reloaded.tokenize(tf.constant(texts))
    assert _to_list(ids) == expected_ids
    assert _strings(reloaded.detokenize(ids)) == expected_texts


# --- Real data ------------------------------------------------------------------------------------------


def _read_tsv_texts(*parts, header):
    lines = shared_data_path(*parts).read_text(encoding="utf-8").split("\n")[1 if header else 0:]
    return [line.split("\t", 1)[1] for line in lines if line]


def test_wordpiece_chnsenticorp():
    texts = _read_tsv_texts("chnsenticorp", "train.tsv", header=True)
    tokenizer = WordPieceTokenizer.from_texts(texts, vocabulary_size=8000, lower_case=True)
    vocabulary = tokenizer.vocabulary
    assert tokenizer.vocabulary_size <= 8000
    assert not [token for token in vocabulary if token.startswith("##") and _is_cjk_ideograph(token[2])]
    first = "选择珠江花园的原因就是方便"  # the first review's opening words
    ids = _to_list(tokenizer.tokenize(first))
    assert [vocabulary[i] for i in ids] == list(first)


def test_wordpiece_sst2_round_trip():
    texts = _read_tsv_texts("sst2", "train.tsv", header=False)
    tokenizer = WordPieceTokenizer.from_texts(texts, vocabulary_size=8000, lower_case=True)
    assert tokenizer.vocabulary_size <= 8000
    # SST-2 is lower-cased and PTB-tokenized. An ASCII sentence (no accent to strip) whose
    # space-separated words are alphanumeric or a single punctuation mark (not "'ve",
    # "re-imagining") is split by BERT's basic tokenizer at exactly its spaces, so without [UNK]
    # it comes back exactly.
    dev = [
        text
        for text in _read_tsv_texts("sst2", "dev.tsv", header=False)
        if text.isascii() and all(word.isalnum() or len(word) == 1 for word in text.split(" "))
    ]
    ids = tokenizer.tokenize(dev)
    known = [text for text, row in zip(dev, ids.to_list()) if tokenizer.unk_id not in row]
    assert len(known) > 0.5 * len(dev) > 100
    assert _strings(tokenizer.detokenize(tokenizer.tokenize(known))) == known
