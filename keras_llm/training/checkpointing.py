"""What a checkpoint holds: the model's variables by name, and the optimizer.

Keras 3 layers are not reliably tracked by `tf.train.Checkpoint`: sublayers kept in a Python list
(our Transformer blocks) are left out of the checkpoint entirely (keras-team/keras#18398; still
so with Keras 3.15.1), and a checkpoint that restores the model only through the optimizer's
variable list breaks as soon as a reader has no optimizer (sampling, evaluation, export). So
the checkpoint names every model variable explicitly:

    model/weights/<path below the model>   e.g. backbone/transformer_block_0/.../kernel
    model/random_state/<k>                 Keras SeedGenerator states (dropout), in order
    optimizer/...                          the Keras optimizer (slots, iteration count)
    weight_average/weights/<path>          the moving average of each trainable weight, and
    weight_average/num_updates             its update count, when the run keeps one
                                           (`weight_average.WeightAverage`)

Paths drop the model's own name, which Keras makes unique per process (`gpt_language_model_1`),
so a checkpoint restores into a model built in any process.
"""

import os

import tensorflow as tf


def weight_name(variable):
    """A weight's checkpoint name: its Keras path below the model, e.g. `backbone/.../kernel`."""
    return variable.path.split("/", 1)[-1]


def model_state(model):
    """A trackable holding every variable of a built `keras.Model` under a stable name.

    Raises:
        ValueError: the model is not built, or two weights share a path.
    """
    if not model.weights:
        raise ValueError(f"Model {model.name!r} has no weights yet: call it once before checkpointing.")
    weights = {}
    for variable in model.weights:
        name = weight_name(variable)
        if name in weights:
            raise ValueError(f"Two weights of {model.name!r} share the path {variable.path!r}.")
        weights[name] = variable
    weight_ids = {id(v) for v in model.weights}
    state = tf.Module(name="model_state")
    state.weights = weights
    # Seed-generator states make dropout continue exactly after a resume.
    state.random_state = [v for v in model.variables if id(v) not in weight_ids]
    return state


def _named_weights(weights):
    state = tf.Module(name="weight_state")
    state.weights = weights
    return state


def make_checkpoint(model, optimizer=None):
    """`tf.train.Checkpoint` of `model_state(model)` and, if given, the optimizer.

    A run that keeps a weight average adds it with `attach_weight_average`.
    """
    if optimizer is None:
        return tf.train.Checkpoint(model=model_state(model))
    return tf.train.Checkpoint(model=model_state(model), optimizer=optimizer)


class _WeightAverageState(tf.Module):
    """What a checkpoint holds of a `WeightAverage`: `weights/<name>` and `num_updates`."""

    def __init__(self, weight_average):
        super().__init__(name="weight_average_state")
        self.weights = weight_average.averages
        self.num_updates = weight_average.num_updates
        self.owner = weight_average  # Not trackable: not saved, only used by restore_checkpoint.


def attach_weight_average(checkpoint, weight_average):
    """Adds a `WeightAverage` to `checkpoint` as `weight_average/weights/<name>`.

    If `checkpoint.restore` was already called, the averages take the saved values as they are
    attached (when the file has them).
    """
    checkpoint.weight_average = _WeightAverageState(weight_average)


def restore_checkpoint(checkpoint, path):
    """`checkpoint.restore(path)` during training (NaN rollback, best checkpoint).

    A checkpoint saved before the run kept a weight average (resumed with averaging turned on)
    has none: the average then restarts from the restored weights rather than keep values
    that belong to other weights.
    """
    checkpoint.restore(path).expect_partial()
    state = getattr(checkpoint, "weight_average", None)
    if state is not None and not has_weight_average(path):
        state.owner.restart()


def restore_model(model, checkpoint_path):
    """Restores the model's weights (no optimizer needed) from `checkpoint_path`.

    When the run kept a moving average of the weights, the model gets the averages: they are
    what the run evaluated and reported.

    Returns:
        The step the checkpoint was saved at (the optimizer's iteration count), or None.

    Raises:
        AssertionError: a model variable is missing from the checkpoint (another architecture).
    """
    make_checkpoint(model).restore(checkpoint_path).expect_partial().assert_existing_objects_matched()
    if has_weight_average(checkpoint_path):
        _restore_weights({weight_name(v): v for v in model.trainable_weights}, checkpoint_path)
    return checkpoint_step(checkpoint_path)


def checkpoint_step(checkpoint_path):
    """The optimizer step a checkpoint was saved at, or None (no path, or no optimizer in it)."""
    if not checkpoint_path:
        return None
    reader = tf.train.load_checkpoint(checkpoint_path)
    key = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"
    return int(reader.get_tensor(key)) if reader.has_tensor(key) else None


def has_weight_average(checkpoint_path):
    """Whether the checkpoint holds a moving average of the weights (`weight_average/...`)."""
    names = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
    return any(name.startswith("weight_average/") for name in names)


def _restore_weights(variables_by_name, checkpoint_path):
    # Saved as weight_average/weights/<name>: restore those values into `variables_by_name`.
    checkpoint = tf.train.Checkpoint(weight_average=_named_weights(variables_by_name))
    checkpoint.restore(checkpoint_path).expect_partial().assert_existing_objects_matched()


def reported_checkpoint(model_dir):
    """The checkpoint a run reported its results from: `best/` if the run kept one, else the latest.

    Raises:
        FileNotFoundError: `model_dir` holds no checkpoint.
    """
    for folder in ("best", "checkpoints"):
        path = tf.train.latest_checkpoint(os.path.join(model_dir, folder))
        if path:
            return path
    raise FileNotFoundError(f"No checkpoint in {os.path.join(model_dir, 'checkpoints')}.")
