"""`WordPieceTokenizer`: BERT word pieces in-graph (tensorflow-text), and learning its vocabulary."""

import collections
import itertools

import tensorflow as tf
import tensorflow_text as tf_text
# BasicTokenizer (BERT's word splitter) is not exported at the top level of tensorflow_text;
# bert_vocab_from_dataset imports it from here too.
from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as wordpiece_learner

from keras_llm.data.text_normalization import normalize_text
from keras_llm.data.tokenizer_base import (
    RESERVED_TOKENS,
    UNK_TOKEN,
    _as_texts,
    _check_vocabulary,
    _id_to_token_table,
    _ids_to_tokens,
    _iterate_texts,
    _save,
    _Tokenizer,
)
from keras_llm.progress import Progress

__all__ = ["WordPieceTokenizer", "WORDPIECE_VOCABULARY_FILENAME"]

WORDPIECE_VOCABULARY_FILENAME = "vocab.txt"

# Texts per batch when counting words to learn a WordPiece vocabulary: large enough that the
# per-call cost of the eager ops is negligible, small enough to stay a few MB.
_LEARNING_BATCH_SIZE = 1024
_SUFFIX_INDICATOR = "##"  # BERT's marker for a piece that continues a word.


class WordPieceTokenizer(_Tokenizer):
    """BERT word pieces: `normalize_text`, split into words, then greedy longest-match pieces.

    Words are split on whitespace and punctuation, and every CJK ideograph is a word of its own
    (`tf_text.BertTokenizer`'s basic tokenizer); a word with a character missing from the
    vocabulary, or longer than `max_bytes_per_word`, becomes one `[UNK]`.

    Example with `vocabulary=["[PAD]", "[UNK]", ",", "great", "the", "##est", "好"]`, `lower_case=True`:
        tokenize("The greatest, 好!")      -> [4, 3, 5, 2, 6, 1]
        detokenize([4, 3, 5, 2, 6, 1])     -> "the greatest , 好 [UNK]"

    Args:
        vocabulary: list of str. `[PAD]`, `[UNK]`, then distinct non-empty pieces without "\\n";
            a piece that continues a word starts with "##".
        lower_case: bool. Passed to `normalize_text`; must match the value the vocabulary was
            learned with.
        max_bytes_per_word: int. Longer words become `[UNK]` (BERT's default, 100).

    Raises:
        ValueError: if the vocabulary does not have that form.
    """

    def __init__(self, vocabulary, lower_case, max_bytes_per_word=100):
        super().__init__(name="wordpiece_tokenizer")
        vocabulary = list(vocabulary)
        _check_vocabulary(vocabulary)
        for index, token in enumerate(vocabulary):
            if not token or "\n" in token:
                raise ValueError(
                    f"vocabulary[{index}]: expected a non-empty piece without a newline, received {token!r}."
                )
        if not isinstance(lower_case, bool):
            raise ValueError(f"lower_case: expected a bool, received {lower_case!r}.")
        if not isinstance(max_bytes_per_word, int) or max_bytes_per_word < 1:
            raise ValueError(f"max_bytes_per_word: expected a positive int, received {max_bytes_per_word!r}.")
        self._vocabulary = tuple(vocabulary)
        self.lower_case = lower_case
        self.max_bytes_per_word = max_bytes_per_word
        self._token_to_id = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocabulary, dtype=tf.string), tf.range(len(vocabulary), dtype=tf.int64)
            ),
            default_value=-1,  # "not a piece": the WordPiece kernel tests membership against it.
        )
        # Normalization happens in normalize_text, so the BertTokenizer only splits and looks up.
        self._bert_tokenizer = tf_text.BertTokenizer(
            self._token_to_id,
            suffix_indicator=_SUFFIX_INDICATOR,
            max_bytes_per_word=max_bytes_per_word,
            token_out_type=tf.int64,
            unknown_token=UNK_TOKEN,
            lower_case=False,
            normalization_form=None,
        )
        self._id_to_token = _id_to_token_table(vocabulary)

    @classmethod
    def from_texts(cls, texts, vocabulary_size, lower_case, max_bytes_per_word=100):
        """Learns a vocabulary of at most `vocabulary_size` pieces from `normalize_text(texts)`.

        Runs `tensorflow_text.tools.wordpiece_vocab.bert_vocab_from_dataset`'s steps (BERT's basic
        tokenizer -> word counts -> the wordpiece learner library) with the changes described in
        `_learn_vocabulary`: no "##" pieces for punctuation and CJK ideographs, an alphabet that
        always fits, and a faster threshold search that never returns more than
        `vocabulary_size` tokens.

        The learner keeps the pieces counted at least t times for a whole number t, so the
        vocabulary can fall short of `vocabulary_size` (SST-2 train, 8,000 asked: 8,456 pieces
        at t = 2, 6,161 at t = 3, so 6,161), or the corpus can simply have fewer pieces.

        Args:
            texts: a str, an iterable of str, or a `tf.data.Dataset` of UTF-8 strings (any shape).
            vocabulary_size: int >= 3. The maximum number of ids, the reserved tokens included.
            lower_case: bool. See `normalize_text`.
            max_bytes_per_word: int. See the class.

        Returns:
            A `WordPieceTokenizer`.

        Raises:
            ValueError: if `vocabulary_size` < 3, `lower_case` is not a bool or `texts` contains no word.
        """
        if not isinstance(vocabulary_size, int) or vocabulary_size <= len(RESERVED_TOKENS):
            raise ValueError(
                f"vocabulary_size: expected an int > {len(RESERVED_TOKENS)} (the reserved tokens), "
                f"received {vocabulary_size!r}."
            )
        if not isinstance(lower_case, bool):
            raise ValueError(f"lower_case: expected a bool, received {lower_case!r}.")
        word_counts = _count_words(texts, lower_case)
        if not word_counts:
            raise ValueError("texts: expected training text with at least one word, received none.")
        return cls(
            vocabulary=_learn_vocabulary(word_counts, vocabulary_size),
            lower_case=lower_case,
            max_bytes_per_word=max_bytes_per_word,
        )

    def get_config(self):
        return {
            "vocabulary": self.vocabulary,
            "lower_case": self.lower_case,
            "max_bytes_per_word": self.max_bytes_per_word,
        }

    def tokenize(self, texts):
        """Normalizes, splits into words and maps each word to its word-piece ids.

        Args:
            texts: scalar string, or string `(batch,)`; UTF-8.

        Returns:
            int32 `Tensor` `(num_tokens,)` for a scalar, int32 `RaggedTensor` `(batch, None)` for a batch.
        """
        texts = _as_texts(texts)
        batch = tf.reshape(texts, [-1])  # (batch,); a scalar becomes a batch of one.
        pieces = self._bert_tokenizer.tokenize(normalize_text(batch, self.lower_case))  # (batch, words, pieces)
        token_ids = tf.cast(pieces.merge_dims(1, 2), tf.int32)  # (batch, None)
        return token_ids[0] if texts.shape.rank == 0 else token_ids

    def detokenize(self, token_ids):
        """Joins pieces into words (a "##" piece is glued to the one before) and words with one space.

        PAD ids are dropped; `[UNK]` and ids out of range become the text "[UNK]". Punctuation
        comes back as a separate word ("great, fun" -> "great , fun") and normalization is not
        undone.

        Args:
            token_ids: int `(num_tokens,)`, or int `(batch, None)` (`RaggedTensor` or PAD-padded `Tensor`).

        Returns:
            string scalar for `(num_tokens,)`, string `(batch,)` for `(batch, None)`.
        """
        pieces = _ids_to_tokens(self._id_to_token, token_ids)
        text = tf.strings.reduce_join(pieces, axis=-1, separator=" ")
        return tf.strings.regex_replace(text, " " + _SUFFIX_INDICATOR, "")

    def save(self, directory):
        """Writes `vocab.txt` (one piece per line, BERT's format) and `tokenizer.json`.

        Args:
            directory: str; created if missing. Existing tokenizer files are replaced atomically.
        """
        _save(
            directory,
            vocabulary_filename=WORDPIECE_VOCABULARY_FILENAME,
            vocabulary_text="".join(token + "\n" for token in self._vocabulary),
            config={
                "type": "wordpiece",
                "vocabulary_size": self.vocabulary_size,
                "lower_case": self.lower_case,
                "max_bytes_per_word": self.max_bytes_per_word,
            },
        )


