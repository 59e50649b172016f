"""Multi-worker training in real processes on loopback ports, and the launcher that starts them.

The launcher tests run plain `python -c` workers (no TensorFlow, about a second each). The
`multiworker` tests start TensorFlow workers through `experiments.launch_local` and
`experiments.train_lm`, as a user would.
"""

import collections
import dataclasses
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_llm import presets
from keras_llm.training import launcher
from keras_llm.training.language_model import train_language_model
from tests.conftest import REPO_ROOT, shared_data_path

PYTHON = sys.executable


# ----------------------------------------------------------------------------- launcher


def test_worker_tf_config_and_environment():
    addresses = ["127.0.0.1:1001", "127.0.0.1:1002"]
    assert launcher.worker_tf_config(addresses, 1) == {
        "cluster": {"worker": addresses}, "task": {"type": "worker", "index": 1}}
    with pytest.raises(ValueError, match=r"index must be in \[0, 2\); got 2"):
        launcher.worker_tf_config(addresses, 2)
    environment = launcher.worker_environment({"PATH": "/bin"}, addresses, 0, threads_per_worker=1)
    assert json.loads(environment["TF_CONFIG"])["task"] == {"type": "worker", "index": 0}
    assert environment["TF_NUM_INTEROP_THREADS"] == environment["TF_NUM_INTRAOP_THREADS"] == "1"
    assert environment["PATH"] == "/bin" and environment["PYTHONUNBUFFERED"] == "1"
    assert "TF_NUM_INTRAOP_THREADS" not in launcher.worker_environment({}, addresses, 0)


def test_free_loopback_ports_are_distinct_and_bindable():
    ports = launcher.free_loopback_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def _launch(code, num_workers=2, **kwargs):
    output = io.StringIO()
    started = time.monotonic()
    status = launcher.launch_local([PYTHON, "-c", code], num_workers, output=output, **kwargs)
    return status, output.getvalue(), time.monotonic() - started


def test_each_worker_gets_its_tf_config_and_a_prefix():
    code = ("import json, os; config = json.loads(os.environ['TF_CONFIG']); "
            "print('index', config['task']['index'], 'of', config['cluster']['worker']); "
            "print('threads', os.environ.get('TF_NUM_INTRAOP_THREADS'))")
    status, output, _ = _launch(code, num_workers=3, threads_per_worker=1)
    assert status == 0
    addresses = re.search(r"^\[launcher\] 3 worker\(s\) at (.*)$", output, re.M).group(1)
    addresses = addresses.split(", ")
    assert len(addresses) == 3 and all(re.fullmatch(r"127\.0\.0\.1:\d+", a) for a in addresses)
    for index in range(3):
        assert f"[worker {index}] index {index} of {addresses}\n" in output
        assert f"[worker {index}] threads 1\n" in output


_SHUTDOWN_REPORT = (
    "E0000 base_collective_executor.cc:252] BaseCollectiveExecutor::StartAbort UNAVAILABLE: "
    "Failed to send RPC to coordination service. The tasks have crashed.\n"
    "Additional GRPC error information from remote target /job:worker/replica:0/task:0 while "
    "calling /tensorflow.CoordinationService/Heartbeat:\n"
    ":UNKNOWN:Error received from peer  {grpc_status:14}\n")


@pytest.mark.parametrize("exit_code", [0, 3])
def test_a_finished_workers_coordination_shutdown_report_is_dropped(exit_code):
    # What worker 1 prints when the chief's coordination service leaves first: expected after a
    # run that succeeded (dropped), a clue after one that failed (printed, with what followed).
    code = (f"import sys; print('done', flush=True); sys.stderr.write({_SHUTDOWN_REPORT!r}); "
            f"print('after', flush=True); sys.exit({exit_code})")
    status, output, _ = _launch(code, num_workers=1)
    assert status == exit_code
    assert "[worker 0] done\n" in output
    if exit_code == 0:
        assert "StartAbort" not in output and "GRPC" not in output and "peer" not in output
        assert "[worker 0] after\n" in output  # Not a shutdown line: printed, in order.
    else:
        assert output.count("StartAbort") == 1 and "[worker 0] after\n" in output


