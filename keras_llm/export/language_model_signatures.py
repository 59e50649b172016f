"""The serving signatures of a language model: text in, generated text or scores out.

Everything runs in the graph with core TensorFlow and tensorflow-text ops only (no XLA), so a
stock TF Serving model server runs it: tokenization, the key/value-cached decoding loop of
`keras_llm.generation.decoding`, detokenization.

    generate(prompt [-1] string, max_new_tokens, temperature, top_k, top_p, seed: scalars)
        -> text [-1] string (the continuation), token_ids [-1, -1] int32 (the new tokens, 0
           after a row's last), num_generated [-1] int32 (max_new_tokens, or up to and
           including the end-of-text token when the vocabulary has one)
    score(text [-1] string)
        -> log_likelihood [-1] float32 (nats), num_tokens [-1] int32, perplexity [-1] float32
           (texts of fewer than two tokens are rejected: nothing in them is predicted)
    serving_default(token_ids [-1, -1] int32, right-padded with 0)
        -> log_probabilities [-1, vocabulary_size] float32 of the token after each row's last
"""

import tensorflow as tf

from keras_llm.data.features import model_inputs
from keras_llm.export.request_checks import check, checked
from keras_llm.generation.decoding import generate, next_token_logits, truncate_at_end_token

# Bounds on one request, so that no request holds a server thread (or its memory) for long:
# at most this many new tokens per prompt, and at most MAX_NEW_TOKENS_PER_BATCH over the batch
# (about a minute of decoding for the shakespeare_char GPT on 2 CPU cores). Raise them here if a
# deployment needs longer texts.
MAX_NEW_TOKENS_PER_REQUEST = 4096
MAX_NEW_TOKENS_PER_BATCH = 32768
# And at most this many tokens scored per `score` request (memory grows with the tokens scored:
# about 1.7 GB at 100,000 characters for the shakespeare_char GPT).
MAX_SCORED_TOKENS_PER_BATCH = 65536


