"""The sweep runner and leaderboard with stand-in trainers: tiny Python processes that write a
results.json (or fail), so resume and failure handling are checked in seconds."""

import csv
import json
import os
import sys

from keras_llm.sweep import leaderboard, runner
from keras_llm.sweep.trials import Trial

# A stand-in trainer: writes results.json with validation.loss = the trial's value, counts its
# runs in runs.txt, and fails with an error line when the value is negative.
FAKE_TRAINER = """
import json, os, sys
model_dir, loss = sys.argv[1], float(sys.argv[2])
with open(os.path.join(model_dir, "runs.txt"), "a") as f: f.write("run\\n")
if loss < 0:
    print("error: --learning_rate must be a positive number; got -1.0.", file=sys.stderr)
    sys.exit(1)
json.dump({"steps": 3, "wall_seconds": 1.0, "validation": {"loss": loss, "accuracy": 1 - loss}},
          open(os.path.join(model_dir, "results.json"), "w"))
"""


def _command(trial, model_dir):
    return [sys.executable, "-c", FAKE_TRAINER, model_dir, str(trial.values["loss"])]


def _runs(sweep_dir, trial):
    path = os.path.join(sweep_dir, trial.name, "runs.txt")
    return open(path).read().count("run") if os.path.exists(path) else 0


def test_parallel_trials_failures_leaderboard_and_no_rerun(tmp_path):
    sweep_dir = str(tmp_path)
    trials = [Trial(f"00{i}-loss={loss}", {"loss": loss})
              for i, loss in enumerate([0.5, 0.25, -1.0, 0.75])]
    lines = []
    statuses = runner.run_trials(trials, _command, sweep_dir, parallel=3, log=lines.append,
                                 poll_seconds=0.05)
    assert {name: s["status"] for name, s in statuses.items()} == {
        "000-loss=0.5": "finished", "001-loss=0.25": "finished", "002-loss=-1.0": "failed",
        "003-loss=0.75": "finished"}
    assert statuses["002-loss=-1.0"]["error"] == (
        "error: --learning_rate must be a positive number; got -1.0.")
    assert statuses["002-loss=-1.0"]["returncode"] == 1

    rows = leaderboard.leaderboard_rows(trials, runner.trial_statuses(trials, sweep_dir),
                                        sweep_dir, "validation.loss", "min")
    assert [(r["rank"], r["trial"], r["validation.loss"]) for r in rows] == [
        (1, "001-loss=0.25", 0.25), (2, "000-loss=0.5", 0.5), (3, "003-loss=0.75", 0.75),
        ("", "002-loss=-1.0", None)]
    markdown = leaderboard.write_leaderboard(rows, sweep_dir, "validation.loss")
    assert markdown.splitlines()[2].startswith("| 1 | 001-loss=0.25 | 0.2500 | 0.25 | finished |")
    assert "| failed | " in markdown.splitlines()[-1]
    with open(tmp_path / "leaderboard.csv") as file:
        table = list(csv.DictReader(file))
    assert [row["trial"] for row in table] == [row["trial"] for row in rows]
    assert table[0]["model_dir"] == os.path.join(sweep_dir, "001-loss=0.25")
    # Accuracy is maximized: the same trials in the other order.
    by_accuracy = leaderboard.leaderboard_rows(trials, statuses, sweep_dir,
                                               "validation.accuracy", "max")
    assert [r["trial"] for r in by_accuracy][:3] == ["001-loss=0.25", "000-loss=0.5",
                                                     "003-loss=0.75"]

    # Rerunning: finished trials are skipped, the failed one is tried again.
    lines.clear()
    runner.run_trials(trials, _command, sweep_dir, parallel=2, log=lines.append,
                      poll_seconds=0.05)
    assert [_runs(sweep_dir, t) for t in trials] == [1, 1, 2, 1]
    assert "000-loss=0.5: finished earlier (results.json), not run again." in lines
    with open(os.path.join(sweep_dir, "002-loss=-1.0", runner.LOG_FILE)) as file:
        assert file.read().count("=== sweep: started") == 2


def test_default_goal():
    assert leaderboard.default_goal("validation.loss") == "min"
    assert leaderboard.default_goal("validation.perplexity") == "min"
    assert leaderboard.default_goal("test.f1") == "max"
    assert leaderboard.metric_value({"validation": {"loss": 2}}, "validation.loss") == 2.0
    assert leaderboard.metric_value({"validation": {}}, "validation.loss") is None
