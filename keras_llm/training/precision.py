"""Runtime settings from the config: mixed precision policy, thread counts, malloc's top pad.

Mixed precision (Micikevicius et al. 2018; Keras's mixed precision guide): variables stay
float32, layers compute in bfloat16 or float16. keras_llm keeps the attention softmax, the
logits, the loss and the labels in float32 (see `MultiHeadSelfAttention.attend`,
`GPTLanguageModel`, `keras_llm.training.losses`). Without native hardware support the
low-precision ops are emulated and slower than float32, so such a policy is refused unless
forced.

The top pad: TensorFlow's CPU allocator takes tensors and XLA's temporary buffers from the C
library's malloc. With glibc's default top pad (128 KiB) the memory a step frees at the top of a
heap goes back to the kernel after every step and the next step page-faults it in again: at
nanoGPT's shape 6,900 minor page faults per step (`getrusage`), 1,200 with a pad of 8 MiB or
more, and the step went from 41 to 34 ms on 2 CPU cores (XLA's matmuls wrote into fresh pages).
`mallopt(M_TOP_PAD)` (glibc's malloc(3) and mallopt(3) manuals) keeps that much free memory
at each heap's top instead; the memory kept is memory the process already used.
"""

import ctypes
import ctypes.util

import keras
import tensorflow as tf

# Native bfloat16 matmuls on x86 CPUs: AVX512_BF16 (Cooper Lake and later) or AMX (Sapphire
# Rapids); oneDNN uses them for TensorFlow's bfloat16 MatMul. GPUs: bfloat16 tensor cores
# from compute capability 8.0 (Ampere), float16 ones from 7.0 (Volta).
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
MIN_GPU_CAPABILITY = {"mixed_bfloat16": (8, 0), "mixed_float16": (7, 0)}


def cpu_flags():
    """The CPU's instruction-set flags from /proc/cpuinfo (empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def gpu_capabilities():
    """Compute capabilities `(major, minor)` of the visible GPUs."""
    return [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
            for gpu in tf.config.list_physical_devices("GPU")]


def check_dtype_policy(policy, force=False, flags=None, capabilities=None):
    """Raises unless the hardware runs `policy` natively (or `force`).

    Args:
        policy: "float32", "mixed_bfloat16" or "mixed_float16".
        force: bool, --force_dtype_policy.
        flags: CPU flags (default: this machine's); capabilities: GPU compute capabilities
            (default: this machine's). Arguments for tests.

    Raises:
        ValueError: naming the policy, what it needs and what this machine has.
    """
    if policy == "float32" or force:
        return
    capabilities = gpu_capabilities() if capabilities is None else capabilities
    if capabilities:
        needed = MIN_GPU_CAPABILITY[policy]
        if all(tuple(c) >= needed for c in capabilities):
            return
        raise ValueError(
            f"--dtype_policy={policy} needs GPUs of compute capability >= "
            f"{needed[0]}.{needed[1]}; found {', '.join(f'{a}.{b}' for a, b in capabilities)}. "
            "Use --dtype_policy=float32, or --force_dtype_policy to run it anyway (slower).")
    flags = cpu_flags() if flags is None else set(flags)
    if policy == "mixed_bfloat16" and flags & set(BFLOAT16_CPU_FLAGS):
        return
    needs = ("a CPU with avx512_bf16 or amx_bf16, or a GPU of compute capability >= 8.0"
             if policy == "mixed_bfloat16" else "a GPU of compute capability >= 7.0 (no CPU "
             "runs float16 matmuls natively in TensorFlow)")
    raise ValueError(
        f"--dtype_policy={policy} needs {needs}; this machine has no GPU and its CPU lacks "
        f"{' and '.join(BFLOAT16_CPU_FLAGS) if policy == 'mixed_bfloat16' else 'them'}, so "
        "the low-precision ops would be emulated, slower than float32. Use "
        "--dtype_policy=float32, or --force_dtype_policy to run it anyway.")


# mallopt's parameter number for the top pad (glibc's <malloc.h>).
M_TOP_PAD = -2


def set_malloc_top_pad(megabytes):
    """Sets glibc malloc's top pad to `megabytes` MiB (see the module docstring).

    Args:
        megabytes: int >= 0; 0 leaves the C library's setting alone.

    Returns:
        bool, whether it was set: False for 0 and where the C library has no `mallopt` (not
        glibc, e.g. macOS) or refuses the value.
    """
    if megabytes <= 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_TOP_PAD, int(megabytes) << 20) == 1


def apply_runtime_settings(train_config):
    """Thread counts (before any TensorFlow op runs), malloc's top pad and the Keras dtype
    policy of the run.

    Raises:
        ValueError: `check_dtype_policy`; or thread counts set after TensorFlow started.
    """
    for name, setter, getter in (
        ("intra_op_threads", tf.config.threading.set_intra_op_parallelism_threads,
         tf.config.threading.get_intra_op_parallelism_threads),
        ("inter_op_threads", tf.config.threading.set_inter_op_parallelism_threads,
         tf.config.threading.get_inter_op_parallelism_threads),
    ):
        value = getattr(train_config, name)
        if value and value != getter():
            try:
                setter(value)
            except RuntimeError as error:
                raise ValueError(f"--{name}={value}: TensorFlow has already started in this "
                                 f"process ({error}); set it in a fresh process.") from None
    set_malloc_top_pad(train_config.malloc_top_pad_mb)
    check_dtype_policy(train_config.dtype_policy, train_config.force_dtype_policy)
    keras.mixed_precision.set_global_policy(train_config.dtype_policy)
