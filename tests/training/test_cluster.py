"""TF_CONFIG checks, the bounded wait for peers, and SLURM: `keras_llm.training.cluster`.

Nothing here needs TensorFlow (SLURM's resolver imports it when called): the module runs before
a strategy exists. The multi-worker runs themselves are in test_multi_worker.py.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from keras_llm.training.cluster import (ClusterConfigError, ClusterTimeoutError,
                                        cluster_is_named, join_cluster, parse_tf_config,
                                        slurm_tf_config, wait_for_workers)
from tests.conftest import REPO_ROOT

TWO_WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


def _tf_config(cluster=None, task=None):
    return json.dumps({"cluster": cluster or TWO_WORKERS,
                       "task": task or {"type": "worker", "index": 0}})


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_cluster_module_does_not_import_tensorflow():
    # So the commands can check TF_CONFIG, like their flags, before TensorFlow loads.
    code = ("import sys; import keras_llm.training.cluster; "
            "print('tensorflow' in sys.modules)")
    process = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=60, check=True)
    assert process.stdout == "False\n"


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


# ---------------------------------------------------------------------- waiting for workers


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


def test_join_cluster_slurm_sets_tf_config_then_validates(slurm_env):
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
        join_cluster("slurm", timeout_seconds=0.5)
    assert json.loads(os.environ["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}


# --------------------------------------------------------------------- which cluster, if any


@pytest.mark.parametrize("resolver, environ, expected", [
    ("tf_config", {}, False),
    ("tf_config", {"TF_CONFIG": ""}, False),
    ("tf_config", {"TF_CONFIG": "  "}, False),
    ("tf_config", {"TF_CONFIG": "{}"}, True),  # Named, if badly: parse_tf_config says why.
    ("slurm", {}, True),
])
def test_cluster_is_named(resolver, environ, expected):
    assert cluster_is_named(resolver, environ) is expected


def test_join_cluster_returns_the_checked_tf_config(monkeypatch):
    text = _tf_config({"worker": [f"127.0.0.1:{_free_port()}"]})
    monkeypatch.setenv("TF_CONFIG", text)
    started = time.monotonic()
    assert join_cluster("tf_config", timeout_seconds=5) == json.loads(text)  # No peers to wait for.
    assert time.monotonic() - started < 1.0
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ClusterConfigError, match="TF_CONFIG has no 'cluster'"):
        join_cluster("tf_config", timeout_seconds=5)
