"""The cluster a multi-worker run joins: TF_CONFIG checks, a bounded wait for peers, SLURM.

`MultiWorkerMirroredStrategy` reads its cluster from the `TF_CONFIG` environment variable and,
given a mistake there, fails late or hangs. Everything here runs before the strategy exists and
without TensorFlow (SLURM's resolver imports it when called), so a bad cluster fails in seconds,
naming the task, the address and the flag. `keras_llm.training.strategy` calls it.
"""

import errno
import json
import os
import shutil
import socket
import subprocess
import time

# The jobs a MultiWorkerMirroredStrategy cluster may name ("evaluator" runs beside it, unsynced).
_COLLECTIVE_JOBS = ("chief", "worker")


class ClusterConfigError(ValueError):
    """`TF_CONFIG` is malformed or does not describe this worker."""


class ClusterTimeoutError(ClusterConfigError):
    """Other workers named in `TF_CONFIG` did not come up within the cluster timeout."""


def parse_tf_config(text):
    """Parses and checks a `TF_CONFIG` JSON string.

    Args:
        text: the value of the `TF_CONFIG` environment variable, e.g.
            `{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}`.

    Returns:
        The parsed dict.

    Raises:
        ClusterConfigError: malformed JSON, missing `cluster` or `task`, an address that is not
            "host:port", a job other than chief/worker/evaluator, more than one chief, a task type
            not in the cluster or other than chief/worker, an index out of range, or a cluster
            with neither a chief nor a worker 0.
    """
    if not text:
        raise ClusterConfigError(
            "--strategy=multi_worker needs the TF_CONFIG environment variable (JSON with 'cluster' "
            "and 'task'); it is unset. See docs/cluster.md."
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClusterConfigError(
            f"TF_CONFIG is not valid JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}): {text!r}"
        ) from None
    if not isinstance(config, dict):
        raise ClusterConfigError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}.")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterConfigError(
            "TF_CONFIG has no 'cluster' (expected e.g. {\"worker\": [\"host:port\", ...]}); got "
            f"{cluster!r}."
        )
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(_is_address(a) for a in addresses):
            raise ClusterConfigError(
                f"TF_CONFIG cluster[{job!r}] must be a list of 'host:port' strings, got {addresses!r}."
            )
    unsupported = sorted(set(cluster) - {*_COLLECTIVE_JOBS, "evaluator"})
    if unsupported:
        raise ClusterConfigError(
            f"TF_CONFIG cluster has job(s) {unsupported}; MultiWorkerMirroredStrategy takes only "
            "'chief', 'worker' (and a side-car 'evaluator'); parameter servers ('ps') are not "
            "supported."
        )
    if len(cluster.get("chief", [])) > 1:
        raise ClusterConfigError(
            f"TF_CONFIG cluster['chief'] must have at most one task, got {cluster['chief']!r}."
        )
    if not cluster.get("chief") and not cluster.get("worker"):
        raise ClusterConfigError(
            "TF_CONFIG cluster has neither a 'chief' nor a 'worker' 0; one of them must exist to "
            f"act as the chief. Got jobs {sorted(cluster)}."
        )
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ClusterConfigError(
            f"TF_CONFIG has no valid 'task' (expected {{\"type\": \"worker\", \"index\": 0}}); got {task!r}."
        )
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise ClusterConfigError(
            f"TF_CONFIG task type {task_type!r} is not a job of the cluster {sorted(cluster)}."
        )
    if task_type not in _COLLECTIVE_JOBS:
        raise ClusterConfigError(
            f"TF_CONFIG task type {task_type!r}: this trainer runs only 'chief' and 'worker' "
            "tasks (a cluster may list an 'evaluator', but none is started here)."
        )
    if isinstance(index, bool) or not isinstance(index, int):
        raise ClusterConfigError(
            f"TF_CONFIG task index must be a JSON integer (e.g. \"index\": 0); got {index!r}."
        )
    if not 0 <= index < len(cluster[task_type]):
        raise ClusterConfigError(
            f"TF_CONFIG task index {index!r} is out of range for job {task_type!r}, which has "
            f"{len(cluster[task_type])} task(s)."
        )
    return config