def _count_words(texts, lower_case):
    """Counts the words `BertTokenizer` sees: `normalize_text`, then BERT's basic tokenizer.

    Runs the ops eagerly on batches of `_LEARNING_BATCH_SIZE` texts; tracing a `tf.data` map
    instead costs ~0.5 s, more than counting all of SST-2 takes.

    Returns:
        `collections.Counter` mapping word (str) -> number of occurrences.
    """
    basic_tokenizer = BasicTokenizer(lower_case=False, normalization_form=None)
    total = len(texts) if isinstance(texts, (list, tuple)) else None
    texts = _iterate_texts(texts)
    word_counts = collections.Counter()
    with Progress("vocabulary: counting words", total, unit="texts") as progress:
        while batch := list(itertools.islice(texts, _LEARNING_BATCH_SIZE)):
            words = basic_tokenizer.tokenize(
                normalize_text(tf.constant(batch, dtype=tf.string), lower_case))
            word_counts.update(words.flat_values.numpy())
            progress.update(len(batch))
    return collections.Counter({word.decode("utf-8"): count for word, count in word_counts.items()})


def _isolated_characters(characters):
    """The characters that `BertTokenizer` always splits off as a word of their own.

    These are punctuation and CJK ideographs; the suffix piece "##c" of such a c can never occur.
    Found by asking the basic tokenizer itself: c is isolated iff "a" + c + "a" -> ["a", c, "a"].
    """
    characters = sorted(characters)
    if not characters:
        return set()
    probes = tf.constant([f"a{character}a" for character in characters])
    num_words = BasicTokenizer().tokenize(probes).row_lengths().numpy()
    return {character for character, count in zip(characters, num_words) if count == 3}


