"""Which checkpoint a finished run is read back from (loading itself: tests/training e2e)."""

import pytest
import tensorflow as tf

from keras_llm.evaluation.trained_runs import reported_checkpoint


def test_the_best_checkpoint_wins_over_the_latest(tmp_path):
    variable = tf.Variable(1.0)
    with pytest.raises(FileNotFoundError, match="No checkpoint in .*checkpoints"):
        reported_checkpoint(str(tmp_path))
    latest = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable),
                                        str(tmp_path / "checkpoints"), 1).save(7)
    assert reported_checkpoint(str(tmp_path)) == latest
    best = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable),
                                      str(tmp_path / "best"), 1).save(3)
    assert reported_checkpoint(str(tmp_path)) == best
