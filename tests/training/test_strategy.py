"""Strategy names, what `auto` means, and chief-only writing: `keras_llm.training.strategy`.

Everything here runs in the test process (no worker processes): TF_CONFIG and the wait for
peers are in test_cluster.py, the multi-worker runs themselves in test_multi_worker.py.
"""

import json
import os
import socket
import tempfile
import time

import pytest
import tensorflow as tf

from keras_llm.training.cluster import ClusterConfigError
from keras_llm.training.run_directory import RunDirectory
from keras_llm.training.strategy import is_chief, make_strategy, resolve_strategy_name

TWO_WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}
TWO_WORKERS_TF_CONFIG = json.dumps({"cluster": TWO_WORKERS,
                                   "task": {"type": "worker", "index": 0}})


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_strategy_checks_tf_config_before_tensorflow(monkeypatch):
    # Raised before MultiWorkerMirroredStrategy is created, so it works in a process that has
    # already run TensorFlow ops (where creating the strategy itself would fail).
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    started = time.monotonic()
    with pytest.raises(ClusterConfigError, match="TF_CONFIG has no 'cluster'"):
        make_strategy("multi_worker", cluster_timeout_seconds=5)
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ClusterConfigError, match="it is unset"):
        make_strategy("multi_worker", cluster_timeout_seconds=5)
    assert time.monotonic() - started < 1.0


def test_multi_worker_strategy_has_no_collective_timeout(monkeypatch):
    # CommunicationOptions(timeout_seconds=T) makes TF 2.21 start one thread per collective op
    # that lives T seconds: with T = 120 s a tiny GPT run on two workers grew to 12,000 threads
    # by step 1500 and crashed near step 2000. cluster_timeout_seconds bounds only the start-up.
    created = []
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy",
                        lambda **kwargs: created.append(kwargs) or "strategy")
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{_free_port()}"]},
        "task": {"type": "worker", "index": 0}}))
    assert make_strategy("multi_worker", cluster_timeout_seconds=120) == "strategy"
    options = created[0].get("communication_options")
    assert options is None or options.timeout_seconds is None


def test_multi_worker_after_other_tensorflow_ops_says_why(monkeypatch):
    # The test process has run ops already, as a program would that creates the strategy late.
    tf.constant(1.0).numpy()
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{_free_port()}"]},
        "task": {"type": "worker", "index": 0}}))
    with pytest.raises(RuntimeError, match=r"MultiWorkerMirroredStrategy must be created before "
                                           r"any other TensorFlow op runs in the process"):
        make_strategy("multi_worker", cluster_timeout_seconds=5)


@pytest.mark.parametrize("name, resolver, environ, expected", [
    ("auto", "tf_config", {}, "mirrored"),
    ("auto", "tf_config", {"TF_CONFIG": TWO_WORKERS_TF_CONFIG}, "multi_worker"),
    ("auto", "slurm", {}, "multi_worker"),
    ("one_device", "tf_config", {"TF_CONFIG": TWO_WORKERS_TF_CONFIG}, "one_device"),
    ("mirrored", "slurm", {}, "mirrored"),
])
def test_auto_is_multi_worker_when_a_cluster_is_named_else_mirrored(name, resolver, environ,
                                                                      expected):
    assert resolve_strategy_name(name, resolver, environ) == expected


def test_auto_with_a_bad_tf_config_fails_instead_of_training_alone(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}}')
    with pytest.raises(ClusterConfigError, match="TF_CONFIG has no valid 'task'"):
        make_strategy("auto", cluster_timeout_seconds=5)


def test_make_strategy_names():
    with pytest.raises(ValueError, match=r"--strategy must be one of auto, one_device, mirrored, "
                                         r"multi_worker; got 'parameter_server'"):
        make_strategy("parameter_server")
    with pytest.raises(ValueError, match=r"--cluster_resolver must be one of tf_config, slurm; "
                                         r"got 'k8s'"):
        make_strategy("multi_worker", cluster_resolver="k8s")


