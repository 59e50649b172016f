r"""Hyperparameter sweep: `python -m experiments.sweep --trainer=train_lm --sweep_dir=DIR ...`.

Runs each trial as a real training run (`python -m experiments.<trainer>`) in its own model
directory `SWEEP_DIR/<trial>`, one at a time or `--parallel` at once, then writes
`SWEEP_DIR/leaderboard.csv` and `leaderboard.md` sorted by `--metric` and prints the best
trial's directory. Every trial logs HParams, so `tensorboard --logdir=SWEEP_DIR` compares them
all on the HParams dashboard. Flags after `--` go to every trial. Rerunning the same command
resumes: finished trials are not run again, interrupted ones resume from their checkpoint,
failed ones are retried. Examples:

    python -m experiments.sweep --trainer=train_lm --preset=shakespeare_char \
        --grid=learning_rate=1e-3,3e-4 --grid=num_layers=2,4 --metric=validation.loss \
        --sweep_dir=/tmp/sweeps/shakespeare -- --data_dir=../shared/data/tinyshakespeare \
        --train_steps=300
    python -m experiments.sweep --trainer=train_classifier --preset=lstm_baseline \
        --random=4 --range=learning_rate=3e-4:3e-3:log --grid=hidden_dim=32,64 \
        --metric=validation.accuracy --parallel=2 --sweep_dir=/tmp/sweeps/sst2 \
        -- --data_dir=../shared/data/sst2 --epochs=1
"""

import json
import os
import signal
import sys

from absl import app, flags

from experiments.command import EXIT_FAILURE, EXIT_INTERRUPT, check_flags, run
from keras_llm import config as config_lib, presets
from keras_llm.sweep import leaderboard, runner, trials as trials_lib

# trainer -> (config class, preset lookup, the metrics its results.json holds).
TRAINERS = {
    "train_lm": (config_lib.LanguageModelConfig, presets.language_model_config,
                 config_lib.LANGUAGE_MODEL_METRICS),
    "train_classifier": (config_lib.ClassifierConfig, presets.classifier_config,
                         config_lib.CLASSIFIER_METRICS),
}

flags.DEFINE_string("trainer", "train_lm", "The training command each trial runs: "
                    f"{' or '.join(TRAINERS)}.")
flags.DEFINE_string("preset", None, "The trainer's preset every trial starts from; default: "
                    "the trainer's default preset.")
flags.DEFINE_multi_string("grid", [], "NAME=V1,V2,...: a training flag and its values; every "
                          "combination of the --grid flags is one trial (repeat the flag).")
flags.DEFINE_integer("random", 0, "If > 0: this many random trials instead of the grid; each "
                     "draws every --grid flag from its values and every --range flag from its "
                     "interval.")
flags.DEFINE_multi_string("range", [], "NAME=LOW:HIGH or NAME=LOW:HIGH:log (log-uniform): a "
                          "numeric training flag's interval for --random trials.")
flags.DEFINE_integer("seed", 0, "Seed of the --random draws (the same seed draws the same "
                     "trials, so a rerun resumes them).")
flags.DEFINE_string("metric", "validation.loss", "The results.json figure trials are ranked "
                    "by, as a dotted path, e.g. validation.loss, validation.accuracy, test.f1.")
flags.DEFINE_string("goal", "", "min or max; default: min for a loss or perplexity, else max.")
flags.DEFINE_integer("parallel", 1, "Trials running at once (each is a full training "
                     "process; mind CPU cores and accelerator memory).")
flags.DEFINE_string("sweep_dir", None, "Folder of the sweep: one model directory per trial, "
                    "the leaderboard files and sweep.json.")
FLAGS = flags.FLAGS
# Set by the sweep for each trial; an extra flag must not set them.
_SWEEP_OWNED = ("model_dir", "preset")


