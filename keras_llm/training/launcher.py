"""Runs one command as N local workers of a MultiWorkerMirroredStrategy cluster on loopback ports.

`python -m experiments.launch_local --num_workers=2 -- python -m experiments.train_lm
--strategy=multi_worker ...` is the whole multi-worker set-up on one machine: each worker gets the
same command and its own `TF_CONFIG`,

    {"cluster": {"worker": ["127.0.0.1:PORT0", "127.0.0.1:PORT1"]},
     "task": {"type": "worker", "index": i}},

exactly what a cluster manager (Kubernetes, SLURM) gives each worker on a real cluster (see
docs/cluster.md). Worker 0 is the chief. The launcher prefixes every output line with
`[worker i]`, returns the first non-zero exit code, and stops the other workers when one fails,
so a crashed worker never leaves its peers waiting for it. The report a worker prints when the
chief's coordination service leaves before it (`BaseCollectiveExecutor::StartAbort ... The
tasks have crashed`) is held back and dropped if that worker exits 0 (`_COORDINATION_SHUTDOWN`).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

# How long a worker has to exit after SIGTERM before it is killed. A worker saving a checkpoint
# on SIGTERM needs a few seconds; a hung collective never returns, hence the bound.
DEFAULT_GRACE_SECONDS = 10.0
# Exit status for a run stopped by --timeout_seconds, as timeout(1) uses.
TIMEOUT_EXIT_CODE = 124
_POLL_SECONDS = 0.05
# What a worker of a finished MultiWorkerMirroredStrategy run prints when the chief, which hosts
# the coordination service, exits first: its heartbeat thread finds no one to talk to
# ("BaseCollectiveExecutor::StartAbort UNAVAILABLE: Failed to send RPC to coordination
# service ... The tasks have crashed", then gRPC's details). TensorFlow 2.21 offers no call
# that leaves the cluster in order, so the launcher holds these lines back and drops them when
# that worker exits 0; after a failure they are printed, with anything that followed them.
_COORDINATION_SHUTDOWN = re.compile(
    r"BaseCollectiveExecutor::StartAbort|coordination service|CoordinationService"
    r"|Additional GRPC error information|Error received from peer|The tasks have crashed"
    r"|^\[worker \d+\] \s*$"
)


def free_loopback_ports(count):
    """Returns `count` distinct TCP ports that are free on 127.0.0.1 now.

    The ports are asked from the kernel (bind to port 0) with all sockets open at once, so they
    differ; they are released before returning, so another process could take one before the
    workers bind it (unlikely on a quiet machine; the worker then fails to start, loudly).

    Raises:
        ValueError: `count` < 1.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1; got {count}.")
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def worker_tf_config(addresses, index):
    """The `TF_CONFIG` dict of worker `index` in a cluster of workers at `addresses`.

    Args:
        addresses: list of "host:port" strings, one per worker; worker 0 is the chief.
        index: this worker's position in `addresses`.

    Raises:
        ValueError: `index` out of range.
    """
    if not 0 <= index < len(addresses):
        raise ValueError(f"index must be in [0, {len(addresses)}); got {index}.")
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}


def worker_environment(base_environment, addresses, index, threads_per_worker=0):
    """The environment of worker `index`: `base_environment` plus its TF_CONFIG.

    Args:
        base_environment: mapping, usually `os.environ`.
        addresses: list of "host:port", one per worker.
        index: the worker's index.
        threads_per_worker: if > 0, cap TensorFlow's inter- and intra-op thread pools (and
            OpenMP's) at this many threads, so N workers share the host's cores instead of each
            starting one thread per core.

    Returns:
        A new dict.
    """
    environment = dict(base_environment)
    environment["TF_CONFIG"] = json.dumps(worker_tf_config(addresses, index))
    # Lines reach the launcher as they are printed, not when a block buffer fills.
    environment["PYTHONUNBUFFERED"] = "1"
    if threads_per_worker > 0:
        for name in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            environment[name] = str(threads_per_worker)
    return environment


def _exit_status(returncode):
    # Popen reports death by signal N as -N; shells (and our callers) expect 128 + N.
    return 128 - returncode if returncode < 0 else returncode


