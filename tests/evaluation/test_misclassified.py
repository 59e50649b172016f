import numpy as np
import pytest

from keras_llm.evaluation.misclassified import (class_probabilities, mistakes_markdown,
                                                most_confident_mistakes)


def test_probabilities_of_one_sigmoid_logit_and_of_softmax_logits():
    binary = class_probabilities(np.array([[0.0], [np.log(3.0)]]))
    np.testing.assert_allclose(binary, [[0.5, 0.5], [0.25, 0.75]])
    three = class_probabilities(np.array([[0.0, np.log(2.0), np.log(5.0)]]))
    np.testing.assert_allclose(three, [[1 / 8, 2 / 8, 5 / 8]])


def test_most_confident_mistakes_first_and_correct_ones_never():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.95, 0.05], [0.3, 0.7]])
    labels = np.array([1, 1, 1, 0, 0])  # Wrong: 0 (0.9), 2 (0.6), 4 (0.7).
    assert most_confident_mistakes(probabilities, labels, 10).tolist() == [0, 4, 2]
    assert most_confident_mistakes(probabilities, labels, 2).tolist() == [0, 4]


def test_markdown_table_escapes_pipes():
    table = mistakes_markdown(["a | b", "fine"], np.array([0, 1]),
                              np.array([[0.25, 0.75], [0.1, 0.9]]), ["neg", "pos"])
    assert table.splitlines() == ["| text | true | predicted | p(neg) | p(pos) |",
                                  "|---|---|---|---|---|",
                                  "| a \\| b | neg | pos | 0.2500 | 0.7500 |"]
    assert mistakes_markdown(["x"], np.array([0]), np.array([[0.9, 0.1]]),
                             ["neg", "pos"]) == "No misclassified validation examples."
