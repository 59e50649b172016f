"""Strategy names, TF_CONFIG checks, the bounded wait for peers, SLURM, and chief-only writing.

Everything here runs in the test process (no worker processes): the multi-worker runs themselves
are in test_multi_worker.py.
"""

import json
import os
import socket
import tempfile
import threading
import time

import pytest
import tensorflow as tf

from keras_llm.training import strategy as strategy_lib
from keras_llm.training.run_directory import RunDirectory
from keras_llm.training.strategy import (ClusterConfigError, ClusterTimeoutError, is_chief,
                                         make_strategy, parse_tf_config, slurm_tf_config,
                                         wait_for_workers)

TWO_WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


def _tf_config(cluster=None, task=None):
    return json.dumps({"cluster": cluster or TWO_WORKERS,
                       "task": task or {"type": "worker", "index": 0}})


# ------------------------------------------------------------------------------- TF_CONFIG


def test_parse_tf_config_accepts_a_cluster():
    text = _tf_config({"chief": ["a:1"], "worker": ["b:2", "c:3"], "evaluator": ["d:4"]},
                      {"type": "worker", "index": 1})
    assert parse_tf_config(text) == json.loads(text)


@pytest.mark.parametrize("text, message", [
    ("", r"needs the TF_CONFIG environment variable .* it is unset"),
    ('{"cluster": {"worker": ["a:1"]}, "task": ', r"TF_CONFIG is not valid JSON \(Expecting value "
                                                  r"at line 1, column 42\)"),
    ('["a:1"]', r"TF_CONFIG must be a JSON object, got list"),
    ('{"task": {"type": "worker", "index": 0}}', r"TF_CONFIG has no 'cluster' .* got None"),
    (_tf_config({"worker": "a:1"}), r"cluster\['worker'\] must be a list of 'host:port' strings, "
                                    r"got 'a:1'"),
    (_tf_config({"worker": ["a:1", "b"]}), r"cluster\['worker'\] must be a list of 'host:port'"),
    (_tf_config({"worker": ["a:99999"]}), r"cluster\['worker'\] must be a list of 'host:port'"),
    ('{"cluster": {"worker": ["a:1"]}}', r"TF_CONFIG has no valid 'task' .* got None"),
    (_tf_config(task={"type": "worker"}), r"no valid 'task' .* got \{'type': 'worker'\}"),
    (_tf_config(task={"type": "chief", "index": 0}),
     r"task type 'chief' is not a job of the cluster \['worker'\]"),
    (_tf_config(task={"type": "worker", "index": 2}),
     r"task index 2 is out of range for job 'worker', which has 2 task\(s\)"),
    (_tf_config(task={"type": "worker", "index": -1}), r"task index -1 is out of range"),
    (_tf_config(task={"type": "worker", "index": "0"}), r"task index must be a JSON integer.*got '0'"),
    (_tf_config(task={"type": "worker", "index": True}), r"task index must be a JSON integer.*got True"),
    (_tf_config({"ps": ["a:1"], "worker": ["b:2"]}), r"job\(s\) \['ps'\]; .*parameter servers"),
    (_tf_config({"chief": ["a:1", "b:2"]}, {"type": "chief", "index": 0}),
     r"cluster\['chief'\] must have at most one task"),
    (_tf_config({"evaluator": ["a:1"]}, {"type": "evaluator", "index": 0}),
     r"neither a 'chief' nor a 'worker' 0; .* Got jobs \['evaluator'\]"),
    (_tf_config({"chief": ["a:1"], "evaluator": ["b:2"]}, {"type": "evaluator", "index": 0}),
     r"task type 'evaluator': this trainer runs only 'chief' and 'worker' tasks"),
    (_tf_config({"chief": [], "worker": []}, {"type": "worker", "index": 0}),
     r"neither a 'chief' nor a 'worker' 0"),
    (_tf_config({"chief": ["a:1"], "worker": []}, {"type": "worker", "index": 0}),
     r"task index 0 is out of range for job 'worker', which has 0 task\(s\)"),
])
def test_parse_tf_config_faults(text, message):
    with pytest.raises(ClusterConfigError, match=message):
        parse_tf_config(text)


def test_cluster_errors_are_value_errors():
    # Entry points report ValueErrors as "error: ..." and exit 1 instead of a traceback.
    assert issubclass(ClusterTimeoutError, ClusterConfigError)
    assert issubclass(ClusterConfigError, ValueError)


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


# ---------------------------------------------------------------------- waiting for workers


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_wait_for_workers_names_the_missing_worker_and_the_flag():
    own, missing = _free_port(), _free_port()
    config = {"cluster": {"worker": [f"127.0.0.1:{own}", f"127.0.0.1:{missing}"]},
              "task": {"type": "worker", "index": 0}}
    started = time.monotonic()
    with pytest.raises(ClusterTimeoutError) as error:
        wait_for_workers(config, timeout_seconds=1.0, poll_seconds=0.1)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5.0
    assert (f"worker 0 gave up after --cluster_timeout_seconds=1: not reachable: worker 1 at "
            f"127.0.0.1:{missing} (Connection refused)") in str(error.value)
    assert "raise --cluster_timeout_seconds" in str(error.value)
    # The probe's own listener is closed again: TensorFlow's server can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", own))