def _is_address(address):
    if not isinstance(address, str):
        return False
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def _split_address(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)  # "[::1]:2222" -> ("::1", 2222)


def _listen(address):
    """A TCP listener on this task's own port, so peers probing it see it up; None if taken."""
    host, port = _split_address(address)
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            listener.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRNOTAVAIL:
                raise
            # The name resolves to an address that is not on this host (e.g. behind a NAT or a
            # Kubernetes Service); TensorFlow's server listens on every interface, so do we.
            listener.bind(("", port))
        listener.listen(128)  # The kernel completes the peers' connects; nothing is accepted.
    except OSError:
        listener.close()
        return None  # In use (or not ours to bind): TensorFlow's own server will say why.
    return listener


def wait_for_workers(tf_config, timeout_seconds, poll_seconds=0.25):
    """Waits until every other chief and worker task of `tf_config` accepts TCP connections.

    MultiWorkerMirroredStrategy, once created, waits for every task to register with the
    coordination service, and neither its `CommunicationOptions(timeout_seconds)` (collectives
    only) nor the coordination service bounds that wait: measured with TF 2.21, a worker whose
    peer never starts hung for 13 minutes with a 10 s timeout, ignoring SIGTERM. So the peers are
    probed here, in Python, before the strategy exists. Each task listens on its own port while
    it probes (TensorFlow's server takes the port over right after), so all tasks can probe at
    once; a task that is late, crashed or at a wrong address is named in the error.

    Args:
        tf_config: a dict as returned by `parse_tf_config`.
        timeout_seconds: give up after this many seconds.
        poll_seconds: pause between rounds of connection attempts.

    Raises:
        ClusterTimeoutError: some tasks were not reachable in time; names each task, its
            address, the last connection error, and the flag `--cluster_timeout_seconds`.
    """
    cluster, task = tf_config["cluster"], tf_config["task"]
    peers = {(job, index): address for job in _COLLECTIVE_JOBS
             for index, address in enumerate(cluster.get(job, []))}
    own_address = peers.pop((task["type"], task["index"]), None)
    listener = _listen(own_address) if own_address else None
    deadline = time.monotonic() + timeout_seconds
    errors = {}
    try:
        while peers:
            for key, address in list(peers.items()):
                remaining = max(deadline - time.monotonic(), 0.05)
                try:
                    socket.create_connection(_split_address(address), min(remaining, 2.0)).close()
                    del peers[key]
                except OSError as error:  # Refused, unresolvable name, unreachable, timed out.
                    errors[key] = error.strerror or str(error) or type(error).__name__
            if not peers:
                break
            if time.monotonic() >= deadline:
                missing = ", ".join(f"{job} {index} at {peers[job, index]} ({errors[job, index]})"
                                    for job, index in sorted(peers))
                raise ClusterTimeoutError(
                    f"--strategy=multi_worker: {task['type']} {task['index']} gave up after "
                    f"--cluster_timeout_seconds={timeout_seconds:g}: not reachable: {missing}. "
                    "Start every task with the same TF_CONFIG cluster (and its own task), check "
                    "the addresses, or raise --cluster_timeout_seconds."
                )
            time.sleep(poll_seconds)
    finally:
        if listener is not None:
            listener.close()


