"""Checkpoints in one place: what one holds, building it, restoring, rolling back, lookups.

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
    learning_rate_scale                    the factor NaN rollbacks lowered the rate by
                                           (`optimizer.ScaledSchedule.scale`)

Paths drop the model's own name, which Keras makes unique per process (`gpt_language_model_1`),
so a checkpoint restores into a model built in any process.

A training run builds the whole checkpoint (`TrainingCheckpoint`) before its first restore, so
every object exists when its values are read; nothing relies on deferred restoration. The best
checkpoint lives beside this, in `best_checkpoint.py`.
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


def make_checkpoint(model):
    """`tf.train.Checkpoint` of `model_state(model)` alone: what readers restore (no optimizer)."""
    return tf.train.Checkpoint(model=model_state(model))


class _WeightAverageState(tf.Module):
    """What a checkpoint holds of a `WeightAverage`: `weights/<name>` and `num_updates`."""

    def __init__(self, weight_average):
        super().__init__(name="weight_average_state")
        self.weights = weight_average.averages
        self.num_updates = weight_average.num_updates


def latest_checkpoint(model_dir):
    """The newest checkpoint in `model_dir/checkpoints` (a str prefix), or None."""
    return tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))


class CheckpointLayoutError(ValueError):
    """A checkpoint's weight names do not match the model it is restored into."""


def saved_weight_names(checkpoint_path):
    """The `model/weights/<name>` names a checkpoint holds (TF escapes "/" in names as ".S")."""
    prefix, suffix = "model/weights/", "/.ATTRIBUTES/VARIABLE_VALUE"
    names = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
    return {name[len(prefix):-len(suffix)].replace(".S", "/")
            for name in names if name.startswith(prefix) and name.endswith(suffix)}


def check_weight_names(model, checkpoint_path):
    """Fails, naming the weights and the likely cause, if `model`'s weights are not all saved.

    Checkpoints of keras_llm 0.1 classifiers and LSTM language models name their weights without
    the `backbone/` of 0.2's backbone + head models (see the README's changelog); they cannot be
    resumed or read by 0.2 (GPT language models kept their names and can).

    Raises:
        CheckpointLayoutError: naming up to three missing weights.
    """
    saved = saved_weight_names(checkpoint_path)
    missing = sorted(weight_name(v) for v in model.weights if weight_name(v) not in saved)
    if not missing:
        return
    if saved and not any(name.startswith("backbone/") for name in saved):
        cause = ("it was written by keras_llm 0.1, before models became a backbone and a head "
                 "(README, Changelog): retrain in a new --model_dir")
    else:
        cause = "it holds another model; use a new --model_dir or the run's own settings"
    raise CheckpointLayoutError(
        f"{checkpoint_path} does not fit this model: {cause}. Missing weights: "
        + ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        + ".")


def saved_parts(checkpoint_path):
    """The top-level names a checkpoint file holds, e.g. {"model", "optimizer", "save_counter"}."""
    names = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
    return {name.split("/", 1)[0] for name in names}


class TrainingCheckpoint:
    """The whole checkpoint of a training run, built before anything is restored.

    Args:
        model: the built `keras.Model`.
        optimizer: its built Keras optimizer (slots and `iterations`, the step counter).
        learning_rate_scale: optional float32 scalar `tf.Variable` (`ScaledSchedule.scale`).
        weight_average: optional `WeightAverage` of `model`.

    Attributes:
        checkpoint: the `tf.train.Checkpoint` of all of them (give it to a CheckpointManager).
        optimizer, learning_rate_scale, weight_average: as given.
    """

    REQUIRED_PARTS = ("model", "optimizer")

    def __init__(self, model, optimizer, learning_rate_scale=None, weight_average=None):
        self.model = model
        self.optimizer = optimizer
        self.learning_rate_scale = learning_rate_scale
        self.weight_average = weight_average
        self._parts = {"model": model_state(model), "optimizer": optimizer}
        if learning_rate_scale is not None:
            self._parts["learning_rate_scale"] = learning_rate_scale
        if weight_average is not None:
            self._parts["weight_average"] = _WeightAverageState(weight_average)
        self.checkpoint = tf.train.Checkpoint(**self._parts)

    @property
    def step(self):
        """The optimizer step (int) the model and optimizer are at."""
        return int(self.optimizer.iterations.numpy())

    def restore(self, path):
        """Restores every part of this checkpoint that the file at `path` holds.

        Optional parts may be missing from a file written without them: a weight average
        (resumed with averaging turned on) then restarts from the restored weights rather than
        keep values that belong to other weights; a learning-rate scale keeps its value.

        Returns:
            list of str, the optional parts the file lacks ("weight_average",
            "learning_rate_scale").

        Raises:
            ValueError: the file holds no model or no optimizer, naming it.
            CheckpointLayoutError: a model weight is missing from the file (another model, or
                a 0.1 classifier or LSTM run).
        """
        saved = saved_parts(path)
        absent = [name for name in self.REQUIRED_PARTS if name not in saved]
        if absent:
            raise ValueError(f"{path}: expected a training checkpoint with {' and '.join(absent)}; "
                             f"it holds {sorted(saved)}.")
        check_weight_names(self.model, path)
        present = {name: part for name, part in self._parts.items() if name in saved}
        tf.train.Checkpoint(**present).restore(path).expect_partial() \
            .assert_existing_objects_matched()
        missing = [name for name in self._parts if name not in saved]
        if "weight_average" in missing:
            self.weight_average.restart()
        return missing

    def restore_latest(self, model_dir, log=print):
        """Restores `model_dir`'s latest checkpoint if there is one.

        Every worker restores the checkpoint in the model directory: a worker other than the
        chief saves into a temporary directory, so its own manager lists nothing, and restoring
        from there would resume the chief alone. The step is the optimizer's iteration count, so
        the learning-rate schedule continues where it stopped.

        Returns:
            (step, missing): the restored step (0 without a checkpoint) and the optional parts
            the file lacks (see `restore`).
        """
        latest = latest_checkpoint(model_dir)
        if latest is None:
            return 0, []
        missing = self.restore(latest)
        log(f"Resumed from {latest} at step {self.step}.")
        return self.step, missing

    def roll_back(self, path, factor):
        """Restores `path` (NaN rollback) and multiplies the learning-rate scale by `factor`.

        The scale is read before the restore (which resets it to the checkpoint's value), so
        repeated rollbacks to the same checkpoint keep lowering it.

        Returns:
            The restored step.
        """
        lowered = float(self.learning_rate_scale.numpy()) * factor
        self.restore(path)
        self.learning_rate_scale.assign(lowered)
        return self.step


def restore_model(model, checkpoint_path):
    """Restores the model's weights (no optimizer needed) from `checkpoint_path`.

    When the run kept a moving average of the weights, the model gets the averages: they are
    what the run evaluated and reported.

    Returns:
        The step the checkpoint was saved at (the optimizer's iteration count), or None.

    Raises:
        CheckpointLayoutError: a model weight is missing from the checkpoint (another model, or
            a 0.1 classifier or LSTM run).
    """
    check_weight_names(model, checkpoint_path)
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
