"""The only model code that reads configs: maps a model config to a Keras model."""

from keras_llm.models.gpt import GPTLanguageModel
from keras_llm.models.lstm_classifier import LSTMClassifier
from keras_llm.models.lstm_language_model import LSTMLanguageModel
from keras_llm.models.transformer_classifier import TransformerClassifier


def build_language_model(model_config, vocabulary_size):
    """Returns the language model that `model_config.architecture` names.

    Args:
        model_config: `keras_llm.config.ModelConfig`.
        vocabulary_size: int, the tokenizer's vocabulary size.

    Returns:
        A `keras.Model` mapping int32 token ids (batch, seq_len) to float32 logits
        (batch, seq_len, vocabulary_size).

    Raises:
        ValueError: unknown architecture.
    """
    if model_config.architecture == "gpt":
        return GPTLanguageModel(
            vocabulary_size=vocabulary_size,
            sequence_length=model_config.sequence_length,
            num_layers=model_config.num_layers,
            num_heads=model_config.num_heads,
            hidden_dim=model_config.hidden_dim,
            intermediate_dim=model_config.intermediate_dim,
            dropout=model_config.dropout,
            tie_embeddings=model_config.tie_embeddings,
        )
    if model_config.architecture == "lstm":
        return LSTMLanguageModel(
            vocabulary_size=vocabulary_size,
            hidden_dim=model_config.hidden_dim,
            num_layers=model_config.num_layers,
            dropout=model_config.dropout,
        )
    raise ValueError(f"--architecture must be gpt or lstm; got {model_config.architecture!r}.")


def build_classifier(model_config, vocabulary_size, sequence_length, num_classes):
    """Maps a `ClassifierModelConfig` to a Keras classifier.

    Returns:
        A `keras.Model` taking {"token_ids": int32 (batch, seq_len), "padding_mask": bool
        (batch, seq_len)} and returning logits: (batch, 1) for two classes, else
        (batch, num_classes).

    Raises:
        ValueError: unknown architecture.
    """
    if model_config.architecture in ("lstm", "bilstm"):
        return LSTMClassifier(
            vocabulary_size=vocabulary_size, embedding_dim=model_config.embedding_dim,
            hidden_dim=model_config.hidden_dim, dropout=model_config.dropout,
            bidirectional=model_config.architecture == "bilstm", num_classes=num_classes,
            token_dropout=model_config.token_dropout,
        )
    if model_config.architecture == "transformer":
        return TransformerClassifier(
            vocabulary_size=vocabulary_size, sequence_length=sequence_length,
            num_layers=model_config.num_layers, num_heads=model_config.num_heads,
            hidden_dim=model_config.hidden_dim, intermediate_dim=model_config.intermediate_dim,
            dropout=model_config.dropout, num_classes=num_classes,
            token_dropout=model_config.token_dropout,
        )
    raise ValueError(
        f"--architecture must be lstm, bilstm or transformer; got {model_config.architecture!r}."
    )
