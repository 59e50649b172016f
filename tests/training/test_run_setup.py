import dataclasses

import pytest

from keras_llm import presets
from keras_llm.training.run_setup import resolve_jit_compile


def _train(**overrides):
    return dataclasses.replace(presets.language_model_config("shakespeare_char").train,
                               **overrides)


@pytest.mark.parametrize("jit_compile, dtype_policy, architecture, has_gpu, expected", [
    ("auto", "float32", "gpt", False, True),
    ("auto", "float32", "lstm", False, True),
    ("auto", "float32", "classifier", True, False),
    # XLA's CPU backend is slower than TensorFlow's bf16 kernels (resolve_jit_compile's figures).
    ("auto", "mixed_bfloat16", "gpt", False, False),
    ("auto", "mixed_bfloat16", "lstm", False, False),
    ("auto", "mixed_bfloat16", "gpt", True, True),
    ("auto", "mixed_float16", "gpt", True, True),
    ("auto", "mixed_bfloat16", "classifier", True, False),
    # An explicit choice is kept.
    ("true", "mixed_bfloat16", "gpt", False, True),
    ("true", "float32", "classifier", False, True),
    ("false", "float32", "gpt", True, False),
])
def test_jit_compile_choice(jit_compile, dtype_policy, architecture, has_gpu, expected):
    train = _train(jit_compile=jit_compile, dtype_policy=dtype_policy)
    assert resolve_jit_compile(train, architecture, has_gpu=has_gpu) is expected


def test_auto_asks_tensorflow_for_a_gpu_under_bfloat16():
    import tensorflow as tf

    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert resolve_jit_compile(_train(dtype_policy="mixed_bfloat16"), "gpt") is has_gpu
