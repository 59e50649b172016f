import json
import socket
import time

import pytest

from keras_llm.data import corpora
from tests.conftest import shared_data_path


def test_tiny_shakespeare_split_is_nanogpts(tiny_shakespeare_dir):
    corpus = corpora.load_corpus("tiny_shakespeare", str(tiny_shakespeare_dir))
    text = (tiny_shakespeare_dir / "input.txt").read_text(encoding="utf-8")
    assert len(text) == 1_115_394
    # nanoGPT's prepare.py: n = len(data); train = data[:int(n*0.9)], val = data[int(n*0.9):]
    assert corpus.train_text == text[: int(len(text) * 0.9)]
    assert corpus.validation_text == text[int(len(text) * 0.9):]


def test_chinese_poetry_one_poem_per_line():
    data_dir = shared_data_path("chinese_poetry")
    expected = []
    for path in sorted(data_dir.rglob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        stack = [document]
        while stack:  # Independent walk: every dict with a non-empty "paragraphs" list is a poem.
            node = stack.pop()
            if isinstance(node, dict) and node.get("paragraphs"):
                expected.append("".join(node["paragraphs"]))
            elif isinstance(node, dict):
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    corpus = corpora.load_corpus("chinese_poetry", str(data_dir))
    lines = (corpus.train_text + corpus.validation_text).splitlines()
    assert sorted(lines) == sorted(expected)
    assert "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。" in lines


def test_python_docs_needs_no_files_or_network():
    corpus = corpora.load_corpus("python_docs")
    assert len(corpus.train_text) > 100_000 and "for" in corpus.train_text
    assert abs(len(corpus.validation_text) / (len(corpus.train_text) + len(corpus.validation_text))
               - 0.1) < 1e-3


def test_folder_of_text_files_and_validation_file(tmp_path):
    (tmp_path / "b.txt").write_text("second file\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first file\n", encoding="utf-8")
    validation = tmp_path / "valid.text"
    validation.write_text("held out\n", encoding="utf-8")
    corpus = corpora.load_corpus(str(tmp_path), validation_file=str(validation))
    assert corpus.train_text == "first file\n\nsecond file\n"
    assert corpus.validation_text == "held out\n"


def test_offline_tiny_shakespeare_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("KERAS_LLM_DATA", raising=False)

    def unreachable(address, timeout=None):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.monotonic()
    with pytest.raises(corpora.CorpusError, match=r"save it as input\.txt in the folder you pass as --data_dir"):
        corpora.load_corpus("tiny_shakespeare")
    assert time.monotonic() - start < 5


def test_unknown_corpus_name():
    with pytest.raises(corpora.CorpusError, match=r"--corpus='shakespeare' is neither a known corpus"):
        corpora.load_corpus("shakespeare")


def test_windows_and_old_mac_line_ends_become_newlines(tmp_path):
    from keras_llm.data.corpora import read_text_file
    path = tmp_path / "crlf.txt"
    path.write_bytes("\ufeffROMEO:\r\nHi.\rBye.\n".encode("utf-8"))
    assert read_text_file(path) == "ROMEO:\nHi.\nBye.\n"