class LanguageModelSignatures(tf.Module):
    """`tf.function`s to export: `generate`, `score` and `serving_default` (see the module doc).

    Args:
        model: a built keras_llm language model (`GPTLanguageModel`, `LSTMLanguageModel`).
        tokenizer: its tokenizer (`CharacterTokenizer`, `WordPieceTokenizer`).
    """

    def __init__(self, model, tokenizer):
        super().__init__(name="language_model_signatures")
        self.model = model
        self.tokenizer = tokenizer
        self.vocabulary_size = int(tokenizer.vocabulary_size)
        # keras_llm's character and WordPiece vocabularies have no end-of-text token (None);
        # a tokenizer that defines `end_id` stops generated rows there.
        self.end_token_id = getattr(tokenizer, "end_id", None)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="prompt"),
        tf.TensorSpec([], tf.int32, name="max_new_tokens"),
        tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int32, name="top_k"),
        tf.TensorSpec([], tf.float32, name="top_p"),
        tf.TensorSpec([], tf.int32, name="seed"),
    ])
    def generate(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        """Continues each prompt. Greedy when `temperature` is 0; `top_k` <= 0 or >= the
        vocabulary means no top-k filter; `top_p` in (0, 1]; the same seed gives the same text."""
        batch_size = tf.size(prompt)
        checks = [
            check(batch_size >= 1, "prompt: the batch is empty; send at least one prompt"),
            check(tf.logical_and(max_new_tokens >= 0,
                                  max_new_tokens <= MAX_NEW_TOKENS_PER_REQUEST),
                   f"max_new_tokens must be in [0, {MAX_NEW_TOKENS_PER_REQUEST}]"),
            check(tf.cast(batch_size, tf.int64) * tf.cast(max_new_tokens, tf.int64)
                   <= MAX_NEW_TOKENS_PER_BATCH,
                   f"max_new_tokens times the number of prompts must be at most "
                   f"{MAX_NEW_TOKENS_PER_BATCH}; split the batch"),
            check(tf.logical_and(tf.math.is_finite(temperature), temperature >= 0.0),
                   "temperature must be a finite number >= 0 (0 means greedy)"),
            check(tf.logical_and(top_p > 0.0, top_p <= 1.0),
                   "top_p must be in (0, 1] (1 means no nucleus filter)"),
        ]
        prompt, max_new_tokens, temperature, top_p = checked(
            checks, prompt, max_new_tokens, temperature, top_p)
        ids = tf.cast(self.tokenizer.tokenize(prompt), tf.int32)  # ragged (batch, None)
        lengths = tf.cast(ids.row_lengths(), tf.int32)  # (batch,)
        (lengths,) = checked(
            [check(tf.reduce_all(lengths >= 1), "prompt: every prompt needs at least one token")],
            lengths)
        vocabulary = tf.constant(self.vocabulary_size)
        top_k = tf.where(tf.logical_or(top_k <= 0, top_k >= vocabulary), vocabulary, top_k)
        buffer = generate(self.model, ids.to_tensor(), max_new_tokens, prompt_lengths=lengths,
                          temperature=temperature, top_k=top_k, top_p=top_p,
                          seed=tf.stack([seed, 0]), use_cache=True)
        # (batch, max_new_tokens): each row's new tokens start at its own prompt length.
        columns = lengths[:, None] + tf.range(max_new_tokens)[None, :]
        new_tokens = tf.gather(buffer, columns, batch_dims=1)
        num_generated = tf.fill(tf.shape(lengths), max_new_tokens)
        if self.end_token_id is not None:  # A row stops at the vocabulary's end-of-text token.
            new_tokens, num_generated = truncate_at_end_token(new_tokens, self.end_token_id)
        return {
            "text": self.tokenizer.detokenize(new_tokens),
            "token_ids": new_tokens,
            "num_generated": num_generated,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def score(self, text):
        """Log-likelihood of each text's tokens after its first, as validation measures it:
        non-overlapping windows of the model's context (one window for an LSTM)."""
        ids = tf.cast(self.tokenizer.tokenize(text), tf.int32)
        lengths = tf.cast(ids.row_lengths(), tf.int32)  # (batch,)
        (lengths,) = checked([
            check(tf.size(text) >= 1, "text: the batch is empty; send at least one text"),
            check(tf.reduce_all(lengths >= 2),
                   "text: every text needs at least two tokens (the first is only context)"),
            check(tf.reduce_sum(tf.cast(lengths, tf.int64)) <= MAX_SCORED_TOKENS_PER_BATCH,
                  f"text: at most {MAX_SCORED_TOKENS_PER_BATCH} tokens per request; split long "
                  "texts or the batch"),
        ], lengths)
        longest = tf.maximum(tf.reduce_max(tf.concat([lengths, [2]], 0)), 2)
        context = self.model.max_context
        window = longest - 1 if context is None else tf.constant(context)
        num_windows = (longest - 1 + window - 1) // window
        width = num_windows * window + 1
        dense = ids.to_tensor(shape=tf.stack([tf.size(lengths), width]))  # (batch, width)
        positions = tf.range(width)[None, :]
        inputs = tf.reshape(dense[:, :-1], [-1, window])  # (batch * num_windows, window)
        targets = tf.reshape(dense[:, 1:], [-1, window])
        real_inputs = tf.reshape(positions[:, :-1] < lengths[:, None], [-1, window])
        scored = tf.cast(tf.reshape(positions[:, 1:] < lengths[:, None], [-1, window]),
                         tf.float32)
        logits = self.model(model_inputs(inputs, real_inputs), training=False)
        log_probability = -tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
        per_text = tf.reshape(log_probability * scored, [tf.size(lengths), -1])
        log_likelihood = tf.reduce_sum(per_text, axis=1)  # (batch,) nats
        num_tokens = tf.maximum(lengths - 1, 0)
        mean = -log_likelihood / tf.cast(tf.maximum(num_tokens, 1), tf.float32)
        return {"log_likelihood": log_likelihood, "num_tokens": num_tokens,
                "perplexity": tf.exp(mean)}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids")])
    def serving_default(self, token_ids):
        """Log-probabilities of the next token after each row's ids (right-padded with 0)."""
        ends = tf.reduce_sum(tf.cast(token_ids != 0, tf.int32), axis=1)  # (batch,)
        token_ids, ends = checked([
            check(tf.size(ends) >= 1, "token_ids: the batch is empty; send at least one row"),
            check(tf.reduce_all(ends >= 1), "token_ids: every row needs at least one token"),
            check(tf.reduce_all(tf.logical_and(token_ids >= 0,
                                                token_ids < self.vocabulary_size)),
                   f"token_ids must be in [0, {self.vocabulary_size})"),
        ], token_ids, ends)
        logits = next_token_logits(self.model, token_ids, ends, self.model.max_context)
        return {"log_probabilities": tf.nn.log_softmax(logits, axis=-1)}
