"""End-to-end: real few-step runs on the shared Tiny Shakespeare, resume, and each bad input."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from keras_llm import config as config_lib, presets
from keras_llm.data.corpora import CorpusError
from keras_llm.data.corpora import load_corpus
from keras_llm.data.language_model_dataset import evaluation_dataset
from keras_llm.evaluation.trained_runs import load_trained_language_model
from keras_llm.training.language_model import train_language_model
from keras_llm.training.losses import token_cross_entropy
from keras_llm.training.run_directory import ModelDirectoryError
from tests.conftest import event_tags, REPO_ROOT, tiny_language_model_config


def _quiet(*args, **kwargs):
    pass


def test_few_steps_learn_checkpoint_and_resume(tiny_shakespeare_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    # The user's default: auto, i.e. the GPT's train step compiled with XLA.
    config = tiny_language_model_config(tiny_shakespeare_dir, jit_compile="auto")
    lines = []
    results = train_language_model(config, model_dir, log=lines.append)

    # The loss falls well below a uniform guess over the 67-token vocabulary (ln 67 = 4.20).
    assert results["steps"] == 30 and results["resumed_from_step"] == 0
    assert results["validation"]["loss"] < 3.4 < math.log(67)
    assert math.isclose(results["validation"]["perplexity"], math.exp(results["validation"]["loss"]),
                        rel_tol=1e-9)
    assert results["train"]["loss"] < 3.4
    assert results["num_replicas"] == 1 and results["tokens_per_second"] > 0
    with open(os.path.join(model_dir, "results.json")) as file:
        assert json.load(file)["validation"]["loss"] == results["validation"]["loss"]
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints"))) == [
        "checkpoint", "ckpt-15.data-00000-of-00001", "ckpt-15.index",
        "ckpt-30.data-00000-of-00001", "ckpt-30.index"]
    with open(os.path.join(model_dir, "config.json")) as file:
        saved = config_lib.from_dict(config_lib.LanguageModelConfig, json.load(file))
    assert saved == config
    # Steps 1-10 run in the first call, which traces: its speed is not reported (it was
    # "0 tokens/s"); step 20's comes from timed calls.
    assert any(line.startswith("step 10/30 | loss ") and "speed: not measured" in line
               and "tokens/s" not in line and "ETA" in line for line in lines)
    assert any(line.startswith("step 20/30 | loss ") and "tokens/s" in line and "ETA" in line
               for line in lines)
    # Model FLOPs utilization: the measured peak, and the model's FLOP/s over it.
    assert results["peak_flops_per_second"] > 0 and results["model_flops_utilization"] > 0
    assert any(" ms/step | MFU " in line for line in lines)
    # TensorBoard: the scalars a practitioner watches, and text samples at each evaluation.
    assert {"loss", "perplexity", "learning_rate", "gradient_norm", "tokens_per_second"} <= (
        event_tags(os.path.join(model_dir, "logs", "train")))
    assert {"loss", "perplexity"} <= event_tags(os.path.join(model_dir, "logs", "validation"))
    assert "sample_0" in event_tags(os.path.join(model_dir, "logs", "samples"))

    # The checkpoint alone (no optimizer) restores the trained model: its validation loss on the
    # same windows equals the one the run reported.
    model, tokenizer, _, step = load_trained_language_model(model_dir)
    assert step == 30
    validation_text = load_corpus("tiny_shakespeare", str(tiny_shakespeare_dir)).validation_text
    ids = tokenizer.tokenize(tf.constant(validation_text)).numpy()
    loss_sum = count = 0.0
    for inputs, targets, mask in evaluation_dataset(ids, 32, 8, max_batches=4):
        batch_sum, batch_count = token_cross_entropy(targets, model(inputs), mask)
        loss_sum, count = loss_sum + float(batch_sum), count + float(batch_count)
    assert math.isclose(loss_sum / count, results["validation"]["loss"], rel_tol=1e-5)

    # A second run with more steps resumes at the saved step and continues the schedule.
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, train_steps=40))
    resumed = train_language_model(longer, model_dir, log=lines.append)
    assert resumed["resumed_from_step"] == 30 and resumed["steps"] == 40
    assert any("Resumed from" in line and "at step 30" in line for line in lines)
    assert resumed["validation"]["loss"] < 3.4


def _config_with(data_dir, data=None, model=None, train=None):
    config = tiny_language_model_config(data_dir)
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, **(data or {})),
        model=dataclasses.replace(config.model, **(model or {})),
        train=dataclasses.replace(config.train, **(train or {})),
    )


@pytest.mark.parametrize("make_file, message", [
    (None, "Text file not found"),
    (b"", "Text file is empty"),
    (b"to be", "fewer than one window of --sequence_length"),
    (b"good text\n" * 20 + b"caf\xe9 " * 20, r"byte offset 203 \(line 21\) is not valid utf-8"),
])
def test_bad_corpus_fails_before_writing(tmp_path, make_file, message):
    path = tmp_path / "corpus.txt"
    if make_file is not None:
        path.write_bytes(make_file)
    model_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=message) as error:
        train_language_model(_config_with(tmp_path, data={"corpus": str(path)}), str(model_dir),
                             log=_quiet)
    if make_file is not None:
        assert str(path) in str(error.value) or "split" in str(error.value)
    assert not model_dir.exists()


def test_undecodable_bytes_are_replaced_on_request(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"caf\xe9 au lait, " * 200)
    config = _config_with(tmp_path, data={"corpus": str(path), "errors": "replace"},
                          train={"train_steps": 2, "warmup_steps": 0, "eval_interval": 2,
                                 "checkpoint_interval": 2, "sample_length": 0})
    results = train_language_model(config, str(tmp_path / "run"), log=_quiet)
    assert math.isfinite(results["validation"]["loss"])


def test_width_not_divisible_by_heads(tiny_shakespeare_dir, tmp_path):
    config = _config_with(tiny_shakespeare_dir, model={"hidden_dim": 30, "num_heads": 4})
    with pytest.raises(ValueError, match=r"--hidden_dim must be divisible by --num_heads=4; got 30"):
        train_language_model(config, str(tmp_path / "run"), log=_quiet)
    assert not (tmp_path / "run").exists()


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"--preset='nope' is not a language-model preset.*shakespeare_char"):
        presets.language_model_config("nope")


def test_unknown_flag_fails_with_its_name():
    process = subprocess.run(
        [sys.executable, "-m", "experiments.train_lm", "--no_such_flag=1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert process.returncode != 0
    assert "no_such_flag" in process.stderr


def test_checkpoint_of_another_architecture_is_refused(tiny_shakespeare_dir, tmp_path):
    model_dir = tmp_path / "run"
    config = _config_with(tiny_shakespeare_dir, train={"train_steps": 2, "warmup_steps": 0,
                                                       "checkpoint_interval": 2, "eval_interval": 2,
                                                       "sample_length": 0})
    train_language_model(config, str(model_dir), log=_quiet)
    before = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    other = dataclasses.replace(config, model=dataclasses.replace(config.model, architecture="lstm"))
    with pytest.raises(ModelDirectoryError, match=r"--architecture: saved 'gpt', requested 'lstm'"):
        train_language_model(other, str(model_dir), log=_quiet)
    # Another corpus would be read with this run's tokenizer and data position: refused too.
    other_corpus = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                        corpus="python_docs"))
    with pytest.raises(ModelDirectoryError,
                       match=r"--corpus: saved 'tiny_shakespeare', requested 'python_docs'"):
        train_language_model(other_corpus, str(model_dir), log=_quiet)
    # So is the same corpus name over other text (another --data_dir)...
    other_text = tmp_path / "other_text"
    other_text.mkdir()
    (other_text / "input.txt").write_text("Not Shakespeare at all. " * 400, encoding="utf-8")
    with pytest.raises(ModelDirectoryError, match=r"was trained on another training split"):
        train_language_model(_with_data_dir(config, other_text), str(model_dir), log=_quiet)
    after = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert after == before
    # ...but the same text moved to another folder resumes.
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "input.txt").write_bytes((tiny_shakespeare_dir / "input.txt").read_bytes())
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, train_steps=3,
                                                                    eval_interval=3))
    assert train_language_model(_with_data_dir(longer, moved), str(model_dir),
                                log=_quiet)["resumed_from_step"] == 2


def _with_data_dir(config, data_dir):
    return dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=str(data_dir)))


def test_corpus_error_is_a_value_error():
    assert issubclass(CorpusError, ValueError)


def test_epochs_sets_the_number_of_steps_and_a_finished_run_is_left_alone(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 9, encoding="utf-8")
    config = _config_with(tmp_path, data={"corpus": str(path)},
                          train={"epochs": 1, "warmup_steps": 2, "sample_length": 0})
    model_dir = tmp_path / "run"
    results = train_language_model(config, str(model_dir), log=_quiet)
    # 405 characters: 364 train (first 90 %), 364 - 32 = 332 windows, batch 8 -> 42 steps.
    assert results["steps"] == 42
    before = {name: (model_dir / name).read_bytes() for name in ("results.json", "config.json")}
    lines = []
    # Rerun with another setting: nothing is trained, so neither file changes.
    rerun = dataclasses.replace(config, train=dataclasses.replace(config.train, learning_rate=1e-2))
    train_language_model(rerun, str(model_dir), log=lines.append)
    assert {name: (model_dir / name).read_bytes() for name in before} == before
    # One line says so; nothing is rebuilt or evaluated again, and the saved figures come back.
    assert lines == [
        f"{model_dir} already finished at step 42 (--train_steps=42); its results are in "
        f"{model_dir / 'results.json'}. Raise --train_steps to train on, or use a new "
        "--model_dir to start over."]
    again = train_language_model(rerun, str(model_dir), log=_quiet)
    assert again.pop("already_finished") is True
    assert again == json.loads(before["results.json"])


def test_model_dir_that_is_a_file_is_refused(tiny_shakespeare_dir, tmp_path):
    path = tmp_path / "not_a_folder"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(ModelDirectoryError, match="is an existing file, not a folder"):
        train_language_model(tiny_language_model_config(tiny_shakespeare_dir), str(path),
                             log=_quiet)


def test_tokenizing_in_chunks_gives_one_calls_ids():
    from keras_llm.data.character_tokenizer import CharacterTokenizer
    from keras_llm.data.wordpiece_tokenizer import WordPieceTokenizer
    from keras_llm.training.language_model import _token_ids

    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    for tokenizer in (CharacterTokenizer.from_texts([text]),
                      WordPieceTokenizer.from_texts(text.splitlines(), 40, lower_case=True)):
        whole = tokenizer.tokenize(tf.constant(text)).numpy()
        for chunk_characters in (1, 7, 30, 10_000):  # Chunks end after a line end.
            ids = _token_ids(tokenizer, text, "tokenizing", chunk_characters=chunk_characters)
            assert ids.dtype == "int32" and ids.tolist() == whole.tolist()
