"""A sweep's leaderboard: its trials ranked by one metric of their results.json.

`leaderboard.csv` (every column, for tools) and `leaderboard.md` (a table for a README) hold
the same rows: finished trials best first, then unfinished and failed ones with their status
and error.
"""

import csv
import io
import json
import os

from keras_llm.sweep.trials import format_value
from keras_llm.training.atomic_files import write_text

# Metrics where lower is better; every other metric (accuracy, f1, ...) is maximized.
_LOWER_IS_BETTER = ("loss", "perplexity")


def default_goal(metric):
    """"min" for a loss or perplexity (e.g. validation.loss), "max" otherwise."""
    return "min" if metric.rsplit(".", 1)[-1] in _LOWER_IS_BETTER else "max"


def metric_value(results, metric):
    """`results["validation"]["loss"]` for "validation.loss"; None if absent or not a number."""
    value = results
    for key in metric.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def leaderboard_rows(trials, statuses, sweep_dir, metric, goal):
    """One dict per trial, ranked.

    Args:
        trials: the sweep's `Trial`s.
        statuses: dict trial name -> {"status": "finished" | "failed" | "interrupted" |
            "pending", "error": str or None}.
        sweep_dir: str; trial `t` ran in `sweep_dir/t.name`.
        metric: dotted path into results.json, e.g. "validation.loss".
        goal: "min" or "max".

    Returns:
        list of dicts with keys rank (1.. for finished trials with the metric, "" otherwise),
        trial, the metric, each swept flag, status, steps, wall_seconds, model_dir, error.
    """
    ranked, others = [], []
    for trial in trials:
        model_dir = os.path.join(sweep_dir, trial.name)
        status = statuses.get(trial.name, {"status": "pending", "error": None})
        row = {"rank": "", "trial": trial.name, metric: None,
               **{name: format_value(value) for name, value in trial.values.items()},
               "status": status["status"], "steps": "", "wall_seconds": "",
               "model_dir": model_dir, "error": status.get("error") or ""}
        results_path = os.path.join(model_dir, "results.json")
        if status["status"] == "finished" and os.path.exists(results_path):
            with open(results_path, encoding="utf-8") as file:
                results = json.load(file)
            row[metric] = metric_value(results, metric)
            row["steps"] = results.get("steps", "")
            row["wall_seconds"] = round(results.get("wall_seconds", 0.0))
        (ranked if row[metric] is not None else others).append(row)
    ranked.sort(key=lambda row: row[metric], reverse=(goal == "max"))
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    return ranked + others


def write_leaderboard(rows, sweep_dir, metric):
    """Writes `leaderboard.csv` and `leaderboard.md` in `sweep_dir`; returns the Markdown."""
    columns = list(rows[0]) if rows else ["rank", "trial", metric, "status"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(os.path.join(sweep_dir, "leaderboard.csv"), buffer.getvalue())
    shown = [c for c in columns if c not in ("model_dir",)]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = []
        for column in shown:
            value = row[column]
            value = f"{value:.4f}" if isinstance(value, float) else str(value)
            cells.append(value.replace("|", "\\|").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    markdown = "\n".join(lines) + "\n"
    write_text(os.path.join(sweep_dir, "leaderboard.md"), markdown)
    return markdown