def _upper_threshold(word_counts, budget):
    """A frequency threshold at which the learner's vocabulary provably fits `budget` more pieces.

    At threshold t `learn_with_thresh` keeps the alphabet plus pieces whose count is at least t,
    and it only counts occurrences of substrings of the words (a "##" piece: one not at the word
    start), at most once per occurrence. So if at most `budget` (substring, at-start) pairs occur
    t times or more in `word_counts`, the vocabulary at t has at most `budget` pieces besides the
    reserved tokens and the alphabet.

    Args:
        word_counts: list of (word, count) pairs, the words the learner sees.
        budget: int, slots left after the reserved tokens and the alphabet.

    Returns:
        int >= 1, the smallest such threshold.
    """
    substring_counts = collections.Counter()
    for word, count in word_counts:
        for start in range(len(word)):
            for end in range(start + 1, len(word) + 1):
                substring_counts[start > 0, word[start:end]] += count
    counts = sorted(substring_counts.values(), reverse=True)
    if budget < len(counts):
        return counts[max(budget, 0)] + 1
    return 1


def _learn_vocabulary(word_counts, vocabulary_size):
    """Runs the wordpiece learner (`wordpiece_tokenizer_learner_lib`) on counted words.

    Like the library's `learn`, it searches for a frequency threshold t and returns the reserved
    tokens, the alphabet and the pieces counted at least t times (4 refinement passes, pieces of
    up to 50 characters: the library's defaults). Three changes:
    - The alphabet is the `(vocabulary_size - 2) // 2` most frequent characters (the library
      caps it at 1,000), so "c" and "##c" for all of it always fit; rarer characters become
      `[UNK]`. ChnSentiCorp has 4,160 distinct characters.
    - "##c" for a character c that BERT's basic tokenizer always splits off as a word of its own
      (punctuation, CJK ideographs) can never be produced, so it is dropped and its slot goes to
      a real piece; with the library it takes 4,059 of an 8,000 vocabulary on ChnSentiCorp.
    - The search keeps the smallest threshold whose vocabulary fits (stopping early once within
      5% of the target, the library's slack), starting from `_upper_threshold`. The library's
      search starts at the largest word count (13 probes of ~1.3 s on SST-2) and returns the
      vocabulary at t = 1 whatever its size when it gets there.

    Args:
        word_counts: mapping word (str) -> count, as seen by BERT's basic tokenizer.
        vocabulary_size: int, the maximum number of tokens.

    Returns:
        list of str: the reserved tokens, the alphabet, then pieces by decreasing count.
    """
    reserved_tokens = list(RESERVED_TOKENS)
    max_unique_chars = (vocabulary_size - len(reserved_tokens)) // 2
    params = wordpiece_learner.Params(
        upper_thresh=None,
        lower_thresh=1,
        num_iterations=4,
        max_input_tokens=int(5e6),
        max_token_length=50,
        max_unique_chars=max_unique_chars,
        vocab_size=vocabulary_size,
        slack_ratio=0.05,
        include_joiner_token=True,
        joiner=_SUFFIX_INDICATOR,
        reserved_tokens=reserved_tokens,
    )
    word_counts = wordpiece_learner.get_input_words(list(word_counts.items()), reserved_tokens, params.max_token_length)
    alphabet = wordpiece_learner.get_allowed_chars(word_counts, max_unique_chars)
    word_counts = wordpiece_learner.filter_input_words(word_counts, alphabet, params.max_input_tokens)
    unreachable = {_SUFFIX_INDICATOR + character for character in _isolated_characters(alphabet)}

    def learn(threshold):
        vocabulary = wordpiece_learner.learn_with_thresh(word_counts, threshold, params)
        return [token for token in vocabulary if token not in unreachable]

    alphabet_size = 2 * len(alphabet) - len(unreachable)  # "c" and the reachable "##c"
    low = 1
    high = _upper_threshold(word_counts, vocabulary_size - len(reserved_tokens) - alphabet_size)
    vocabulary = None  # learn(high) fits by construction; computed only if the search needs it.
    # A bisection of [1, high] probes at most ceil(log2(high)) thresholds, plus learn(high).
    most_probes = max(1, high - 1).bit_length() + 1
    with Progress("vocabulary: learning pieces", most_probes, unit="probes") as progress:
        while low < high:
            middle = (low + high) // 2
            candidate = learn(middle)
            progress.update()
            if len(candidate) > vocabulary_size:
                low = middle + 1
                continue
            high, vocabulary = middle, candidate
            if len(candidate) >= (1 - params.slack_ratio) * vocabulary_size:
                break
        if vocabulary is None:
            vocabulary = learn(high)
    return vocabulary
