"""keras_llm.config: validation messages, JSON round trip, run directories, short runs."""

import dataclasses
import json
import subprocess
import sys

import pytest

from keras_llm import config as config_lib, config_validation, presets
from tests.conftest import REPO_ROOT


def _with_train(config, **overrides):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **overrides))


def test_config_and_presets_import_without_tensorflow():
    # The commands check flags with them before TensorFlow's ~5 s import.
    code = ("import sys; import keras_llm.config, keras_llm.config_validation, keras_llm.presets; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    process = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=60, check=True)
    assert process.stdout == "False False\n"


def test_validate_names_every_bad_flag_in_one_line():
    config = presets.language_model_config("shakespeare_char")
    bad = dataclasses.replace(
        _with_train(config, batch_size=0, beta_2=1.0, strategy="tpu", cluster_resolver="k8s"),
        model=dataclasses.replace(config.model, hidden_dim=130, dropout=-0.1),
        data=dataclasses.replace(config.data, tokenizer="bpe"))
    with pytest.raises(ValueError) as error:
        config_validation.validate(bad)
    assert str(error.value) == (
        "Invalid configuration: --tokenizer must be character or wordpiece; got 'bpe'. "
        "--hidden_dim must be divisible by --num_heads=4; got 130. "
        "--dropout must be in [0, 1); got -0.1. "
        "--strategy must be auto or one_device or mirrored or multi_worker; got 'tpu'. "
        "--cluster_resolver must be tf_config or slurm; got 'k8s'. "
        "--batch_size must be >= 1; got 0. "
        "--beta_2 must be in [0, 1); got 1.0.")
    assert "\n" not in str(error.value)


def test_validate_returns_a_good_config_unchanged():
    config = presets.language_model_config("shakespeare_char")
    assert config_validation.validate(config) is config


def test_warmup_is_checked_against_train_steps_only_without_epochs():
    config = _with_train(presets.language_model_config("shakespeare_char"), train_steps=50)
    with pytest.raises(ValueError, match=r"--warmup_steps must be in \[0, --train_steps=50\); "
                                         r"got 100\."):
        config_validation.validate(config)
    config_validation.validate(_with_train(config, epochs=1))  # Steps are known once data is read.


@pytest.mark.parametrize("train_steps, set_by_user, expected_warmup, note", [
    (20, False, 2, "note: --warmup_steps=2 (10% of --train_steps=20) instead of the preset's "
                   "100; set --warmup_steps to choose another."),
    (500, False, 50, "note: --warmup_steps=50 (10% of --train_steps=500) instead of the "
                     "preset's 100; set --warmup_steps to choose another."),
    (1000, False, 100, None),  # 100 is 10 %: kept.
    (2000, False, 100, None),  # The preset's own run.
    (20, True, 100, None),  # The user's value is kept, and validate refuses it.
    (5, False, 0, "note: --warmup_steps=0 (10% of --train_steps=5) instead of the preset's "
                  "100; set --warmup_steps to choose another."),
])
def test_a_default_warmup_is_fitted_to_short_runs(train_steps, set_by_user, expected_warmup,
                                                  note):
    config = _with_train(presets.language_model_config("shakespeare_char"),
                         train_steps=train_steps)
    fitted, message = config_lib.fit_warmup_to_train_steps(config, set_by_user)
    assert fitted.train.warmup_steps == expected_warmup
    assert message == note
    assert dataclasses.replace(fitted.train, warmup_steps=100) == config.train  # Nothing else.
    if set_by_user:
        with pytest.raises(ValueError, match=r"--warmup_steps must be in \[0, --train_steps=20\)"):
            config_validation.validate(fitted)
    else:
        config_validation.validate(fitted)


def test_warmup_is_left_alone_with_epochs_and_silent_for_a_constant_rate():
    classifier = presets.classifier_config("transformer")  # 10 epochs, warm-up 100.
    assert config_lib.fit_warmup_to_train_steps(classifier, False) == (classifier, None)
    constant = _with_train(presets.classifier_config("lstm_baseline"), epochs=0, train_steps=20)
    fitted, note = config_lib.fit_warmup_to_train_steps(constant, False)
    assert (fitted.train.warmup_steps, note) == (2, None)


@pytest.mark.parametrize("config", [presets.language_model_config("python_docs_wordpiece"),
                                    presets.classifier_config("transformer")])
def test_to_json_from_dict_round_trip(config):
    text = config_lib.to_json(config)
    assert json.loads(text)["train"]["seed"] == 1337
    assert config_lib.from_dict(type(config), json.loads(text)) == config


def test_from_dict_names_the_section_of_an_unknown_field():
    values = json.loads(config_lib.to_json(presets.language_model_config("shakespeare_char")))
    values["model"]["num_experts"] = 8
    with pytest.raises(ValueError, match=r"^config\.model: unknown field\(s\) \['num_experts'\]; "
                                         r"known: \['architecture', "):
        config_lib.from_dict(config_lib.LanguageModelConfig, values)


def test_load_run_config_reads_what_a_run_saved(tmp_path):
    config = presets.classifier_config("bilstm")
    (tmp_path / "config.json").write_text(config_lib.to_json(config))
    assert config_lib.load_run_config(str(tmp_path), config_lib.ClassifierConfig) == config


def test_load_run_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/config.json not found: is "
                                                rf"--model_dir={tmp_path} a training run\?"):
        config_lib.load_run_config(str(tmp_path), config_lib.LanguageModelConfig)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json: not valid JSON \(Expecting property name"):
        config_lib.load_run_config(str(tmp_path), config_lib.LanguageModelConfig)
    (tmp_path / "config.json").write_text(
        config_lib.to_json(presets.classifier_config("lstm_baseline")))
    with pytest.raises(ValueError) as error:
        config_lib.load_run_config(str(tmp_path), config_lib.LanguageModelConfig)
    assert str(error.value) == (
        f"--model_dir={tmp_path} holds a classifier run ({tmp_path}/config.json); expected a "
        "language-model run. Classifier runs are read by experiments.train_classifier, "
        "experiments.evaluate.")
    (tmp_path / "config.json").write_text('{"preset": "x", "unknown": 1}')
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['unknown'\]"):
        config_lib.load_run_config(str(tmp_path), config_lib.LanguageModelConfig)


def test_replace_fields_names_the_section():
    train = config_lib.TrainConfig()
    assert config_lib.replace_fields(train, {"seed": 1}, "train").seed == 1
    with pytest.raises(ValueError, match=r"^train: unknown field\(s\) \['sead'\]"):
        config_lib.replace_fields(train, {"sead": 1}, "train")


def test_every_field_has_a_help_string():
    for cls in (config_lib.DataConfig, config_lib.ModelConfig, config_lib.TrainConfig,
                config_lib.ClassificationDataConfig, config_lib.ClassifierModelConfig):
        for field in dataclasses.fields(cls):
            assert field.metadata.get("help"), f"{cls.__name__}.{field.name}"


@pytest.mark.parametrize("profile_steps, message", [
    ("5", "--profile_steps must be empty or two integers START,END (e.g. 10,20); got '5'."),
    ("a,b", "--profile_steps must be empty or two integers START,END (e.g. 10,20); got 'a,b'."),
    ("0,3", "--profile_steps must be START,END with 1 <= START <= END (training steps are "
            "1-based); got '0,3'."),
    ("9,8", "--profile_steps must be START,END with 1 <= START <= END (training steps are "
            "1-based); got '9,8'."),
    ("10,2001", "--profile_steps must be a window ending by --train_steps=2000; got '10,2001'."),
])
def test_bad_profile_steps_are_named(profile_steps, message):
    config = _with_train(presets.language_model_config("shakespeare_char"),
                         profile_steps=profile_steps, histogram_every=-1)
    with pytest.raises(ValueError) as error:
        config_validation.validate(config)
    assert str(error.value) == ("Invalid configuration: --histogram_every must be >= 0 (0 = off); "
                                f"got -1. {message}")


def test_profile_steps_parse():
    assert config_validation.parse_profile_steps("") is None
    assert config_validation.parse_profile_steps("3,7") == (3, 7)
    assert config_validation.parse_profile_steps("4,4") == (4, 4)
