"""Stopping a training run cleanly on SIGINT or SIGTERM: finish the step, save, exit.

A cluster scheduler (Kubernetes, SLURM, a preemptible VM) asks a job to stop with SIGTERM and
kills it a grace period later; a user presses Ctrl-C (SIGINT). Either way the loop should not
lose the steps since the last periodic checkpoint. While `StopSignals` is active, a signal only
records that a stop was asked for; the loop checks `stop_requested()` once per step, after the
step's update, summaries and checkpoint, saves a checkpoint at that step and raises
`TrainingInterrupted`. Rerunning the same command resumes there exactly (the checkpoint holds
the optimizer step, the data position follows from it, and so does the learning rate).

Under MultiWorkerMirroredStrategy the signal may reach the workers at different steps (or only
one of them), but every worker must save at the same step: a checkpoint save runs collective
ops. So `stop_requested()` sums each worker's flag with one small all-reduce per step, and all
workers stop after the same step. TensorFlow's `PreemptionCheckpointHandler` does the same
through the coordination service, but it only reacts to SIGTERM, exits the process itself (exit
code 42 unless configured) and owns the checkpoint numbering; this is the smaller piece we need.

A second signal acts as it would without `StopSignals` (Ctrl-C twice raises
`KeyboardInterrupt`; a second SIGTERM terminates), for a user who does not want to wait. A save
cut short that way leaves the previous checkpoint as the latest: `CheckpointManager` updates its
index only after the files are written.
"""

import signal
import sys
import threading

import tensorflow as tf

# The signals that stop training with a checkpoint: Ctrl-C, and what schedulers send first.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint; rerunning the command resumes.

    Attributes:
        signal_name: e.g. "SIGTERM"; "a stop signal on another worker" when this worker did not
            receive one itself.
        step: the optimizer step the checkpoint was saved at.
        checkpoint_path: the checkpoint prefix in the model directory, e.g. `.../ckpt-5`.
        exit_status: the status a command should exit with, by the shell's convention for a
            process stopped by a signal: 128 + the signal number (130 for SIGINT, 143 for
            SIGTERM). A worker stopped because another worker was signalled reports 143, as
            if the scheduler's SIGTERM had reached it too.
    """

    def __init__(self, signal_name, step, checkpoint_path):
        self.signal_name, self.step, self.checkpoint_path = signal_name, step, checkpoint_path
        signum = signal.Signals.__members__.get(signal_name, signal.SIGTERM)
        self.exit_status = 128 + int(signum)
        super().__init__(f"Interrupted by {signal_name} at step {step}; checkpoint saved to "
                         f"{checkpoint_path}; rerun the same command to resume.")


def num_workers(strategy):
    """The number of processes training together: chief and worker tasks of the cluster, or 1."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def _any_worker_function(strategy):
    """A compiled `flag -> number of replicas whose worker raised its flag` (an all-reduce)."""

    def replica_sum(flag):
        # A copy made here lives on the replica's device; the all-reduce of the argument itself,
        # which has no device, fails under MultiWorkerMirroredStrategy ("destinations can not be
        # empty", TF 2.21).
        flag = tf.identity(flag)
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, flag)

    @tf.function
    def any_worker(flag):  # flag: float32 scalar, 1.0 if this worker received a signal
        total = strategy.run(replica_sum, args=(flag,))
        return strategy.experimental_local_results(total)[0]

    return any_worker


class StopSignals:
    """Records SIGINT and SIGTERM while active, so the training loop can stop between steps.

    A context manager: the handlers are installed on entry and the previous ones restored on
    exit. Python delivers signals to the main thread only, so in another thread it installs
    nothing and `stop_requested()` stays False. (A handler TensorFlow installed in C++, like the
    preemption notifier of MultiWorkerMirroredStrategy, is invisible to Python and is not
    restored on exit; the signal's Python-level handler, usually the default, is.)

    Args:
        strategy: the run's `tf.distribute.Strategy`; with more than one worker,
            `stop_requested()` is a collective every worker must call at the same step.
        signals: the signals to catch.
    """

    def __init__(self, strategy, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.received = None  # Name of the first signal received, e.g. "SIGTERM".
        self._previous = {}
        self._any_worker = _any_worker_function(strategy) if num_workers(strategy) > 1 else None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        self._restore()
        return False

    def _restore(self):
        for signum, handler in self._previous.items():
            # None: the previous handler was not installed from Python; the default is closest.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        self.received = signal.Signals(signum).name
        self._restore()  # A second signal acts as it would without us.
        # Said at once: the step, a validation or the checkpoint may take a while.
        again = "Ctrl-C again" if signum == signal.SIGINT else "the signal again"
        try:
            print(f"{self.received}: stopping after this step, saving a checkpoint... "
                  f"({again} stops at once)", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # A closed stderr must not stop the checkpoint.
            pass

    def stop_requested(self):
        """Whether this worker, or any other worker of the cluster, received a stop signal.

        With more than one worker this runs an all-reduce: call it at the same point of the same
        step on every worker.
        """
        flag = self.received is not None
        if self._any_worker is None:
            return flag
        return float(self._any_worker(tf.constant(float(flag)))) > 0.0

    @property
    def signal_name(self):
        """The signal this worker received, or a note that another worker received it."""
        return self.received or "a stop signal on another worker"