def _die_with_parent():
    # Linux: the worker gets SIGTERM if the launcher dies without cleaning up (e.g. SIGKILL),
    # instead of living on as an orphan that holds its port and a core.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1  # <linux/prctl.h>
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class LocalCluster:
    """N worker processes running one command, each with its own TF_CONFIG.

    Args:
        command: list of str, the command every worker runs (e.g. `python -m experiments.train_lm
            --strategy=multi_worker ...`).
        num_workers: int >= 1.
        threads_per_worker: see `worker_environment`; 0 keeps TensorFlow's defaults.
        grace_seconds: how long workers have to exit after SIGTERM before SIGKILL.
        output: a text stream receiving the workers' prefixed lines (default sys.stdout).
        host: the address the workers listen on; loopback only, so nothing leaves the machine.

    Raises:
        ValueError: an empty command or `num_workers` < 1.
    """

    def __init__(self, command, num_workers, threads_per_worker=0,
                 grace_seconds=DEFAULT_GRACE_SECONDS, output=None, host="127.0.0.1"):
        if not command:
            raise ValueError("No command to run: put it after '--', e.g. `python -m "
                             "experiments.launch_local --num_workers=2 -- python -m "
                             "experiments.train_lm --strategy=multi_worker`.")
        if num_workers < 1:
            raise ValueError(f"--num_workers must be >= 1; got {num_workers}.")
        self.command = list(command)
        self.num_workers = num_workers
        self.threads_per_worker = threads_per_worker
        self.grace_seconds = grace_seconds
        self.output = output if output is not None else sys.stdout
        self.addresses = [f"{host}:{port}" for port in free_loopback_ports(num_workers)]
        self.processes = []
        self._readers = []
        self._held = [[] for _ in range(num_workers)]  # Per worker, see `_pump`.
        self._lock = threading.Lock()
        self._kill_deadline = None  # Set when a signal was forwarded: when to stop waiting.

    def _print(self, line):
        with self._lock:
            self.output.write(line)
            self.output.flush()

    def _pump(self, index, stream):
        held = self._held[index]
        for line in iter(stream.readline, ""):
            line = f"[worker {index}] {line if line.endswith(chr(10)) else line + chr(10)}"
            if held or _COORDINATION_SHUTDOWN.search(line):
                held.append(line)  # Kept back until the worker's exit status is known.
            else:
                self._print(line)
        stream.close()

    def _release_held_lines(self):
        """Prints the lines held back from each worker; of a worker that exited 0, all but the
        coordination service's shutdown report (see `_COORDINATION_SHUTDOWN`)."""
        for process, held in zip(self.processes, self._held):
            if process.returncode == 0:
                held = [line for line in held if not _COORDINATION_SHUTDOWN.search(line)]
            if held:
                self._print("".join(held))
        self._held = [[] for _ in self.processes]

    def start(self):
        """Starts every worker; returns immediately."""
        for index in range(self.num_workers):
            process = subprocess.Popen(
                self.command,
                env=worker_environment(os.environ, self.addresses, index, self.threads_per_worker),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                errors="replace", bufsize=1,
                # Own process group: a terminal's Ctrl-C reaches the launcher only, which
                # forwards it once; and stop() can signal a worker's children too.
                start_new_session=True, preexec_fn=_die_with_parent,
            )
            self.processes.append(process)
        for index, process in enumerate(self.processes):
            reader = threading.Thread(target=self._pump, args=(index, process.stdout), daemon=True)
            reader.start()
            self._readers.append(reader)

    def forward_signal(self, signum):
        """Sends `signum` to every worker; those still running `grace_seconds` later are stopped.

        The grace period matters: under MultiWorkerMirroredStrategy TensorFlow installs its own
        SIGTERM handler (its preemption notifier), so a worker that does not act on it keeps
        training after SIGTERM.
        """
        self._kill_deadline = time.monotonic() + self.grace_seconds
        self.send_signal(signum)

    def send_signal(self, signum):
        """Sends `signum` to every running worker (and its process group)."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signum)
                except ProcessLookupError:
                    pass

    def stop(self):
        """SIGTERM to every running worker, then SIGKILL to those still running after the grace."""
        self.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(_POLL_SECONDS)
        self.send_signal(signal.SIGKILL)
        for process in self.processes:
            process.wait()

    def wait(self, timeout_seconds=None):
        """Waits for the workers; stops them all when one fails or the time is up. After a
        forwarded signal (`forward_signal`) it waits for every worker to exit by itself, up to
        the grace period.

        Args:
            timeout_seconds: stop every worker after this many seconds (None or 0: no limit).

        Returns:
            int exit status: 0 if every worker exited 0; else the first non-zero status seen
            (128 + N for a worker killed by signal N), or `TIMEOUT_EXIT_CODE` on timeout.
        """
        deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
        status = 0
        try:
            while True:
                codes = [process.poll() for process in self.processes]
                failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    index, code = failed[0]
                    status = _exit_status(code)
                    if self._kill_deadline is None:  # A failure: the others would wait for it.
                        if any(c is None for c in codes):
                            self._print(f"[launcher] worker {index} exited with status "
                                        f"{status}; stopping the other workers.\n")
                        break
                    # After a forwarded Ctrl-C or SIGTERM every worker is stopping (saving a
                    # checkpoint first): not a failure, so wait for all, up to the grace period.
                    if all(c is not None for c in codes):
                        break
                if all(c == 0 for c in codes):
                    break
                if self._kill_deadline is not None and time.monotonic() > self._kill_deadline:
                    running = [i for i, c in enumerate(codes) if c is None]
                    self._print(f"[launcher] workers {running} still running "
                                f"--grace_seconds={self.grace_seconds:g} after the signal; "
                                "killing them.\n")
                    self.send_signal(signal.SIGKILL)
                    break
                if deadline is not None and time.monotonic() > deadline:
                    running = [i for i, c in enumerate(codes) if c is None]
                    self._print(f"[launcher] --timeout_seconds={timeout_seconds:g} reached; "
                                f"stopping workers {running}.\n")
                    status = TIMEOUT_EXIT_CODE
                    break
                time.sleep(_POLL_SECONDS)
        finally:
            self.stop()
            for reader in self._readers:
                reader.join(timeout=5)
            self._release_held_lines()
        return status


def launch_local(command, num_workers, timeout_seconds=None, threads_per_worker=0,
                 grace_seconds=DEFAULT_GRACE_SECONDS, output=None):
    """Runs `command` as `num_workers` local workers and returns the launcher's exit status.

    SIGINT and SIGTERM sent to the launcher are forwarded to every worker (so they can save a
    checkpoint and exit); a second one, or `grace_seconds` passing, kills them.

    Args:
        command: list of str, run by every worker with its own TF_CONFIG.
        num_workers: int >= 1.
        timeout_seconds: stop all workers after this many seconds (None or 0: no limit).
        threads_per_worker: cap each worker's TensorFlow thread pools (0: TensorFlow's default).
        grace_seconds: seconds between SIGTERM and SIGKILL when stopping workers.
        output: text stream for the prefixed worker lines (default sys.stdout).

    Returns:
        int: 0, the first non-zero worker status, or 124 on timeout (see `LocalCluster.wait`).
    """
    cluster = LocalCluster(command, num_workers, threads_per_worker, grace_seconds, output)
    handlers = {}
    forwarded = []

    def forward(signum, frame):
        if forwarded:  # A second signal: do not wait for a clean exit.
            cluster.send_signal(signal.SIGKILL)
            return
        forwarded.append(signum)
        cluster._print(f"[launcher] got {signal.Signals(signum).name}; forwarding it to the "
                       "workers.\n")
        cluster.forward_signal(signum)

    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for signum in (signal.SIGINT, signal.SIGTERM):
            handlers[signum] = signal.signal(signum, forward)
    try:
        cluster._print(f"[launcher] {num_workers} worker(s) at {', '.join(cluster.addresses)}\n")
        cluster.start()
        status = cluster.wait(timeout_seconds)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if forwarded and status == 0:
        status = 128 + forwarded[0]
    return status