def build_sweep(extra):
    """Checks the flags (before any trial starts) and returns (trials, preset, goal)."""
    if FLAGS.trainer not in TRAINERS:
        raise ValueError(f"--trainer must be {' or '.join(TRAINERS)}; got {FLAGS.trainer!r}.")
    config_class, preset_config, metrics = TRAINERS[FLAGS.trainer]
    preset = FLAGS.preset or config_class().preset
    preset_config(preset)  # Raises on an unknown preset, naming the known ones.
    if not FLAGS.sweep_dir:
        raise ValueError("--sweep_dir is required: the folder that holds the trials.")
    if FLAGS.parallel < 1:
        raise ValueError(f"--parallel must be >= 1; got {FLAGS.parallel}.")
    if FLAGS.random < 0:
        raise ValueError(f"--random must be >= 0; got {FLAGS.random}.")
    if FLAGS.metric not in metrics:
        raise ValueError(f"--metric must be one of {', '.join(metrics)} for "
                         f"--trainer={FLAGS.trainer}; got {FLAGS.metric!r}.")
    goal = FLAGS.goal or leaderboard.default_goal(FLAGS.metric)
    if goal not in ("min", "max"):
        raise ValueError(f"--goal must be min or max; got {FLAGS.goal!r}.")
    grid = trials_lib.grid_values(FLAGS.grid, config_class)
    ranges = trials_lib.range_values(FLAGS.range, config_class)
    for argument in extra:
        name = argument.lstrip("-").split("=", 1)[0]
        if not argument.startswith("--"):
            raise ValueError(f"Training flags after -- must look like --name=value; got "
                             f"{argument!r}.")
        if name in _SWEEP_OWNED or name in grid or name in ranges:
            raise ValueError(f"{argument} after --: the sweep sets --{name} for each trial.")
    trials = trials_lib.make_trials(grid, ranges, FLAGS.random, FLAGS.seed)
    return trials, preset, goal


def main(argv):
    extra = [argument for argument in argv[1:] if argument != "--"]
    checked, status = check_flags(lambda: build_sweep(extra))
    if status:
        return status
    trials, preset, goal = checked
    sweep_dir = FLAGS.sweep_dir
    os.makedirs(sweep_dir, exist_ok=True)
    with open(os.path.join(sweep_dir, "sweep.json"), "w", encoding="utf-8") as file:
        json.dump({"command": sys.argv, "trials": [vars(t) for t in trials]}, file, indent=2)

    def command(trial, model_dir):
        return ([sys.executable, "-m", f"experiments.{FLAGS.trainer}", f"--preset={preset}"]
                + extra + trial.flags() + [f"--model_dir={model_dir}"])

    def stop_on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    print(f"sweep: {len(trials)} trial(s) of {FLAGS.trainer} --preset={preset}, "
          f"{FLAGS.parallel} at a time, in {sweep_dir}", flush=True)
    interrupted = False
    try:
        runner.run_trials(trials, command, sweep_dir, FLAGS.parallel,
                          log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        interrupted = True
    statuses = runner.trial_statuses(trials, sweep_dir)
    rows = leaderboard.leaderboard_rows(trials, statuses, sweep_dir, FLAGS.metric, goal)
    print(leaderboard.write_leaderboard(rows, sweep_dir, FLAGS.metric), end="")
    if interrupted:
        print("error: Interrupted; rerun the same command to resume the sweep.", file=sys.stderr)
        return EXIT_INTERRUPT
    failed = [row["trial"] for row in rows if row["status"] != "finished"]
    if rows and rows[0]["rank"] == 1:
        print(f"best: {rows[0]['model_dir']} ({FLAGS.metric} {rows[0][FLAGS.metric]:.4f})")
    print(f"leaderboard: {os.path.join(sweep_dir, 'leaderboard.md')}; "
          f"tensorboard --logdir={sweep_dir}")
    if failed:
        print(f"error: {len(failed)} trial(s) failed: {', '.join(failed)} (see the "
              "leaderboard's error column and each trial's sweep.log).", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    run(main, __doc__)
