"""Runs a sweep's trials as real training processes, K at a time, resumably. No TensorFlow.

Each trial is one `python -m experiments.<trainer> --model_dir=SWEEP_DIR/<trial>` process, its
output appended to `SWEEP_DIR/<trial>/sweep.log`. State lives in the trial folders, not in
the sweep process, so rerunning the same sweep command:

- skips a trial whose `results.json` exists (the training command writes it last, once the
  run is complete): no finished trial ever runs twice;
- reruns every other trial in the same model directory, where the training command resumes
  from the newest checkpoint (an interrupted trial goes on from where it stopped; a failed
  one is tried again, e.g. after the cause was fixed).

A failing trial does not stop the others: its exit status and error line are recorded in
`SWEEP_DIR/<trial>/sweep_status.json` and shown on the leaderboard. On SIGINT or SIGTERM the
sweep forwards SIGINT to its running trials (each saves a checkpoint and exits), waits for
them and raises `KeyboardInterrupt`. Trials run in their own process group, so a Ctrl-C at the
terminal reaches each of them once, through the sweep.
"""

import json
import os
import signal
import subprocess
import time

from keras_llm.training.atomic_files import write_json

RESULTS_FILE = "results.json"
STATUS_FILE = "sweep_status.json"
LOG_FILE = "sweep.log"
# How long an interrupted trial may take to save its checkpoint and exit before it is killed.
INTERRUPT_GRACE_SECONDS = 120


def is_finished(trial_dir):
    """Whether the run in `trial_dir` completed (its results.json exists)."""
    return os.path.exists(os.path.join(trial_dir, RESULTS_FILE))


def last_error(log_path):
    """The last `error: ...` line of a trial's log, else its last non-empty line (a traceback's
    exception line), else ""."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as file:
            lines = [line.strip() for line in file if line.strip()]
    except FileNotFoundError:
        return ""
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1]


def _write_status(trial_dir, status):
    write_json(os.path.join(trial_dir, STATUS_FILE), status)


def run_trials(trials, command_fn, sweep_dir, parallel=1, log=print, poll_seconds=0.5):
    """Runs the unfinished trials, at most `parallel` at once.

    Args:
        trials: list of `Trial`.
        command_fn: `(trial, model_dir) -> argv list` of the trial's training command.
        sweep_dir: str; trial `t` runs in `sweep_dir/t.name`.
        parallel: int >= 1, trials running at once.
        log: a print-like function.
        poll_seconds: how often running trials are checked.

    Returns:
        dict trial name -> {"status": "finished" | "failed", "returncode": int or None,
        "error": str or None}.

    Raises:
        KeyboardInterrupt: SIGINT (or SIGTERM, as the command maps it) arrived; running trials
            were stopped with SIGINT (they checkpoint) and are recorded as "interrupted".
    """
    statuses, pending, running = {}, [], {}
    for trial in trials:
        if is_finished(os.path.join(sweep_dir, trial.name)):
            statuses[trial.name] = {"status": "finished", "returncode": 0, "error": None}
            log(f"{trial.name}: finished earlier (results.json), not run again.")
        else:
            pending.append(trial)
    try:
        while pending or running:
            while pending and len(running) < parallel:
                trial = pending.pop(0)
                running[trial.name] = _start(trial, command_fn, sweep_dir, log)
            time.sleep(poll_seconds)
            for name, (process, log_file, trial_dir) in list(running.items()):
                if process.poll() is None:
                    continue
                log_file.close()
                del running[name]
                statuses[name] = _record(name, process.returncode, trial_dir, log)
    except KeyboardInterrupt:
        _stop(running, log)
        raise
    return statuses


def _start(trial, command_fn, sweep_dir, log):
    trial_dir = os.path.join(sweep_dir, trial.name)
    os.makedirs(trial_dir, exist_ok=True)
    command = command_fn(trial, trial_dir)
    log_file = open(os.path.join(trial_dir, LOG_FILE), "a", encoding="utf-8")
    log_file.write(f"=== sweep: started {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                   f"{' '.join(command)}\n")
    log_file.flush()
    _write_status(trial_dir, {"status": "running", "returncode": None, "error": None})
    log(f"{trial.name}: started ({trial_dir}/{LOG_FILE})")
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    return process, log_file, trial_dir


def _record(name, returncode, trial_dir, log):
    if returncode == 0 and is_finished(trial_dir):
        status = {"status": "finished", "returncode": 0, "error": None}
        log(f"{name}: finished.")
    else:
        error = last_error(os.path.join(trial_dir, LOG_FILE)) or f"exit status {returncode}"
        status = {"status": "failed", "returncode": returncode, "error": error}
        log(f"{name}: FAILED (exit status {returncode}): {error}")
    _write_status(trial_dir, status)
    return status


def _stop(running, log):
    for name, (process, _, _) in running.items():
        log(f"{name}: interrupting (it saves a checkpoint; rerun the sweep to resume it).")
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
    for name, (process, log_file, trial_dir) in running.items():
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()
        _write_status(trial_dir, {"status": "interrupted", "returncode": process.returncode,
                                  "error": "interrupted"})


def trial_statuses(trials, sweep_dir):
    """What the trial folders say: "finished" (results.json), else the last recorded status
    ("failed", "interrupted", "running" for a sweep that was killed), else "pending".

    Returns:
        dict trial name -> {"status", "returncode", "error"}.
    """
    statuses = {}
    for trial in trials:
        trial_dir = os.path.join(sweep_dir, trial.name)
        status = {"status": "pending", "returncode": None, "error": None}
        if is_finished(trial_dir):
            status = {"status": "finished", "returncode": 0, "error": None}
        elif os.path.exists(os.path.join(trial_dir, STATUS_FILE)):
            with open(os.path.join(trial_dir, STATUS_FILE), encoding="utf-8") as file:
                status = json.load(file)
        statuses[trial.name] = status
    return statuses