def test_make_strategy_uses_the_requested_number_of_logical_cpus():
    # conftest split the test process's CPU into 4 logical devices before any op ran.
    assert len(tf.config.list_logical_devices("CPU")) == 4
    two = make_strategy("mirrored", num_cpu_devices=2)
    assert isinstance(two, tf.distribute.MirroredStrategy) and two.num_replicas_in_sync == 2
    assert [d.split("/")[-1] for d in two.extended.worker_devices] == ["device:CPU:0",
                                                                       "device:CPU:1"]
    assert make_strategy("mirrored", num_cpu_devices=4).num_replicas_in_sync == 4
    assert make_strategy("auto").num_replicas_in_sync == 4  # 1 = every local device.
    one = make_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy) and one.num_replicas_in_sync == 1
    with pytest.raises(RuntimeError, match=r"--num_cpu_devices=8: TensorFlow's devices are "
                                           r"already initialized \(4 logical CPU devices\)"):
        make_strategy("mirrored", num_cpu_devices=8)


# ------------------------------------------------------------------- chief-only writing


class _FakeMultiWorkerStrategy:
    """Just enough of a MultiWorkerMirroredStrategy for `is_chief` and `RunDirectory`."""

    def __init__(self, cluster, task_type, task_id):
        self.cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)


@pytest.mark.parametrize("cluster, task_type, task_id, expected", [
    (TWO_WORKERS, "worker", 0, True),
    (TWO_WORKERS, "worker", 1, False),
    ({"chief": ["a:1"], "worker": ["b:2"]}, "chief", 0, True),
    ({"chief": ["a:1"], "worker": ["b:2"]}, "worker", 0, False),
    ({"chief": ["a:1"], "worker": ["b:2"], "evaluator": ["c:3"]}, "evaluator", 0, False),
])
def test_is_chief(cluster, task_type, task_id, expected):
    assert is_chief(_FakeMultiWorkerStrategy(cluster, task_type, task_id)) is expected


def test_single_process_strategies_are_chief():
    assert is_chief(tf.distribute.OneDeviceStrategy("/cpu:0"))
    assert is_chief(tf.distribute.get_strategy())


def test_only_the_chief_writes_to_the_model_directory(tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    model_dir = tmp_path / "run"

    worker = RunDirectory(str(model_dir), _FakeMultiWorkerStrategy(TWO_WORKERS, "worker", 1))
    assert not worker.is_chief
    assert worker.path.startswith(str(tmp_path / "tmp" / "keras_llm-worker-"))
    assert worker.checkpoint_dir == os.path.join(worker.path, "checkpoints")
    worker.write_json("results.json", {"loss": 1.0})
    with worker.summary_writer("train").as_default(step=1):
        tf.summary.scalar("loss", 1.0)
    # The worker's checkpoints go to its temporary directory, which close() removes.
    checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
    tf.train.CheckpointManager(checkpoint, worker.checkpoint_dir, max_to_keep=1).save()
    assert os.listdir(os.path.join(worker.path, "checkpoints"))
    worker.close()
    assert not os.path.exists(worker.path) and os.listdir(tmp_path / "tmp") == []
    assert not model_dir.exists()

    chief = RunDirectory(str(model_dir), _FakeMultiWorkerStrategy(TWO_WORKERS, "worker", 0))
    assert chief.is_chief and chief.path == str(model_dir)
    chief.write_json("results.json", {"loss": 1.0})
    writer = chief.summary_writer("train")
    with writer.as_default(step=1):
        tf.summary.scalar("loss", 1.0)
    writer.flush()
    chief.close()
    assert json.loads((model_dir / "results.json").read_text()) == {"loss": 1.0}
    assert len(list((model_dir / "logs" / "train").iterdir())) == 1
    assert model_dir.exists()


def test_every_worker_restores_from_the_chiefs_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model_dir = str(tmp_path / "run")
    chief = RunDirectory(model_dir, _FakeMultiWorkerStrategy(TWO_WORKERS, "worker", 0))
    worker = RunDirectory(model_dir, _FakeMultiWorkerStrategy(TWO_WORKERS, "worker", 1))
    assert chief.latest_checkpoint() is None and worker.latest_checkpoint() is None
    checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
    saved = tf.train.CheckpointManager(checkpoint, chief.checkpoint_dir, max_to_keep=1).save(7)
    assert saved == os.path.join(model_dir, "checkpoints", "ckpt-7")
    # The worker's own manager (in its temporary directory) sees nothing; the run's does.
    assert tf.train.CheckpointManager(checkpoint, worker.checkpoint_dir,
                                      max_to_keep=1).latest_checkpoint is None
    assert worker.latest_checkpoint() == chief.latest_checkpoint() == saved
    worker.close()