def test_first_failure_stops_the_other_workers():
    # Worker 1 fails after 0.3 s; worker 0 would run for a minute but is stopped by SIGTERM.
    code = ("import json, os, sys, time; index = json.loads(os.environ['TF_CONFIG'])['task']"
            "['index']\nif index == 1: time.sleep(0.3); print('failing'); sys.exit(3)\n"
            "print('working', flush=True); time.sleep(60)")
    status, output, seconds = _launch(code)
    assert status == 3
    assert "[worker 1] failing" in output
    assert "[launcher] worker 1 exited with status 3; stopping the other workers." in output
    assert seconds < 10


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period():
    code = ("import json, os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "if json.loads(os.environ['TF_CONFIG'])['task']['index'] == 1: time.sleep(0.3); "
            "sys.exit(1)\ntime.sleep(60)")
    status, output, seconds = _launch(code, grace_seconds=1.0)
    assert status == 1
    assert 1.0 < seconds < 10


def test_a_worker_killed_by_a_signal_reports_128_plus_the_signal():
    code = ("import json, os, signal, time\n"
            "if json.loads(os.environ['TF_CONFIG'])['task']['index'] == 0: time.sleep(0.3); "
            "os.kill(os.getpid(), signal.SIGKILL)\ntime.sleep(60)")
    status, _, seconds = _launch(code)
    assert status == 128 + signal.SIGKILL and seconds < 10


def test_timeout_stops_every_worker():
    status, output, seconds = _launch("import time; time.sleep(60)", timeout_seconds=1.0)
    assert status == launcher.TIMEOUT_EXIT_CODE == 124
    assert "[launcher] --timeout_seconds=1 reached; stopping workers [0, 1]." in output
    assert 1.0 < seconds < 10


