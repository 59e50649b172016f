"""Maps a strategy name to a `tf.distribute.Strategy`.

One small function, as in TF Model Garden's `distribute_utils.get_distribution_strategy`: the
trainer is the same code under every strategy, and only this module knows their names.
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


class ClusterConfigError(ValueError):
    """`TF_CONFIG` is malformed or does not describe this worker."""


def split_cpu(num_cpu_devices):
    """Splits the host CPU into `num_cpu_devices` logical devices.

    This lets data parallelism run, and be tested, without accelerators: MirroredStrategy then
    keeps one replica per logical CPU. It must run before TensorFlow initializes its devices
    (before any op runs); calling it later raises.

    Args:
        num_cpu_devices: int >= 1. 1 leaves the CPU as it is (already split or not).

    Raises:
        ValueError: `num_cpu_devices` < 1.
        RuntimeError: TensorFlow's devices were already initialized with another split.
    """
    if num_cpu_devices < 1:
        raise ValueError(f"--num_cpu_devices must be >= 1, got {num_cpu_devices}.")
    if num_cpu_devices == 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) == num_cpu_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices
        )
    except RuntimeError as error:
        raise RuntimeError(
            f"--num_cpu_devices={num_cpu_devices}: TensorFlow's devices are already initialized "
            f"({len(tf.config.list_logical_devices('CPU'))} logical CPU devices); split the CPU "
            "before any TensorFlow op runs."
        ) from error


def parse_tf_config(text):
    """Parses and checks a `TF_CONFIG` JSON string.

    Args:
        text: the value of the `TF_CONFIG` environment variable, e.g.
            `{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}`.

    Returns:
        The parsed dict.

    Raises:
        ClusterConfigError: malformed JSON, missing `cluster` or `task`, a task type not in the
            cluster, an index out of range, or a cluster with neither a chief nor a worker 0.
    """
    if not text:
        raise ClusterConfigError(
            "--strategy=multi_worker needs the TF_CONFIG environment variable (JSON with 'cluster' "
            "and 'task'); it is unset. See BUILD.md, 'Multi-worker training'."
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
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ClusterConfigError(
                f"TF_CONFIG cluster[{job!r}] must be a list of 'host:port' strings, got {addresses!r}."
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
    if not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise ClusterConfigError(
            f"TF_CONFIG task index {index!r} is out of range for job {task_type!r}, which has "
            f"{len(cluster[task_type])} task(s)."
        )
    if not cluster.get("chief") and not cluster.get("worker"):
        raise ClusterConfigError(
            "TF_CONFIG cluster has neither a 'chief' nor a 'worker' 0; one of them must exist to "
            f"act as the chief. Got jobs {sorted(cluster)}."
        )
    return config


def is_chief(strategy):
    """Whether this process is the chief: the one that writes checkpoints, summaries and results.

    Single-process strategies are always chief. Under MultiWorkerMirroredStrategy the chief is
    the `chief` task if the cluster has one, else worker 0 (TensorFlow's convention).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def make_strategy(name, num_cpu_devices=1, cluster_timeout_seconds=None):
    """Returns the `tf.distribute.Strategy` called `name`.

    Args:
        name: one of `STRATEGIES`:
            - "auto": MirroredStrategy over all local devices (GPUs, else the logical CPUs).
            - "one_device": OneDeviceStrategy on the first GPU, else the CPU.
            - "mirrored": MirroredStrategy over all local devices.
            - "multi_worker": MultiWorkerMirroredStrategy configured by `TF_CONFIG`.
        num_cpu_devices: split the host CPU into this many logical devices first (see `split_cpu`).
        cluster_timeout_seconds: multi_worker only; how long to wait for the other workers
            before failing (None: TensorFlow's default, wait forever).

    Raises:
        ValueError: unknown `name`.
        ClusterConfigError: `TF_CONFIG` is missing or malformed for "multi_worker".
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}; got {name!r}.")
    if name == "multi_worker":
        # Validate TF_CONFIG before TensorFlow reads it, so mistakes fail in seconds, not hang.
        parse_tf_config(os.environ.get("TF_CONFIG", ""))
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=cluster_timeout_seconds
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        return strategy
    split_cpu(num_cpu_devices)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) == 1:
        # MirroredStrategy over one device works, but OneDeviceStrategy skips the all-reduce.
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=None if gpus else tf.distribute.ReductionToOneDevice()
    )
