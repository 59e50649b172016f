"""--dtype_policy is refused where the hardware lacks native support, unless forced."""

import pytest

from keras_llm.training.precision import check_dtype_policy

AVX512_NO_BF16 = {"avx", "avx2", "avx512f", "avx512_vnni", "fma"}


def test_float32_needs_nothing():
    check_dtype_policy("float32", flags=set(), capabilities=[])


def test_bfloat16_refused_on_a_cpu_without_bf16_with_a_clear_message():
    with pytest.raises(ValueError) as error:
        check_dtype_policy("mixed_bfloat16", flags=AVX512_NO_BF16, capabilities=[])
    message = str(error.value)
    assert message.startswith("--dtype_policy=mixed_bfloat16 needs a CPU with avx512_bf16 or "
                              "amx_bf16, or a GPU of compute capability >= 8.0; this machine")
    assert "--force_dtype_policy" in message and "--dtype_policy=float32" in message


def test_bfloat16_accepted_with_avx512_bf16_or_amx_or_when_forced():
    check_dtype_policy("mixed_bfloat16", flags=AVX512_NO_BF16 | {"avx512_bf16"}, capabilities=[])
    check_dtype_policy("mixed_bfloat16", flags={"amx_bf16"}, capabilities=[])
    check_dtype_policy("mixed_bfloat16", force=True, flags=set(), capabilities=[])


def test_float16_needs_a_gpu():
    with pytest.raises(ValueError, match=r"--dtype_policy=mixed_float16 needs a GPU of compute "
                                         r"capability >= 7.0"):
        check_dtype_policy("mixed_float16", flags=AVX512_NO_BF16 | {"avx512_bf16"},
                           capabilities=[])
    check_dtype_policy("mixed_float16", capabilities=[(7, 0)])


def test_gpu_capability_below_the_policy_is_refused():
    with pytest.raises(ValueError, match=r"compute capability >= 8.0; found 7.5"):
        check_dtype_policy("mixed_bfloat16", capabilities=[(7, 5)])
    check_dtype_policy("mixed_bfloat16", capabilities=[(8, 0), (9, 0)])
