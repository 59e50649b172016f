"""The README's commands work as written, so a README that drifts from the code fails CI.

Two tests read every fenced ```bash / ```sh block of README.md (backslash continuations joined,
trailing `# comments` dropped):

- fast (default suite): every `python -m experiments.X --flag ...` in the README, in code
  blocks and in inline `code`, names a module that exists and flags that module defines. The
  flags are read by importing the module in a subprocess (experiments import no TensorFlow at
  module level, which is asserted too), one per module, since their flags share absl's
  global registry.
- slow: every command block is run in order in a fresh directory laid out as a clone (the
  repository's packages, `.venv/bin/python`, and `../shared/data`), with short budgets
  appended (later flags win in absl), e.g. `--train_steps=5` for the training commands.
  Commands that need what a test cannot start are skipped, each for a reason in `_SKIPPED`.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, SHARED_DATA

README = REPO_ROOT / "README.md"

# Commands the runner does not run, by their first word(s), and why.
_SKIPPED = {
    "python3 -m venv": "the set-up line: the test runs inside the environment it creates",
    ".venv/bin/python -m pytest": "the test suite itself",
    ".venv/bin/tensorboard": "a server that runs until stopped",
    "docker": "needs Docker and the tensorflow/serving image",
    "curl": "needs the TF Serving container above",
}

# Short budgets per command, appended after the README's own flags.
_BUDGETS = {
    "experiments.train_lm": ["--train_steps=5", "--eval_interval=5", "--eval_batches=2",
                             "--log_interval=5", "--checkpoint_interval=5",
                             "--sample_length=4"],
    # --epochs=0: the run is sized by --train_steps instead of the preset's epochs.
    "experiments.train_classifier": ["--epochs=0", "--train_steps=5", "--eval_interval=5",
                                     "--log_interval=5"],
    "experiments.sample": ["--max_new_tokens=8", "--seed=0"],
    "experiments.benchmark_scaling": ["--steps=2", "--batch_size=4"],
    "experiments.benchmark_train": ["--steps=2", "--warmup=1"],
}


def readme_command_blocks(text=None):
    """The README's fenced bash/sh blocks, each as a list of commands (continuations joined,
    comments dropped)."""
    text = README.read_text(encoding="utf-8") if text is None else text
    blocks = []
    for block in re.findall(r"^```(?:bash|sh)\n(.*?)^```", text, re.M | re.S):
        commands, current = [], ""
        for line in block.splitlines():
            line = _drop_comment(line).rstrip()
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            if _open_quote(current):  # A quoted argument spans lines (curl's JSON).
                current += " "
                continue
            if current.strip():
                commands.append(" ".join(current.split()))
            current = ""
        blocks.append(commands)
    return blocks


def _open_quote(command):
    try:
        shlex.split(command)
    except ValueError:
        return True
    return False


def _drop_comment(line):
    """`line` without a trailing `# comment` outside quotes."""
    quote = None
    for index, character in enumerate(line):
        if quote:
            quote = None if character == quote else quote
        elif character in "'\"":
            quote = character
        elif character == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def experiment_invocations(command):
    """`(module, [flag names])` of each `python -m experiments.X ...` in a command line
    (`launch_local ... -- python -m experiments.Y ...` gives both)."""
    words = shlex.split(command)
    found, index = [], 0
    while index < len(words):
        if words[index] == "-m" and index + 1 < len(words) and (
                words[index + 1].startswith("experiments.")):
            module, names = words[index + 1], []
            index += 2
            while index < len(words) and words[index] != "--":
                if words[index].startswith("--"):
                    names.append(words[index][2:].split("=", 1)[0])
                index += 1
            found.append((module, names))
        else:
            index += 1
    return found


def _inline_commands(text):
    """Inline `...python -m experiments.X ...` spans of the prose."""
    return [span for span in re.findall(r"`([^`\n]*python -m experiments\.[^`\n]*)`", text)]


def _module_flags(module):
    """The flag names `python -m <module>` accepts, and whether importing it loaded TensorFlow."""
    code = ("import importlib, json, sys; from absl import flags; "
            f"importlib.import_module({module!r}); "
            "print(json.dumps({'flags': sorted(flags.FLAGS), "
            "'tensorflow': 'tensorflow' in sys.modules}))")
    process = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=120)
    assert process.returncode == 0, f"{module} does not import: {process.stderr[-2000:]}"
    return json.loads(process.stdout.splitlines()[-1])


def test_the_parser_joins_continuations_and_drops_comments():
    text = ("```bash\n.venv/bin/python -m experiments.train_lm --a=1 \\\n    --b='x # y'  # c\n"
            "# only a comment\ncurl -d '{\"k\":\n 1}'\n```\n")
    assert readme_command_blocks(text) == [
        [".venv/bin/python -m experiments.train_lm --a=1 --b='x # y'", "curl -d '{\"k\": 1}'"]]
    assert experiment_invocations(
        "p -m experiments.launch_local --num_workers=2 -- p -m experiments.train_lm --x=1") == [
        ("experiments.launch_local", ["num_workers"]), ("experiments.train_lm", ["x"])]


def test_every_readme_command_names_a_module_and_flags_it_defines():
    text = README.read_text(encoding="utf-8")
    commands = [command for block in readme_command_blocks(text) for command in block]
    commands += _inline_commands(text)
    invocations = [found for command in commands for found in experiment_invocations(command)]
    modules = sorted({module for module, _ in invocations})
    assert {"experiments.train_lm", "experiments.sample", "experiments.train_classifier",
            "experiments.evaluate", "experiments.export"} <= set(modules)
    known = {}
    for module in modules:
        assert (REPO_ROOT / (module.replace(".", "/") + ".py")).exists(), module
        known[module] = _module_flags(module)
        assert not known[module]["tensorflow"], f"{module} imports TensorFlow at module level"
    unknown = [
        f"{module} --{name}" for module, names in invocations for name in names
        if name not in known[module]["flags"]
        and not (name.startswith("no") and name[2:] in known[module]["flags"])
    ]
    assert not unknown, f"README flags that their command does not define: {unknown}"


def _with_budget(command):
    """`command` with the short budgets of each experiments module it runs appended."""
    parts = command.split(" -- ")
    for index, part in enumerate(parts):
        for module, extra in _BUDGETS.items():
            if re.search(rf"-m {re.escape(module)}(\s|$)", part):
                parts[index] = part + " " + " ".join(extra)
    return " -- ".join(parts)


def _clone_layout(root):
    """A directory laid out as a fresh clone next to the shared data: ROOT/repo (the packages
    linked, `.venv/bin/python` running this interpreter) and ROOT/shared/data."""
    repo = root / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    for name in ("experiments", "keras_llm", "setup.cfg", "README.md"):
        (repo / name).symlink_to(REPO_ROOT / name)
    python = repo / ".venv" / "bin" / "python"
    # A script, not a link: a linked venv interpreter would not find its pyvenv.cfg.
    python.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    python.chmod(0o755)
    (root / "shared").mkdir()
    (root / "shared" / "data").symlink_to(SHARED_DATA)
    return repo


@pytest.mark.slow
def test_every_readme_command_block_runs_in_a_fresh_clone(tmp_path):
    if not SHARED_DATA.exists():
        pytest.skip(f"shared dataset not found: {SHARED_DATA}")
    repo = _clone_layout(tmp_path)
    environment = dict(os.environ, PYTHONPATH="")  # Nothing but the clone's packages.
    environment.pop("KERAS_LLM_SHARED_DATA", None)
    ran = []
    for block in readme_command_blocks():
        for command in block:
            if any(command.startswith(prefix) for prefix in _SKIPPED):
                continue
            command = _with_budget(command)
            process = subprocess.run(["bash", "-c", command], cwd=repo, env=environment,
                                     capture_output=True, text=True, timeout=900)
            assert process.returncode == 0, (
                f"README command failed ({process.returncode}): {command}\n"
                f"{process.stdout[-3000:]}\n{process.stderr[-3000:]}")
            assert "Traceback" not in process.stderr, (command, process.stderr[-3000:])
            ran.append(command)
    assert any("experiments.evaluate" in command for command in ran)
