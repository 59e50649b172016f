"""The only model code that reads configs: maps a model config to a backbone and a task model."""

from keras_llm.layers.initializers import gpt2_normal
from keras_llm.models.gpt import GPTLanguageModel
from keras_llm.models.lstm_backbone import LSTMBackbone
from keras_llm.models.lstm_language_model import LSTMLanguageModel
from keras_llm.models.text_classifier import TextClassifier
from keras_llm.models.transformer_backbone import GPTBackbone
from keras_llm.models.transformer_backbone import TransformerEncoderBackbone


def build_language_model(model_config, vocabulary_size):
    """Returns the language model that `model_config.architecture` names.

    Args:
        model_config: `keras_llm.config.ModelConfig`.
        vocabulary_size: int, the tokenizer's vocabulary size.

    Returns:
        A `keras.Model` (backbone + head) mapping the input dict `{"token_ids": int32 (batch,
        seq_len), "padding_mask": bool (batch, seq_len)}` to float32 logits (batch, seq_len,
        vocabulary_size).

    Raises:
        ValueError: unknown architecture.
    """
    if model_config.architecture == "gpt":
        backbone = GPTBackbone(
            vocabulary_size=vocabulary_size,
            sequence_length=model_config.sequence_length,
            num_layers=model_config.num_layers,
            num_heads=model_config.num_heads,
            hidden_dim=model_config.hidden_dim,
            intermediate_dim=model_config.intermediate_dim,
            dropout=model_config.dropout,
            name="backbone",
        )
        return GPTLanguageModel(backbone, tie_embeddings=model_config.tie_embeddings)
    if model_config.architecture == "lstm":
        backbone = LSTMBackbone(
            vocabulary_size=vocabulary_size,
            hidden_dim=model_config.hidden_dim,
            num_layers=model_config.num_layers,
            dropout=model_config.dropout,
            name="backbone",
        )
        return LSTMLanguageModel(backbone)
    raise ValueError(f"--architecture must be gpt or lstm; got {model_config.architecture!r}.")


def build_classifier(model_config, vocabulary_size, sequence_length, num_classes):
    """Maps a `ClassifierModelConfig` to a `TextClassifier` on the backbone it names.

    `lstm` / `bilstm`: the classic Embedding -> (Bi)LSTM -> Dense baseline, reading the LSTM's
    final state(s), dropout on the embeddings and the LSTM output. `transformer`: an encoder
    backbone, mean-pooled over real tokens, dropout on the pooled vector, GPT-2's init.

    Returns:
        A `TextClassifier` taking {"token_ids": int32 (batch, seq_len), "padding_mask": bool
        (batch, seq_len)} and returning logits: (batch, 1) for two classes, else
        (batch, num_classes).

    Raises:
        ValueError: unknown architecture.
    """
    if model_config.architecture in ("lstm", "bilstm"):
        bidirectional = model_config.architecture == "bilstm"
        backbone = LSTMBackbone(
            vocabulary_size=vocabulary_size, hidden_dim=model_config.hidden_dim,
            embedding_dim=model_config.embedding_dim, bidirectional=bidirectional,
            dropout=model_config.dropout, token_dropout=model_config.token_dropout,
            name="backbone",
        )
        # The backbone already drops out the LSTM's output: no second dropout on the pooled state.
        pooling = "bidirectional_final_states" if bidirectional else "last_token"
        return TextClassifier(backbone, num_classes, pooling=pooling)
    if model_config.architecture == "transformer":
        backbone = TransformerEncoderBackbone(
            vocabulary_size=vocabulary_size, sequence_length=sequence_length,
            num_layers=model_config.num_layers, num_heads=model_config.num_heads,
            hidden_dim=model_config.hidden_dim, intermediate_dim=model_config.intermediate_dim,
            dropout=model_config.dropout, token_dropout=model_config.token_dropout,
            name="backbone",
        )
        return TextClassifier(backbone, num_classes, pooling="mean", dropout=model_config.dropout,
                              kernel_initializer=gpt2_normal())
    raise ValueError(
        f"--architecture must be lstm, bilstm or transformer; got {model_config.architecture!r}."
    )
