"""Runtime settings: --dtype_policy is refused where the hardware lacks native support (unless
forced); --malloc_top_pad_mb keeps freed heap memory from one step to the next."""

import os
import platform
import subprocess
import sys

import pytest

from keras_llm.training.precision import check_dtype_policy, set_malloc_top_pad

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


# ------------------------------------------------------------------------- malloc's top pad

# In a fresh process: a thread (its own malloc arena, as TensorFlow's worker threads have)
# fills and frees 12 MiB in blocks of 1 MiB ten times, and prints the minor page faults of the
# last nine rounds. The first round's blocks are mmapped (above glibc's initial 128 KiB mmap
# threshold); freeing them raises the threshold to 1 MiB, so later rounds take them from the
# heap, as a training step's activations are.
_ROUNDS_OF_ALLOCATIONS = r"""
import ctypes, ctypes.util, resource, sys, threading
sys.path.insert(0, {root!r})
from keras_llm.training.precision import set_malloc_top_pad
print(set_malloc_top_pad({megabytes}))
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
faults = []
def rounds():
    for round_ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [libc.malloc(1 << 20) for _ in range(12)]
        for block in blocks:
            ctypes.memset(block, 1, 1 << 20)
        for block in reversed(blocks):
            libc.free(block)
        if round_:
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=rounds)
thread.start()
thread.join()
print(sum(faults))
"""


def _allocation_rounds(megabytes):
    """(whether the pad was set, minor page faults of 9 rounds) in a fresh Python process."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    output = subprocess.run([sys.executable, "-c", _ROUNDS_OF_ALLOCATIONS.format(
        root=root, megabytes=megabytes)], capture_output=True, text=True, check=True).stdout
    was_set, faults = output.split()
    return was_set == "True", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's top pad is glibc's")
def test_a_top_pad_keeps_freed_heap_memory_from_one_round_to_the_next():
    # 12 MiB is 3,072 pages of 4 KiB. With glibc's default pad each round's freed blocks go
    # back to the kernel and fault in again; with a 64 MiB pad they stay.
    assert _allocation_rounds(0) == (False, pytest.approx(9 * 3072, rel=0.2))
    was_set, faults = _allocation_rounds(64)
    assert was_set and faults < 9 * 3072 / 20


def test_no_top_pad_for_zero():
    assert set_malloc_top_pad(0) is False
