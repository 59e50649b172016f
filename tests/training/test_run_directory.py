"""Run-directory helpers: file modes of atomic writes, and the training-data fingerprint."""

import os
import stat

import pytest

from keras_llm.training.run_directory import (
    save_directory_atomically,
    training_data_fingerprint,
    write_json_atomically,
)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_atomic_writes_get_the_modes_open_and_mkdir_would_give(tmp_path, umask_022):
    path = tmp_path / "config.json"
    write_json_atomically(str(path), {"a": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # Not mkstemp's 0600.
    assert path.read_text(encoding="utf-8") == '{\n  "a": 1\n}\n'
    folder = tmp_path / "tokenizer"
    save_directory_atomically(lambda d: open(os.path.join(d, "vocab.txt"), "w").close(),
                              str(folder))
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755  # Not mkdtemp's 0700.
    assert os.listdir(folder) == ["vocab.txt"]
    assert sorted(os.listdir(tmp_path)) == ["config.json", "tokenizer"]  # No temporaries left.


def test_fingerprint_changes_with_contents_order_and_labels_only():
    base = training_data_fingerprint(["ab", "c"], ["1", "0"])
    assert base == training_data_fingerprint(["ab", "c"], ["1", "0"])
    assert len(base) == 64 and int(base, 16) >= 0  # sha256, hex.
    others = [
        training_data_fingerprint(["a", "bc"], ["1", "0"]),  # Same characters, split elsewhere.
        training_data_fingerprint(["c", "ab"], ["0", "1"]),  # Same rows, other order.
        training_data_fingerprint(["ab", "c"], ["1", "1"]),  # Another label.
        training_data_fingerprint(["ab", "c"]),  # No labels.
    ]
    assert len({base, *others}) == 5
