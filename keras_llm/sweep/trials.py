"""A sweep's trials: which values of which flags each training run gets. No TensorFlow.

    grid_values(["learning_rate=1e-3,3e-4", "num_layers=2,4"], LanguageModelConfig)
        -> {"learning_rate": [0.001, 0.0003], "num_layers": [2, 4]}
    make_trials(grid, {}, random_trials=0, seed=0)
        -> [Trial("000-learning_rate=0.001-num_layers=2", {...}), ... 4 trials]

With `random_trials=N`, N trials instead draw each grid flag uniformly from its values and
each ranged flag (`--range=learning_rate=1e-4:3e-3:log`) uniformly, or log-uniformly, from
its interval, with a seed, so rerunning the same command draws the same trials (which is what
lets a rerun find the trials it has already finished).
"""

import dataclasses
import itertools
import math
import random
import re

_TYPES = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of a sweep: its folder name under the sweep directory and its flag values."""

    name: str
    values: dict

    def flags(self):
        """The trial's values as training-command flags, e.g. ["--num_layers=2"]."""
        return [f"--{name}={format_value(value)}" for name, value in self.values.items()]


def config_fields(config_class):
    """dict flag name -> Python type of every field in `config_class`'s sections."""
    fields = {}
    for section in dataclasses.fields(config_class):
        factory = section.default_factory
        if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory):
            fields.update({field.name: field.type for field in dataclasses.fields(factory)})
    return fields


def parse_value(text, kind, flag):
    """Converts `text` to `kind` (bool, int, float, str); `flag` names the value in errors."""
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return kind(text)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not {_TYPES[kind]}.") from None


def format_value(value):
    """How a value is spelled in a flag and in a trial name: 0.001, 4, true, text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _split_assignment(text, flag):
    name, separator, values = text.partition("=")
    if not separator or not name or not values:
        raise ValueError(f"{flag}={text}: expected NAME=VALUES, e.g. {flag}=learning_rate=1e-3,3e-4.")
    return name.strip(), values


def _check_name(name, fields, flag, text):
    if name not in fields:
        raise ValueError(f"{flag}={text}: {name!r} is not a flag of this trainer; known: "
                         f"{', '.join(sorted(fields))}.")


def grid_values(entries, config_class):
    """Parses `--grid` entries `NAME=V1,V2,...` into typed value lists.

    Raises:
        ValueError: an entry without `=`, a name that is not a config flag, a value of the
            wrong type, a repeated name, or a repeated value.
    """
    fields, grid = config_fields(config_class), {}
    for text in entries:
        name, values = _split_assignment(text, "--grid")
        _check_name(name, fields, "--grid", text)
        if name in grid:
            raise ValueError(f"--grid={text}: {name} is swept twice.")
        parsed = [parse_value(value.strip(), fields[name], f"--grid={text}")
                  for value in values.split(",")]
        if len(set(map(format_value, parsed))) != len(parsed):
            raise ValueError(f"--grid={text}: a value is repeated.")
        grid[name] = parsed
    return grid


def range_values(entries, config_class):
    """Parses `--range` entries `NAME=LOW:HIGH[:log]` (numeric flags) for random trials.

    Returns:
        dict name -> (low, high, log: bool, type).

    Raises:
        ValueError: a malformed entry, a non-numeric flag, LOW > HIGH, or log with LOW <= 0.
    """
    fields, ranges = config_fields(config_class), {}
    for text in entries:
        name, spec = _split_assignment(text, "--range")
        _check_name(name, fields, "--range", text)
        kind = fields[name]
        if kind not in (int, float):
            raise ValueError(f"--range={text}: {name} is not numeric; use --grid for it.")
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise ValueError(f"--range={text}: expected NAME=LOW:HIGH or NAME=LOW:HIGH:log.")
        low, high = (parse_value(part, kind, f"--range={text}") for part in parts[:2])
        log = len(parts) == 3
        if low > high or (log and low <= 0):
            raise ValueError(f"--range={text}: expected LOW <= HIGH" + (" and LOW > 0 for log"
                                                                          if log else "") + ".")
        ranges[name] = (low, high, log, kind)
    return ranges


def trial_name(index, values):
    """A folder name, e.g. "001-learning_rate=0.0003-num_layers=4" (unsafe characters: _)."""
    parts = [f"{index:03d}"] + [f"{name}={format_value(value)}" for name, value in values.items()]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))


def make_trials(grid, ranges, random_trials=0, seed=0):
    """The trials: every grid combination, or `random_trials` draws (see the module doc).

    Raises:
        ValueError: nothing to sweep, or ranges without `random_trials`.
    """
    if ranges and not random_trials:
        raise ValueError("--range needs --random=N (the number of random trials).")
    if not grid and not ranges:
        raise ValueError("Nothing to sweep: give --grid=NAME=V1,V2 and/or --random=N with "
                         "--range=NAME=LOW:HIGH[:log].")
    if not random_trials:
        combinations = itertools.product(*grid.values())
        return [Trial(trial_name(i, values), values) for i, values in
                enumerate(dict(zip(grid, combination)) for combination in combinations)]
    rng = random.Random(seed)
    trials = []
    for index in range(random_trials):
        values = {name: rng.choice(options) for name, options in grid.items()}
        for name, (low, high, log, kind) in ranges.items():
            draw = (math.exp(rng.uniform(math.log(low), math.log(high))) if log
                    else rng.uniform(low, high))
            values[name] = round(draw) if kind is int else float(format_value(draw))
        trials.append(Trial(trial_name(index, values), values))
    return trials
