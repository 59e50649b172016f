"""keras_llm.presets: every preset is a valid config; shakespeare_char is nanoGPT's CPU run."""

import pytest

from keras_llm import config as config_lib, config_validation, presets


@pytest.mark.parametrize("name", sorted(presets.LANGUAGE_MODEL_PRESETS))
def test_each_language_model_preset_builds_a_valid_config(name):
    config = presets.language_model_config(name)
    assert isinstance(config, config_lib.LanguageModelConfig) and config.preset == name
    assert config_validation.validate(config) is config


@pytest.mark.parametrize("name", sorted(presets.CLASSIFIER_PRESETS))
def test_each_classifier_preset_builds_a_valid_config(name):
    config = presets.classifier_config(name)
    assert isinstance(config, config_lib.ClassifierConfig) and config.preset == name
    assert config_validation.validate_classifier(config) is config


def test_shakespeare_char_is_nanogpts_cpu_configuration():
    # nanoGPT README, "I only have a macbook": train_shakespeare_char.py with --n_layer=4
    # --n_head=4 --n_embd=128 --block_size=64 --batch_size=12 --max_iters=2000
    # --lr_decay_iters=2000 --dropout=0.0; warmup_iters=100, min_lr=1e-4 (with learning_rate
    # 1e-3), beta2=0.99, weight_decay=1e-1, grad_clip=1.0 from the script and train.py.
    config = presets.language_model_config("shakespeare_char")
    model, train = config.model, config.train
    assert (config.data.corpus, config.data.tokenizer) == ("tiny_shakespeare", "character")
    assert (model.architecture, model.num_layers, model.num_heads, model.hidden_dim,
            model.sequence_length, model.dropout) == ("gpt", 4, 4, 128, 64, 0.0)
    assert (train.batch_size, train.train_steps, train.gradient_accumulation_steps) == (12, 2000, 1)
    assert (train.learning_rate_schedule, train.learning_rate, train.warmup_steps,
            train.min_learning_rate) == ("warmup_cosine", 1e-3, 100, 1e-4)
    assert (train.optimizer, train.beta_1, train.beta_2, train.weight_decay,
            train.gradient_clip_norm) == ("adamw", 0.9, 0.99, 0.1, 1.0)


def test_bilstm_is_the_lstm_baseline_made_bidirectional():
    lstm, bilstm = presets.classifier_config("lstm_baseline"), presets.classifier_config("bilstm")
    assert bilstm.model.architecture == "bilstm"
    assert (bilstm.data, bilstm.train) == (lstm.data, lstm.train)
    assert bilstm.model.hidden_dim == lstm.model.hidden_dim == 64


@pytest.mark.parametrize("build, name, message", [
    (presets.language_model_config, "nope", r"--preset='nope' is not a language-model preset; "
                                            r"known: chinese_poetry_char, python_docs_wordpiece, "
                                            r"shakespeare_char, shakespeare_char_lstm\."),
    (presets.classifier_config, "shakespeare_char",
     r"--preset='shakespeare_char' is not a classifier preset; known: bilstm, lstm_baseline, "
     r"transformer\."),
])
def test_unknown_presets_list_the_known_ones(build, name, message):
    with pytest.raises(ValueError, match=message):
        build(name)
