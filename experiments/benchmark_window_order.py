r"""Memory and start-up time of the training window order, by corpus size. Examples:

    python -m experiments.benchmark_window_order --num_tokens=1000000,5000000,20000000
    python -m experiments.benchmark_window_order --num_tokens=2000000 --sequence_length=256 \
        --output=order.json

For every corpus size (synthetic token ids) and both orders that `training_dataset` can draw
(`Dataset.shuffle` of every window start, or the per-epoch permutation it uses above
`MAX_BUFFERED_WINDOWS`; see `keras_llm/data/language_model_dataset.py`), a fresh process builds
the training pipeline at the main job's shape and prints:
- the growth of its peak resident memory (max RSS) over the ids and TensorFlow alone, up to
  the end of the timed batches;
- seconds to the first batch, and to the first batch of a run resumed half-way into epoch 2;
- milliseconds per batch after that (the pipeline alone, no training step).
Sizes and times are of one run on a shared machine: compare the two orders within a run.
"""

import json
import resource
import subprocess
import sys
import time

from absl import app, flags, logging

from experiments.command import check_flags, run

ORDERS = ("buffered", "permutation")
flags.DEFINE_list("num_tokens", ["1000000", "5000000"], "Corpus sizes, in tokens.")
flags.DEFINE_integer("sequence_length", 64, "Tokens per window (the main job's).", lower_bound=1)
flags.DEFINE_integer("batch_size", 12, "Windows per batch (the main job's).", lower_bound=1)
flags.DEFINE_integer("batches", 200, "Batches timed after the first.", lower_bound=1)
flags.DEFINE_string("output", None, "Also write the figures as JSON to this file.")
flags.DEFINE_enum("measure", None, ORDERS, "Internal: measure one order in this process.")
FLAGS = flags.FLAGS


def _sizes():
    if not FLAGS.num_tokens:
        raise ValueError("--num_tokens: expected one or more corpus sizes in tokens, e.g. "
                         "--num_tokens=1000000,5000000; got none.")
    sizes = []
    for value in FLAGS.num_tokens:
        if not value.isdigit() or int(value) <= FLAGS.sequence_length:
            raise ValueError(f"--num_tokens: expected integers above --sequence_length="
                             f"{FLAGS.sequence_length}; got {value!r}.")
        sizes.append(int(value))
    return sizes


def _max_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kibibytes.


def _measure(num_tokens, order):
    """One order at one size in this process: a dict of figures."""
    import numpy as np
    import tensorflow as tf

    from keras_llm.data.language_model_dataset import training_dataset

    ids = np.random.default_rng(0).integers(0, 67, num_tokens).astype(np.int32)
    tf.constant(ids)  # TensorFlow's runtime and one copy of the ids, as the pipeline holds.
    before = _max_rss_bytes()
    num_windows = num_tokens - FLAGS.sequence_length
    threshold = num_windows if order == "buffered" else 0  # Forces that order at any size.

    def first_batch_seconds(start_step):
        start = time.perf_counter()
        iterator = iter(training_dataset(ids, FLAGS.sequence_length, FLAGS.batch_size, seed=0,
                                         start_step=start_step, max_buffered_windows=threshold))
        next(iterator)
        return time.perf_counter() - start, iterator

    first, iterator = first_batch_seconds(0)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        next(iterator)
    per_batch = (time.perf_counter() - start) / FLAGS.batches
    growth = _max_rss_bytes() - before  # Before the resumed pipeline adds its own.
    del iterator
    resumed, _ = first_batch_seconds(int(1.5 * num_windows) // FLAGS.batch_size)
    return {"num_tokens": num_tokens, "order": order, "windows": num_windows,
            "max_rss_growth_bytes": growth, "first_batch_seconds": first,
            "resumed_first_batch_seconds": resumed, "ms_per_batch": 1000 * per_batch}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    sizes, status = check_flags(_sizes)  # Imports TensorFlow quietly, as every command does.
    if status:
        return status
    if FLAGS.measure:
        print(json.dumps(_measure(sizes[0], FLAGS.measure)))
        return 0
    from keras_llm.generation.benchmark import machine_description, machine_line

    machine = machine_description()
    print(machine_line(machine))
    print(f"{'tokens':>12} {'order':<12} {'max RSS growth':>16} {'first batch':>12} "
          f"{'resumed':>9} {'ms/batch':>9}")
    rows = []
    for num_tokens in sizes:
        for order in ORDERS:
            command = [sys.executable, "-m", "experiments.benchmark_window_order",
                       f"--measure={order}", f"--num_tokens={num_tokens}",
                       f"--sequence_length={FLAGS.sequence_length}",
                       f"--batch_size={FLAGS.batch_size}", f"--batches={FLAGS.batches}"]
            process = subprocess.run(command, capture_output=True, text=True)
            if process.returncode != 0:
                print(f"error: {order} at {num_tokens:,} tokens failed: "
                      f"{process.stderr[-2000:]}", file=sys.stderr)
                return 1
            row = json.loads(process.stdout.strip().splitlines()[-1])
            rows.append(row)
            mebibytes = row["max_rss_growth_bytes"] / 2**20
            print(f"{num_tokens:>12,} {order:<12} {mebibytes:>12,.0f} MiB "
                  f"{row['first_batch_seconds']:>10.2f} s "
                  f"{row['resumed_first_batch_seconds']:>7.2f} s {row['ms_per_batch']:>9.3f}",
                  flush=True)
    if FLAGS.output:
        from keras_llm.training.atomic_files import write_json
        write_json(FLAGS.output, {"machine": machine, "rows": rows})
    return 0


if __name__ == "__main__":
    run(main, __doc__)