def slurm_tf_config(port_base=8888):
    """The TF_CONFIG dict of this task of a SLURM job step (`srun`), one worker per SLURM task.

    Uses `tf.distribute.cluster_resolver.SlurmClusterResolver`, which reads SLURM_PROCID,
    SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST and SLURM_STEP_TASKS_PER_NODE; tasks on one node
    get consecutive ports from `port_base`; task 0 (worker 0) is the chief. With GPUs, the
    resolver also sets CUDA_VISIBLE_DEVICES so tasks sharing a node use different GPUs. On
    CPU-only nodes the resolver's GPU packing divides by zero (0 GPUs per task), so it is given
    one placeholder GPU per task and told not to touch CUDA_VISIBLE_DEVICES.

    Returns:
        {"cluster": {"worker": ["node1:8888", ...]}, "task": {"type": "worker", "index": rank}}.

    Raises:
        ClusterConfigError: not inside a SLURM step (a variable is missing) or inconsistent
            variables; the message names the variable.
    """
    import tensorflow as tf  # Only here: the rest of the module runs without TensorFlow.

    resolver_class = tf.distribute.cluster_resolver.SlurmClusterResolver
    try:
        if _visible_gpu_count():
            resolver = resolver_class(port_base=port_base)
        else:
            num_tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", "1"))
            resolver = resolver_class(port_base=port_base, gpus_per_node=num_tasks,
                                      gpus_per_task=1, auto_set_gpu=False)
        cluster = resolver.cluster_spec().as_dict()
    except (RuntimeError, ValueError, KeyError) as error:
        raise ClusterConfigError(f"--cluster_resolver=slurm: {error}") from None
    return {"cluster": cluster, "task": {"type": resolver.task_type, "index": resolver.task_id}}


def _visible_gpu_count():
    # Counted without TensorFlow: touching CUDA here would fix the visible GPUs before the
    # resolver can set CUDA_VISIBLE_DEVICES.
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return len([d for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        output = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True,
                                timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in output.splitlines())


def cluster_is_named(cluster_resolver, environ=None):
    """Whether the environment names a multi-worker cluster; what `--strategy=auto` asks.

    Args:
        cluster_resolver: "tf_config" or "slurm" (`keras_llm.config.CLUSTER_RESOLVERS`).
        environ: the environment to read (default `os.environ`).

    Returns:
        True for `--cluster_resolver=slurm`, or for "tf_config" when `TF_CONFIG` is set and not
        empty (a malformed one is then rejected by `parse_tf_config`, not silently ignored).
    """
    environ = os.environ if environ is None else environ
    return cluster_resolver == "slurm" or bool(environ.get("TF_CONFIG", "").strip())


def join_cluster(cluster_resolver, timeout_seconds):
    """Sets up `TF_CONFIG` for this task and waits for its peers; returns the parsed config.

    Args:
        cluster_resolver: "tf_config" reads `TF_CONFIG`; "slurm" builds it from the SLURM job
            step (`slurm_tf_config`) and sets it in the environment for TensorFlow to read.
        timeout_seconds: wait at most this long for the other tasks (`wait_for_workers`);
            None or 0: do not wait here (TensorFlow then waits forever).

    Returns:
        The `TF_CONFIG` dict, as `parse_tf_config` returns it.

    Raises:
        ClusterConfigError: `TF_CONFIG` is missing or malformed, or SLURM variables are.
        ClusterTimeoutError: the other tasks were not reachable within `timeout_seconds`.
    """
    if cluster_resolver == "slurm":
        os.environ["TF_CONFIG"] = json.dumps(slurm_tf_config())
    tf_config = parse_tf_config(os.environ.get("TF_CONFIG", ""))
    if timeout_seconds:
        wait_for_workers(tf_config, timeout_seconds)
    return tf_config


def is_chief_task(environ=None):
    """Whether this process is the cluster's chief: what writes a run's outputs (and exports).

    Without `TF_CONFIG` a process trains alone and is its own chief; with it, the chief is the
    task of type "chief", or worker 0 when the cluster has no chief (MultiWorkerMirroredStrategy's
    rule).

    Raises:
        ClusterConfigError: `TF_CONFIG` is set but malformed (`parse_tf_config`).
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return True
    config = parse_tf_config(text)
    task = config["task"]
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and int(task["index"]) == 0 and "chief" not in config["cluster"]
