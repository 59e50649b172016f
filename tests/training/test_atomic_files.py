"""The one atomic writer: contents, no temporaries left, and the modes open/mkdir would give,
for the helpers and for every file and folder a real run writes."""

import os
import stat

import pytest

from keras_llm.data.label_vocabulary import LabelVocabulary
from keras_llm.training import atomic_files
from keras_llm.training.classifier import train_classifier
from tests.training.test_classifier import _files_config, _quiet


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_get_the_modes_open_and_mkdir_would_give(tmp_path, umask_022):
    path = tmp_path / "config.json"
    atomic_files.write_json(str(path), {"b": [1, "é"], "a": 1})
    assert _mode(path) == 0o644  # Not mkstemp's 0600.
    assert path.read_text(encoding="utf-8") == '{\n  "a": 1,\n  "b": [\n    1,\n    "é"\n  ]\n}\n'
    text = tmp_path / "vocab.txt"
    atomic_files.write_text(text, "a\r\nb\n")
    assert _mode(text) == 0o644 and text.read_bytes() == b"a\r\nb\n"  # No newline translation.
    folder = tmp_path / "tokenizer"
    atomic_files.save_directory(lambda d: open(os.path.join(d, "vocab.txt"), "w").close(),
                                str(folder))
    assert _mode(folder) == 0o755  # Not mkdtemp's 0700.
    assert os.listdir(folder) == ["vocab.txt"]
    # No temporaries left.
    assert sorted(os.listdir(tmp_path)) == ["config.json", "tokenizer", "vocab.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    atomic_files.write_json(path, {"loss": 1.0})
    with pytest.raises(TypeError):
        atomic_files.write_json(path, {"loss": object()})  # Not JSON-serializable.
    with pytest.raises(RuntimeError):
        atomic_files.save_directory(_failing_save, str(tmp_path / "tokenizer"))
    assert path.read_text(encoding="utf-8") == '{\n  "loss": 1.0\n}\n'
    assert os.listdir(tmp_path) == ["results.json"]


def _failing_save(directory):
    open(os.path.join(directory, "half.txt"), "w").close()
    raise RuntimeError("disk full")


def test_label_vocabulary_is_written_with_the_normal_mode(tmp_path, umask_022):
    path = tmp_path / "labels.json"
    LabelVocabulary.from_labels(["pos", "neg"]).save(path)
    assert _mode(path) == 0o644  # It was mkstemp's 0600 before it used atomic_files.
    assert LabelVocabulary.load(path).names == ["neg", "pos"]


def test_every_file_a_run_writes_has_the_normal_mode(tmp_path, umask_022):
    model_dir = tmp_path / "run"
    config = _files_config(tmp_path, epochs=1, keep_best="accuracy")
    train_classifier(config, str(model_dir), log=_quiet)
    written = {"config.json", "training_data.json", "results.json", "labels.json",
               "tokenizer/tokenizer.json", "tokenizer/vocab.txt", "best/best.json"}
    found = set()
    for folder, subfolders, files in os.walk(model_dir):
        for name in subfolders:
            assert _mode(os.path.join(folder, name)) == 0o755, os.path.join(folder, name)
        for name in files:
            path = os.path.join(folder, name)
            assert _mode(path) == 0o644, path  # Ours, and TensorFlow's checkpoints and events.
            found.add(os.path.relpath(path, model_dir))
    assert written <= found
    assert not [name for name in found if os.path.basename(name).startswith(".tmp-")]
