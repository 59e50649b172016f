"""Tests for keras_llm/data/wordpiece_tokenizer.py (and the normalize_text it applies): hand-computed
ids, vocabulary learning, round trips, saving and loading, real data."""

import pytest
import tensorflow as tf

from keras_llm.data import wordpiece_tokenizer
from keras_llm.data.text_normalization import normalize_text
from keras_llm.data.tokenizer_base import PAD_TOKEN, UNK_TOKEN
from keras_llm.data.tokenizers import load_tokenizer
from keras_llm.data.wordpiece_tokenizer import WordPieceTokenizer
from tests.conftest import shared_data_path
from tests.data.tokenizer_test_data import TINY_PIECES, strings, to_list

# Every word occurs once, but "##er" and "##est" occur 12 times each.
STEMS = ["low", "new", "wide", "slow", "fast", "tall", "small", "great", "kind", "bold", "cold", "dark"]
SUFFIX_CORPUS = [" ".join(stem + suffix for stem in STEMS) for suffix in ("", "er", "est")]


def _is_cjk_ideograph(character):
    # CJK Unified Ideographs, the block BertTokenizer's basic tokenizer splits on (among others).
    return 0x4E00 <= ord(character) <= 0x9FFF


# --- normalize_text ---------------------------------------------------------------------------------


def test_normalize_text_lower_case():
    texts = ["Café ＡＢＣ", "Straße ﬁ", "한국어 ÀÉÎ", "no\u00a0break"]
    assert strings(normalize_text(tf.constant(texts), lower_case=True)) == [
        "cafe abc",
        "strasse fi",
        "한국어 aei",  # Hangul syllables survive (NFD splits them into jamo, NFC recomposes)
        "no break",
    ]


def test_normalize_text_keeps_case_and_accents_without_lower_case():
    texts = ["Café ＡＢＣ", "e\u0301"]  # decomposed é composes under NFKC
    assert strings(normalize_text(tf.constant(texts), lower_case=False)) == ["Café ABC", "é"]


# --- WordPieceTokenizer -----------------------------------------------------------------------------


def test_wordpiece_tokenize_hand_computed_ids():
    tokenizer = WordPieceTokenizer(vocabulary=TINY_PIECES, lower_case=True)
    # "The" -> "the"; "greatest" -> "great" "##est"; "," and "好" are words of their own; "!" is unknown.
    ids = tokenizer.tokenize("The greatest, 好!")
    assert isinstance(ids, tf.Tensor) and ids.dtype == tf.int32
    assert to_list(ids) == [4, 3, 5, 2, 6, 1]
    assert to_list(tokenizer.tokenize(["the great", "", "greatness"])) == [[4, 3], [], [1]]
    assert tokenizer.detokenize(ids).numpy().decode() == "the greatest , 好 [UNK]"
    assert strings(tokenizer.detokenize(tf.ragged.constant([[4, 3, 5], [], [6, 0]]))) == ["the greatest", "", "好"]


def test_wordpiece_attributes():
    tokenizer = WordPieceTokenizer(vocabulary=TINY_PIECES, lower_case=False, max_bytes_per_word=7)
    assert tokenizer.vocabulary == TINY_PIECES and tokenizer.vocabulary_size == 7
    assert (tokenizer.pad_id, tokenizer.unk_id) == (0, 1)
    assert tokenizer.get_config() == {"vocabulary": TINY_PIECES, "lower_case": False, "max_bytes_per_word": 7}
    assert to_list(tokenizer.tokenize("greatest great")) == [1, 3]  # 8 bytes > max_bytes_per_word
    assert to_list(tokenizer.tokenize("The")) == [1]  # not lower-cased


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
    ids = to_list(tokenizer.tokenize("darkest"))
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
    assert to_list(small.tokenize("ωmega")) == [small.unk_id]  # "ω" occurs once, every letter 3+ times


def test_wordpiece_splits_cjk_one_token_per_character():
    texts = ["我喜欢这个酒店", "这个酒店很好", "酒店 hotel 很好"] * 3
    tokenizer = WordPieceTokenizer.from_texts(texts, vocabulary_size=100, lower_case=True)
    vocabulary = tokenizer.vocabulary
    for token in vocabulary[2:]:
        piece = token[2:] if token.startswith("##") else token
        cjk = [_is_cjk_ideograph(character) for character in piece]
        # No "##好" (a CJK ideograph never continues a word) and no multi-character CJK piece.
        assert not any(cjk) or (piece == token and len(piece) == 1), token
    ids = to_list(tokenizer.tokenize("我喜欢酒店hotel"))
    assert [vocabulary[i] for i in ids] == ["我", "喜", "欢", "酒", "店", "hotel"]


def test_wordpiece_normalization_agrees_with_learning():
    texts = ["Café CAFÉ cafe", "ＡＢＣ abc Abc"]
    tokenizer = WordPieceTokenizer.from_texts(texts, vocabulary_size=50, lower_case=True)
    vocabulary = tokenizer.vocabulary
    assert {"cafe", "abc"} <= set(vocabulary)
    assert not {"é", "É", "Ａ", "A", "café"} & set(vocabulary)
    assert to_list(tokenizer.tokenize("Café")) == to_list(tokenizer.tokenize("cafe")) == [vocabulary.index("cafe")]
    assert to_list(tokenizer.tokenize("ＡＢＣ")) == to_list(tokenizer.tokenize("abc")) == [vocabulary.index("abc")]


def test_wordpiece_without_lower_case_keeps_case_but_applies_nfkc():
    tokenizer = WordPieceTokenizer.from_texts(["Café cafe ABC"], vocabulary_size=50, lower_case=False)
    assert {"Café", "cafe", "ABC"} <= set(tokenizer.vocabulary)
    assert to_list(tokenizer.tokenize("Café")) != to_list(tokenizer.tokenize("cafe"))
    assert to_list(tokenizer.tokenize("ＡＢＣ")) == to_list(tokenizer.tokenize("ABC"))


def test_wordpiece_learning_and_tokenizing_call_normalize_text(monkeypatch):
    calls = []

    def recording_normalize_text(texts, lower_case):
        calls.append(lower_case)
        return normalize_text(texts, lower_case)

    monkeypatch.setattr(wordpiece_tokenizer, "normalize_text", recording_normalize_text)
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
    assert strings(tokenizer.detokenize(ids)) == texts
    assert tokenizer.detokenize(tokenizer.tokenize("the catalog")).numpy().decode() == "the catalog"
    assert strings(tokenizer.detokenize(ids.to_tensor())) == texts


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
    assert to_list(loaded.tokenize(text)) == to_list(tokenizer.tokenize(text))


def test_wordpiece_save_overwrites_previous_tokenizer(tmp_path):
    WordPieceTokenizer(vocabulary=TINY_PIECES, lower_case=True).save(str(tmp_path))
    WordPieceTokenizer(vocabulary=TINY_PIECES[:4], lower_case=False).save(str(tmp_path))
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.vocabulary == TINY_PIECES[:4] and loaded.lower_case is False

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
    ids = to_list(tokenizer.tokenize(first))
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
    assert strings(tokenizer.detokenize(tokenizer.tokenize(known))) == known
