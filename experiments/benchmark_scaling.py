r"""Data-parallel throughput: 1 vs 2 logical devices, and 1 vs 2 local workers, with ratios.

Examples:

    python -m experiments.benchmark_scaling --preset=shakespeare_char --steps=100
    python -m experiments.benchmark_scaling --preset=shakespeare_char_lstm --batch_size=24

Each configuration runs `experiments.benchmark_train` in a fresh process (the logical-device
split and MultiWorkerMirroredStrategy are per process) at the same GLOBAL batch, so the ratio is
the speed-up of the same optimization. Workers run through `experiments.launch_local` on
loopback ports, one CPU thread pool share each. On a 2-core machine expect ratios near or
below 1: the replicas share the same two cores, and the all-reduce is extra work.
"""

import re
import subprocess
import sys

from absl import flags

from experiments.command import check_flags, run
from keras_llm import presets

flags.DEFINE_string("preset", "shakespeare_char", "Language-model preset whose step is timed.")
flags.DEFINE_integer("steps", 100, "Timed steps per configuration.", lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Global batch (default: the preset's); must be even.",
                     lower_bound=2)
flags.register_validator("batch_size", lambda value: value is None or value % 2 == 0,
                         message="--batch_size must be even: it is split over 2 replicas.")
flags.DEFINE_integer("timeout_seconds", 900, "Limit for each configuration.", lower_bound=1)
FLAGS = flags.FLAGS

_FIGURE = re.compile(r"tokens/s:\s*([\d,]+)")


def _tokens_per_second(command):
    process = subprocess.run(command, capture_output=True, text=True,
                             timeout=FLAGS.timeout_seconds)
    figures = _FIGURE.findall(process.stdout)
    if process.returncode != 0 or not figures:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n"
                           f"{process.stdout[-2000:]}\n{process.stderr[-2000:]}")
    return float(figures[0].replace(",", ""))  # launch_local: the first worker's (chief) line.


def main(argv):
    del argv
    # This process only starts the benchmarks: no TensorFlow here.
    _, status = check_flags(lambda: presets.language_model_config(FLAGS.preset),
                            import_tensorflow=False)
    if status:
        return status
    benchmark = [sys.executable, "-m", "experiments.benchmark_train", f"--preset={FLAGS.preset}",
                 f"--steps={FLAGS.steps}"]
    if FLAGS.batch_size:
        benchmark.append(f"--batch_size={FLAGS.batch_size}")
    launch = [sys.executable, "-m", "experiments.launch_local", "--threads_per_worker=1",
              f"--timeout_seconds={FLAGS.timeout_seconds}"]
    runs = {
        "1 device": benchmark + ["--strategy=one_device"],
        "2 logical devices": benchmark + ["--strategy=mirrored", "--num_cpu_devices=2"],
        "1 worker": launch + ["--num_workers=1", "--"] + benchmark + ["--strategy=multi_worker"],
        "2 workers": launch + ["--num_workers=2", "--"] + benchmark + ["--strategy=multi_worker"],
    }
    figures = {}
    for name, command in runs.items():
        figures[name] = _tokens_per_second(command)
        print(f"{name:>18}: {figures[name]:>10,.0f} tokens/s", flush=True)
    print(f"2 devices / 1 device:   {figures['2 logical devices'] / figures['1 device']:.2f}x")
    print(f"2 workers / 1 worker:   {figures['2 workers'] / figures['1 worker']:.2f}x")
    return 0


if __name__ == "__main__":
    run(main, __doc__)
