"""Model, optimizer and checkpoint of a run, created in the strategy's scope and restored."""

import dataclasses

import keras
import tensorflow as tf

from keras_llm.training import optimizer as optimizer_lib
from keras_llm.training.checkpointing import TrainingCheckpoint, has_weight_average
from keras_llm.training.weight_average import WeightAverage


@dataclasses.dataclass
class TrainingState:
    """What a checkpoint saves and restores, and the manager that writes it."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    checkpoint: TrainingCheckpoint
    manager: tf.train.CheckpointManager
    weight_average: WeightAverage = None  # None unless --weight_average_decay > 0.


def create_training_state(strategy, build_model, example_inputs, train_config, train_steps,
                          run_directory, log=print):
    """Builds model, optimizer and the whole checkpoint under `strategy`, then resumes.

    Everything the checkpoint holds (model, optimizer, learning-rate scale, weight average) is
    created before the first restore, so the restore fills existing variables.

    Args:
        strategy: the run's `tf.distribute.Strategy`.
        build_model: `() -> keras.Model`, called in the strategy's scope after seeding.
        example_inputs: a batch the model is called on once, to create its variables.
        train_config: `keras_llm.config.TrainConfig` (seed, optimizer, max_checkpoints,
            weight_average_decay, ...).
        train_steps: the resolved number of optimizer steps (the learning-rate schedule's length).
        run_directory: a `RunDirectory`; checkpoints go to its `checkpoint_dir`, and every worker
            restores from the chief's latest checkpoint.
        log: a print-like function.

    Returns:
        A `TrainingState`; `optimizer.iterations` holds the step resumed from (0 for a new run).
        With `weight_average_decay > 0` it has a `WeightAverage`, restored with the rest or, when
        resuming a checkpoint saved without one, started afresh from the restored weights.
    """
    keras.utils.set_random_seed(train_config.seed)
    with strategy.scope():
        model = build_model()
        model(example_inputs)  # Create the variables.
        schedule = optimizer_lib.make_schedule(train_config, train_steps)
        optimizer = optimizer_lib.make_optimizer(model, train_config, schedule)
        optimizer.build(model.trainable_variables)
        weight_average = (WeightAverage(strategy, model, train_config.weight_average_decay)
                          if train_config.weight_average_decay else None)
    checkpoint = TrainingCheckpoint(model, optimizer, schedule.scale, weight_average)
    step, missing = checkpoint.restore_latest(run_directory.model_dir, log)
    if step and "weight_average" in missing:
        log("The checkpoint holds no weight average; averaging starts at this step.")
    elif step and weight_average is None and has_weight_average(run_directory.latest_checkpoint()):
        log("--weight_average_decay=0: the checkpoint's weight average is dropped; the raw "
            "weights are evaluated and saved from now on.")
    manager = tf.train.CheckpointManager(
        checkpoint.checkpoint, run_directory.checkpoint_dir,
        max_to_keep=train_config.max_checkpoints, step_counter=optimizer.iterations,
    )
    return TrainingState(model, optimizer, checkpoint, manager, weight_average)