def _start_launcher(code, *flags):
    process = subprocess.Popen(
        [PYTHON, "-m", "experiments.launch_local", "--num_workers=2", "--timeout_seconds=60",
         *flags, "--", PYTHON, "-c", code],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:  # Wait until both workers have installed their handlers.
        lines.append(line)
        if sum(line.endswith("] ready\n") for line in lines) == 2:
            break
    return process, lines


def _interrupt_launcher(code):
    """Starts two workers running `code`, sends the launcher a SIGINT once both are ready, and
    returns the finished process and its output (checked to say the signal was forwarded)."""
    process, lines = _start_launcher(code)
    process.send_signal(signal.SIGINT)
    output = "".join(lines) + process.communicate(timeout=30)[0]
    assert "[launcher] got SIGINT; forwarding it to the workers." in output
    return process, output


def test_sigint_is_forwarded_to_every_worker():
    code = ("import signal, sys, time\n"
            "def stop(signum, frame): print('stopping on', signal.Signals(signum).name); "
            "sys.exit(0)\n"
            "signal.signal(signal.SIGINT, stop); print('ready', flush=True); time.sleep(60)")
    process, output = _interrupt_launcher(code)
    assert "[worker 0] stopping on SIGINT" in output and "[worker 1] stopping on SIGINT" in output
    assert process.returncode == 128 + signal.SIGINT


def test_ctrl_c_is_an_interruption_not_a_failure_and_every_worker_may_finish_saving():
    # Worker 0 exits 130 at once; worker 1 takes 0.5 s to "save". It used to read "worker 0
    # exited with status 130; stopping the other workers", and worker 1 got a SIGTERM too.
    code = ("import json, os, signal, sys, time\n"
            "index = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
            "def stop(signum, frame): time.sleep(0.5 * index); print('saved'); sys.exit(130)\n"
            "signal.signal(signal.SIGINT, stop); print('ready', flush=True); time.sleep(60)")
    process, output = _interrupt_launcher(code)
    assert "stopping the other workers" not in output, output
    assert "[worker 0] saved" in output and "[worker 1] saved" in output
    assert process.returncode == 130


def test_workers_that_ignore_a_forwarded_sigterm_are_killed_after_the_grace_period():
    # As TensorFlow's preemption notifier does under MultiWorkerMirroredStrategy.
    code = ("import signal, time; signal.signal(signal.SIGTERM, lambda *a: print('ignored')); "
            "print('ready', flush=True)\nfor _ in range(600): time.sleep(0.1)")
    process, lines = _start_launcher(code, "--grace_seconds=1")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output = "".join(lines) + process.communicate(timeout=30)[0]
    assert "[worker 0] ignored" in output and "[worker 1] ignored" in output
    assert ("[launcher] workers [0, 1] still running --grace_seconds=1 after the signal; "
            "killing them.") in output
    assert process.returncode == 128 + signal.SIGTERM
    assert 1.0 < time.monotonic() - started < 10


def test_launch_local_without_a_command():
    process = subprocess.run([PYTHON, "-m", "experiments.launch_local", "--num_workers=2"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert process.returncode == 2
    assert "error: No command to run: put it after '--'" in process.stderr


# -------------------------------------------------------------------------- TensorFlow

# tests/conftest.py::tiny_language_model_config's sizes, as train_lm flags; no XLA, as there (the
# compile takes longer than the steps; the compiled step on several replicas is
# test_replica_equivalence.py's).
TINY_FLAGS = {"num_layers": 2, "num_heads": 2, "hidden_dim": 32, "sequence_length": 32,
              "batch_size": 8, "train_steps": 6, "warmup_steps": 2, "sample_length": 0,
              "dropout": 0.0, "eval_interval": 6, "eval_batches": 2, "checkpoint_interval": 6,
              "log_interval": 1, "jit_compile": "false"}


def _train_lm_command(model_dir, data_dir, **flags):
    flags = {**TINY_FLAGS, "data_dir": data_dir, "model_dir": model_dir, **flags}
    return [PYTHON, "-m", "experiments.train_lm"] + [f"--{k}={v}" for k, v in flags.items()]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.multiworker
def test_bad_cluster_fails_within_seconds(tmp_path):
    data_dir = str(shared_data_path("tinyshakespeare"))
    missing = _free_port()
    never_up = json.dumps({"cluster": {"worker": [f"127.0.0.1:{_free_port()}",
                                                  f"127.0.0.1:{missing}"]},
                           "task": {"type": "worker", "index": 0}})
    cases = {
        "malformed": ('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": ',
                      "error: TF_CONFIG is not valid JSON (Expecting value at line 1, column "
                      "53)"),
        "never_up": (never_up,
                     f"error: --strategy=multi_worker: worker 0 gave up after "
                     f"--cluster_timeout_seconds=3: not reachable: worker 1 at "
                     f"127.0.0.1:{missing} (Connection refused)"),
    }
    processes = {}
    started = time.monotonic()
    for name, (tf_config, _) in cases.items():
        command = _train_lm_command(str(tmp_path / name), data_dir, strategy="multi_worker",
                                    cluster_timeout_seconds=3)
        processes[name] = subprocess.Popen(
            command, cwd=REPO_ROOT, env={**os.environ, "TF_CONFIG": tf_config},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, process in processes.items():
        _, stderr = process.communicate(timeout=120)
        seconds = time.monotonic() - started
        assert process.returncode == 1, stderr
        assert cases[name][1] in stderr
        # Both start TensorFlow (~5-10 s on 2 busy cores) and then fail at once (or after the
        # 3 s cluster timeout), long before any training could start; nothing is written.
        assert seconds < 60, (name, seconds)
        assert not (tmp_path / name).exists()


def _checkpoint_values(model_dir, prefix="model/weights/"):
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    names = [n for n, _ in tf.train.list_variables(path) if n.startswith(prefix)]
    return path, {name: reader.get_tensor(name) for name in names}, reader


@pytest.mark.multiworker
def test_two_workers_match_mirrored_strategy_on_two_devices(tmp_path):
    data_dir = str(shared_data_path("tinyshakespeare"))
    worker_model_dir = tmp_path / "multi_worker"
    worker_tmp = tmp_path / "worker_tmp"  # Where the non-chief worker's temporary dir goes.
    worker_tmp.mkdir()
    # TF_CPP_MIN_LOG_LEVEL=0 lets TensorFlow's C++ warnings (the auto-shard one among them)
    # through, so the assertion below could see one.
    environment = {**os.environ, "TMPDIR": str(worker_tmp), "TF_CPP_MIN_LOG_LEVEL": "0"}
    command = [PYTHON, "-m", "experiments.launch_local", "--num_workers=2",
               "--threads_per_worker=1", "--timeout_seconds=240", "--"] + _train_lm_command(
        str(worker_model_dir), data_dir, strategy="multi_worker", cluster_timeout_seconds=120,
        histogram_every=3, dropout=0.2)
    started = time.monotonic()
    workers = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # The reference runs here meanwhile: MirroredStrategy over 2 of the test process's 4
        # logical CPUs, same preset and flags.
        reference_dir = tmp_path / "mirrored"
        preset = presets.language_model_config("shakespeare_char")
        # With dropout: a worker's replica must draw the masks of the global-batch rows it holds,
        # as the mirrored replica of the same index does (which equals one device:
        # test_replica_equivalence.py).
        overrides = {**TINY_FLAGS, "data_dir": data_dir, "strategy": "mirrored",
                     "num_cpu_devices": 2, "histogram_every": 3, "dropout": 0.2}
        config = dataclasses.replace(preset, **{
            section: dataclasses.replace(getattr(preset, section), **{
                name: value for name, value in overrides.items()
                if name in {f.name for f in dataclasses.fields(getattr(preset, section))}})
            for section in ("data", "model", "train")})
        reference = train_language_model(config, str(reference_dir), log=lambda *a: None)
        output, _ = workers.communicate(timeout=300)
    finally:
        if workers.poll() is None:
            workers.kill()
    seconds = time.monotonic() - started
    assert workers.returncode == 0, output[-5000:]
    print(f"two workers + mirrored reference: {seconds:.1f} s")

    # Both workers trained 6 steps and printed identical (all-reduced) losses.
    for index in (0, 1):
        assert f"[worker {index}] done: 6 steps" in output
    losses = [re.findall(rf"^\[worker {i}\] step \d/6 \| loss ([\d.]+)", output, re.M)
              for i in (0, 1)]
    assert len(losses[0]) == 6 and losses[0] == losses[1]
    # Sharding is explicit (AutoShardPolicy.DATA): tf.data has nothing to warn about.
    assert not re.search(r"auto-?shard|sharding policy|AutoShardPolicy", output, re.I)

    # The same hyperparameters on both sides, apart from how the replicas are placed.
    saved = [json.loads((d / "config.json").read_text()) for d in (worker_model_dir,
                                                                   reference_dir)]
    for config_json in saved:
        del config_json["train"]["strategy"], config_json["train"]["num_cpu_devices"]
    assert saved[0] == saved[1]

    # Same weights as 2 replicas in one process (float32; the all-reduce order differs).
    worker_path, worker_weights, worker_reader = _checkpoint_values(str(worker_model_dir))
    reference_path, reference_weights, reference_reader = _checkpoint_values(str(reference_dir))
    assert os.path.basename(worker_path) == os.path.basename(reference_path) == "ckpt-6"
    assert sorted(worker_weights) == sorted(reference_weights) and len(worker_weights) > 10
    iterations = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"
    assert worker_reader.get_tensor(iterations) == reference_reader.get_tensor(iterations) == 6
    max_difference = max(float(np.max(np.abs(worker_weights[n] - reference_weights[n])))
                         for n in worker_weights)
    print(f"max |multi_worker - mirrored| over {len(worker_weights)} weights: {max_difference:.2e}")
    assert max_difference <= 1e-5

    results = json.loads((worker_model_dir / "results.json").read_text())
    assert results["num_replicas"] == 2 and results["strategy"] == "multi_worker"
    assert results["steps"] == 6 and reference["num_replicas"] == 2
    assert abs(results["validation"]["loss"] - reference["validation"]["loss"]) <= 1e-5

    # Only the chief wrote: one model directory, one event file per TensorBoard folder (one
    # run), and the other worker's temporary directory is gone.
    assert sorted(os.listdir(worker_model_dir)) == ["checkpoints", "config.json", "logs",
                                                    "results.json", "tokenizer",
                                                    "training_data.json"]
    logs = worker_model_dir / "logs"
    folders = {path.name for path in logs.iterdir() if path.is_dir()}
    assert {"train", "validation"} <= folders <= {"train", "validation", "samples"}
    for folder in [logs] + [logs / name for name in folders]:  # logs/: HParams, projector.
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1, list(folder.iterdir())
    assert os.listdir(worker_tmp) == []
    # The chief's dashboards, once: one HParams session, histograms at steps 3 and 6.
    root_tags = collections.Counter(
        value.tag for path in logs.glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path)) for value in event.summary.value)
    assert root_tags["_hparams_/session_start_info"] == 1 and root_tags["validation.loss"] == 1
    train_steps = collections.defaultdict(list)
    for path in (logs / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                train_steps[value.tag].append(event.step)
    assert train_steps["activations/logits"] == [3, 6]
    assert train_steps["weight_norm"] == list(range(1, 7)) and train_steps["train_step"] == [1]
    assert (logs / "projector_config.pbtxt").exists()
    assert [p for p in tmp_path.rglob("events.out.tfevents*") if logs not in p.parents
            and reference_dir not in p.parents] == []


# ------------------------------------------------------------------------------ Kubernetes

MANIFEST = REPO_ROOT / "experiments" / "kubernetes" / "multi_worker_job.yaml"


def _manifest_env(text):
    return dict(re.findall(r'- name: (\w+)\n\s+value: "?([\w-]+)"?', text))


def test_kubernetes_manifest_is_consistent():
    text = MANIFEST.read_text()
    env = _manifest_env(text)
    assert env["NUM_WORKERS"] == "2"
    assert re.findall(r"^  (completions|parallelism): (\d+)", text, re.M) == [
        ("completions", env["NUM_WORKERS"]), ("parallelism", env["NUM_WORKERS"])]
    assert re.search(r"^  name: (\S+)", text, re.M).group(1) == env["SERVICE"]  # The Service.
    assert re.search(r"subdomain: (\S+)", text).group(1) == env["SERVICE"]
    assert re.search(r"job-name: (\S+)", text).group(1) == env["JOB_NAME"]
    assert f"port: {env['PORT']}" in text and f"containerPort: {env['PORT']}" in text
    assert "--strategy=multi_worker" in text


@pytest.mark.parametrize("num_workers, index", [(2, 0), (2, 1), (4, 3)])
def test_kubernetes_manifest_builds_each_pods_tf_config(num_workers, index):
    from keras_llm.training.cluster import parse_tf_config

    text = MANIFEST.read_text()
    script = re.search(r"# --- TF_CONFIG.*?\n(.*?)# --- end TF_CONFIG", text, re.S).group(1)
    env = {**_manifest_env(text), "NUM_WORKERS": str(num_workers),
           "JOB_COMPLETION_INDEX": str(index)}  # Set by Kubernetes in an Indexed Job's pods.
    process = subprocess.run(["/bin/sh", "-c", "set -eu\n" + script + 'printf %s "$TF_CONFIG"'],
                             env=env, capture_output=True, text=True, timeout=30, check=True)
    config = parse_tf_config(process.stdout)
    assert config == {
        "cluster": {"worker": [f"keras-llm-{i}.keras-llm:2222" for i in range(num_workers)]},
        "task": {"type": "worker", "index": index},
    }