def test_wait_for_workers_lets_all_tasks_probe_each_other_at_once():
    # Three tasks (a chief and two workers) start probing at the same time; none has a
    # TensorFlow server yet, so each one's own listener is what the others find.
    ports = [_free_port() for _ in range(3)]
    addresses = [f"127.0.0.1:{port}" for port in ports]
    cluster = {"chief": addresses[:1], "worker": addresses[1:]}
    tasks = [("chief", 0), ("worker", 0), ("worker", 1)]
    outcomes, servers, done = {}, [], threading.Event()

    def run(number, task_type, index):
        time.sleep(1.0 if number == 2 else 0.0)  # The last task comes up 1 s after the others.
        try:
            wait_for_workers({"cluster": cluster, "task": {"type": task_type, "index": index}},
                             timeout_seconds=10, poll_seconds=0.05)
            outcomes[task_type, index] = time.monotonic()
        except ClusterTimeoutError as error:
            outcomes[task_type, index] = error
            return
        # What TensorFlow's server does next in make_strategy: listen on the task's port, so
        # peers still probing find it (the probe's own listener is closed by now).
        time.sleep(0.3)
        server = socket.create_server(("127.0.0.1", ports[number]))
        servers.append(server)
        done.wait(15)

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(n, t, i)) for n, (t, i) in enumerate(tasks)]
    for thread in threads:
        thread.start()
    while len(outcomes) < 3 and time.monotonic() - started < 15:
        time.sleep(0.05)
    done.set()
    for thread in threads:
        thread.join(5)
    for server in servers:
        server.close()
    assert not any(isinstance(o, Exception) for o in outcomes.values()), outcomes
    assert sorted(outcomes) == sorted(tasks)
    # Nobody passed before the late task was up, and everyone passed soon after.
    assert all(1.0 <= finished - started < 8.0 for finished in outcomes.values())


# ------------------------------------------------------------------------------------- SLURM

SLURM_STEP = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4",
              "SLURM_STEP_NODELIST": "node[07-08]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)"}


@pytest.fixture
def slurm_env(monkeypatch, tmp_path):
    for name in [n for n in os.environ if n.startswith("SLURM_")] + ["CUDA_VISIBLE_DEVICES"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # No nvidia-smi: a CPU-only node.
    for name, value in SLURM_STEP.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_slurm_tf_config_on_cpu_nodes(slurm_env):
    # 2 nodes x 2 tasks: consecutive ports per node, ranks in node order; rank 3 is the second
    # task on node08.
    assert slurm_tf_config(port_base=9000) == {
        "cluster": {"worker": ["node07:9000", "node07:9001", "node08:9000", "node08:9001"]},
        "task": {"type": "worker", "index": 3},
    }
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_slurm_tf_config_gives_each_task_its_gpu(slurm_env):
    slurm_env.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # 2 GPUs per node, 2 tasks per node.
    slurm_env.setenv("SLURM_PROCID", "2")
    config = slurm_tf_config()
    assert config["task"] == {"type": "worker", "index": 2}
    assert config["cluster"]["worker"][2] == "node08:8888"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"  # Rank 2 = first task on node08.


def test_slurm_tf_config_outside_slurm(slurm_env):
    slurm_env.delenv("SLURM_PROCID")
    with pytest.raises(ClusterConfigError, match=r"--cluster_resolver=slurm: SLURM_PROCID not "
                                                 r"found in environment"):
        slurm_tf_config()


def test_make_strategy_slurm_sets_tf_config_then_validates(slurm_env):
    # A two-task step in which this task has an impossible rank: TF_CONFIG is built from SLURM,
    # put in the environment, and rejected by the same checks as a hand-written one.
    slurm_env.setenv("SLURM_STEP_NUM_TASKS", "2")
    slurm_env.setenv("SLURM_STEP_NODELIST", "node1.invalid")
    slurm_env.setenv("SLURM_STEP_TASKS_PER_NODE", "2")
    slurm_env.setenv("SLURM_PROCID", "1")
    slurm_env.setenv("TF_CONFIG", "stale")
    with pytest.raises(ClusterTimeoutError,
                       match=r"worker 1 gave up .* worker 0 at node1.invalid:8888 \("):
        # .invalid never resolves (RFC 2606): the probe fails and names the address.
        strategy_lib.make_strategy("multi_worker", cluster_timeout_seconds=0.5,
                                   cluster_resolver="slurm")
    assert json.loads(os.environ["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}


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
