"""Maps a strategy name to a `tf.distribute.Strategy`.

One small function, as in TF Model Garden's `distribute_utils.get_distribution_strategy`: the
trainer is the same code under every strategy, and only this module knows their names. Where a
multi-worker cluster comes from (TF_CONFIG, SLURM) and how its peers are awaited is
`keras_llm.training.cluster`.
"""

import tensorflow as tf

from keras_llm.config import CLUSTER_RESOLVERS, STRATEGIES
from keras_llm.training import cluster as cluster_lib


def split_cpu(num_cpu_devices):
    """Splits the host CPU into `num_cpu_devices` logical devices.

    This lets data parallelism run, and be tested, without accelerators: MirroredStrategy then
    keeps one replica per logical CPU. It must run before TensorFlow initializes its devices
    (before any op runs); calling it later raises. A CPU already split into at least
    `num_cpu_devices` devices is left as it is (`make_strategy` then uses the first ones), so a
    process split once (e.g. a test session into 4) can run 1, 2 and 4 replicas.

    Args:
        num_cpu_devices: int >= 1. 1 leaves the CPU as it is (already split or not).

    Raises:
        ValueError: `num_cpu_devices` < 1.
        RuntimeError: TensorFlow's devices were already initialized with fewer devices.
    """
    if num_cpu_devices < 1:
        raise ValueError(f"--num_cpu_devices must be >= 1, got {num_cpu_devices}.")
    if num_cpu_devices == 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) >= num_cpu_devices:
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


def resolve_strategy_name(name, cluster_resolver="tf_config", environ=None):
    """The strategy `name` stands for: "auto" becomes "multi_worker" or "mirrored".

    Args:
        name: one of `STRATEGIES`.
        cluster_resolver: one of `CLUSTER_RESOLVERS`.
        environ: the environment to read (default `os.environ`).

    Returns:
        `name` itself unless it is "auto"; for "auto", "multi_worker" when the environment names
        a cluster (`TF_CONFIG` is set, or `cluster_resolver` is "slurm"), else "mirrored".
    """
    if name != "auto":
        return name
    return "multi_worker" if cluster_lib.cluster_is_named(cluster_resolver, environ) else "mirrored"


def make_strategy(name, num_cpu_devices=1, cluster_timeout_seconds=None,
                  cluster_resolver="tf_config"):
    """Returns the `tf.distribute.Strategy` called `name`.

    Args:
        name: one of `STRATEGIES`:
            - "auto": "multi_worker" when the environment names a cluster (`TF_CONFIG` is set,
              or `cluster_resolver` is "slurm"), else "mirrored" (`resolve_strategy_name`).
            - "one_device": OneDeviceStrategy on the first GPU, else the CPU.
            - "mirrored": MirroredStrategy over all local devices: the GPUs, else the first
              `num_cpu_devices` logical CPUs (all of them for 1); OneDeviceStrategy when that
              is a single device (it skips the all-reduce).
            - "multi_worker": MultiWorkerMirroredStrategy configured by `TF_CONFIG`. It must be
              created before any other TensorFlow op runs in the process.
        num_cpu_devices: split the host CPU into this many logical devices first (see
            `split_cpu`); if it is already split into more, use the first `num_cpu_devices`.
        cluster_timeout_seconds: multi_worker only; how long to wait for the other workers to
            come up (`cluster.wait_for_workers`). None or 0: wait as long as TensorFlow does
            (forever).
        cluster_resolver: multi_worker only; "tf_config" reads `TF_CONFIG`; "slurm" builds it
            from the SLURM job step (`cluster.slurm_tf_config`) and sets it in the environment.

    Raises:
        ValueError: unknown `name` or `cluster_resolver`.
        ClusterConfigError: `TF_CONFIG` is missing or malformed for "multi_worker".
        ClusterTimeoutError: other workers did not come up within `cluster_timeout_seconds`.
        RuntimeError: "multi_worker" after TensorFlow has already run an op.
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}; got {name!r}.")
    if cluster_resolver not in CLUSTER_RESOLVERS:
        raise ValueError(f"--cluster_resolver must be one of {', '.join(CLUSTER_RESOLVERS)}; got "
                         f"{cluster_resolver!r}.")
    name = resolve_strategy_name(name, cluster_resolver)
    if name == "multi_worker":
        # Validate TF_CONFIG before TensorFlow reads it, so mistakes fail in seconds, not hang.
        cluster_lib.join_cluster(cluster_resolver, cluster_timeout_seconds)
        # No CommunicationOptions(timeout_seconds): TF 2.21 starts one thread per collective op
        # that sleeps for the whole timeout, so a 120 s timeout at ~10 collectives per step and
        # 30 steps/s keeps ~36,000 threads alive; measured, a run crashed near step 2000 with
        # "Resource temporarily unavailable". A peer that dies mid-run is caught without it: its
        # closed socket aborts the collectives, and the coordination service's heartbeats.
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            if "startup" not in str(error):
                raise
            raise RuntimeError(
                "--strategy=multi_worker: MultiWorkerMirroredStrategy must be created before any "
                f"other TensorFlow op runs in the process ({error})."
            ) from error
    split_cpu(num_cpu_devices)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    devices = [d.name for d in gpus] or (cpus[:num_cpu_devices] if num_cpu_devices > 1 else cpus)
    if len(devices) == 1:
        # MirroredStrategy over one device works, but OneDeviceStrategy skips the all-reduce.
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=None if gpus else tf.distribute.ReductionToOneDevice()
    )
