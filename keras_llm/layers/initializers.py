"""GPT-2's weight initializer and a helper that gives every sublayer its own copy of one.

GPT-2 (Radford et al. 2019) and nanoGPT (`model.py`, `_init_weights`) draw every Linear and
Embedding weight from normal(mean=0, std=0.02) and start biases at zero; `gpt2_normal()` is that
initializer.

Why `clone_initializer` exists: a Keras 3 random initializer built without a seed draws one seed
when it is *constructed* and reuses it on every call, so one instance shared by two layers gives
both layers identical weights. Each layer therefore gets a fresh copy (a new seed) of the
initializer it was configured with, as KerasHub's `clone_initializer` does.
"""

import keras

# GPT-2 / nanoGPT: normal(0, 0.02) for every weight matrix and embedding table.
GPT2_INITIALIZER_STDDEV = 0.02


def gpt2_normal(stddev=GPT2_INITIALIZER_STDDEV):
    """Returns `keras.initializers.RandomNormal(mean=0.0, stddev=stddev)` (GPT-2's init)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=stddev)


def resolve_initializer(initializer):
    """Turns `None` (GPT-2's normal(0.02)), a name, a config dict or an instance into an instance.

    Args:
        initializer: `None`, a Keras initializer name such as `"glorot_uniform"`, a dict from
            `keras.initializers.serialize`, or a `keras.initializers.Initializer`.

    Returns:
        A `keras.initializers.Initializer`.
    """
    if initializer is None:
        return gpt2_normal()
    return keras.initializers.get(initializer)


def clone_initializer(initializer):
    """Returns a new initializer with the same config (and so a fresh seed when it had none).

    Args:
        initializer: a `keras.initializers.Initializer`.

    Returns:
        A new instance of the same class built from `initializer.get_config()`.
    """
    return initializer.__class__.from_config(initializer.get_config())
