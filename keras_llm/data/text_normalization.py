"""In-graph Unicode normalization shared by WordPiece vocabulary learning and tokenization.

The WordPiece vocabulary is learned on `normalize_text(text)` and the tokenizer looks pieces up
in `normalize_text(text)`, with the same function and the same `lower_case`, so a piece that is in
the vocabulary is one the tokenizer can produce.
"""

import tensorflow as tf
import tensorflow_text as tf_text


def normalize_text(texts, lower_case):
    """Normalizes UTF-8 strings with TensorFlow ops (usable inside a `tf.function` / SavedModel).

    Always applies Unicode NFKC, which folds compatibility forms: full-width "ＡＢＣ" -> "ABC",
    the ligature "ﬁ" -> "fi", no-break and ideographic spaces -> " ".

    With `lower_case=True` it also lower-cases and strips accents, as uncased BERT does
    (`tf_text.BasicTokenizer.lower_case`): full Unicode case folding (with NFKC), then NFD and
    removal of the combining marks (category Mn), so "Café" -> "cafe", "Straße" -> "strasse" and
    "ＡＢＣ" -> "abc". Unlike BERT it recomposes the result with NFC at the end, so Hangul syllables,
    which NFD splits into jamo (category Lo, not Mn), come back as the original syllables.

    Example (`lower_case=True`):
        ["Café ＡＢＣ", "Straße  한국"] -> ["cafe abc", "strasse  한국"]

    Args:
        texts: string `Tensor` of any shape (or anything `tf.convert_to_tensor` accepts), UTF-8.
        lower_case: bool. Whether to case-fold and strip accents as well.

    Returns:
        string `Tensor` with the shape of `texts`. Strings that are not valid UTF-8 pass through
        unchanged.
    """
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    if not lower_case:
        return tf_text.normalize_utf8(texts, "NFKC")
    texts = tf_text.case_fold_utf8(texts)  # NFKC_Casefold: lower-cases and applies NFKC.
    texts = tf_text.normalize_utf8(texts, "NFD")  # "é" -> "e" + U+0301 (combining acute, Mn).
    texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
    return tf_text.normalize_utf8(texts, "NFC")
