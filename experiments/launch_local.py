r"""Runs a training command as N workers on this machine: multi-worker training on loopback ports.

Examples:

    python -m experiments.launch_local --num_workers=2 --threads_per_worker=1 -- \
        python -m experiments.train_lm --strategy=multi_worker --model_dir=runs/mw
    python -m experiments.launch_local --num_workers=2 --timeout_seconds=600 -- \
        python -m experiments.train_classifier --strategy=multi_worker --data_dir=../shared/data/sst2

Every worker runs the command after `--` with its own TF_CONFIG (worker 0 is the chief); each
output line is prefixed with `[worker i]`. The launcher exits with the first non-zero worker
status after stopping the others (SIGTERM, then SIGKILL after --grace_seconds), 124 after
--timeout_seconds, and forwards SIGINT/SIGTERM to the workers. On a real cluster the cluster
manager starts the workers instead; see docs/cluster.md. A missing command exits 2 (a usage
error, as argparse reports one); bad flag values are absl usage errors (status 1).
"""

import sys

from absl import flags

from experiments.command import run
from keras_llm.training import launcher

flags.DEFINE_integer("num_workers", 2, "Worker processes to start (worker 0 is the chief).",
                     lower_bound=1)
flags.DEFINE_float("timeout_seconds", 0, "Stop every worker after this many seconds and exit "
                   "with 124; 0 = no limit.", lower_bound=0)
flags.DEFINE_integer("threads_per_worker", 0, "Cap each worker's TensorFlow inter/intra-op thread "
                     "pools and OpenMP (TF_NUM_INTEROP_THREADS, TF_NUM_INTRAOP_THREADS, "
                     "OMP_NUM_THREADS) at this many; 0 = "
                     "TensorFlow's default (one per core, in every worker).", lower_bound=0)
flags.DEFINE_float("grace_seconds", launcher.DEFAULT_GRACE_SECONDS,
                   "Seconds a worker has to exit after SIGTERM before it is killed.", lower_bound=0)
FLAGS = flags.FLAGS


def main(argv):
    try:
        return launcher.launch_local(
            argv[1:], FLAGS.num_workers, timeout_seconds=FLAGS.timeout_seconds or None,
            threads_per_worker=FLAGS.threads_per_worker, grace_seconds=FLAGS.grace_seconds,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    run(main, __doc__)
