"""`--help` lists the command's own flags by section with the preset's values, and exits 0."""

import re
import sys

import pytest

from tests.experiments.test_flag_checks import _run_without_tensorflow

COMMANDS = ["train_lm", "train_classifier", "sample", "evaluate", "launch_local",
            "benchmark", "benchmark_train", "benchmark_scaling", "benchmark_generate",
            "benchmark_window_order", "export", "check_export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_0_with_examples_and_only_the_commands_flags(command):
    process, _ = _run_without_tensorflow(f"experiments.{command}", "--help")
    assert process.returncode == 0, process.stderr
    text = process.stdout
    assert 2 <= len(re.findall(rf"^    python -m experiments\.{command} ", text, re.M)) <= 3
    assert "\nflags:\n" in text
    # absl's and test frameworks' flags stay behind --helpfull.
    for foreign in ("--verbosity", "--logtostderr", "--test_srcdir", "--tpu", "--pdb"):
        assert foreign not in text


def test_train_lm_help_groups_config_flags_with_the_presets_values():
    process, _ = _run_without_tensorflow("experiments.train_lm", "-h")
    text = process.stdout
    sections = re.findall(r"^(\w+) flags \(values of --preset=shakespeare_char\):$", text, re.M)
    assert sections == ["data", "model", "train"]
    assert text.index("--corpus=tiny_shakespeare") < text.index("\nmodel flags")
    assert text.index("--num_layers=4") < text.index("\ntrain flags") < text.index(
        "--train_steps=2000")
    assert "  --preset=shakespeare_char\n" in text
    assert "  --data_dir (not set)\n" in text
    assert "  --tie_embeddings=true\n" in text
    assert "auto: multi_worker when TF_CONFIG is set" in text


def test_help_shows_the_chosen_preset_and_the_default_it_overrides():
    process, _ = _run_without_tensorflow("experiments.train_lm", "--preset=shakespeare_char_lstm",
                                         "--help")
    assert process.returncode == 0
    text = process.stdout
    assert "model flags (values of --preset=shakespeare_char_lstm):" in text
    assert re.search(r"  --architecture=lstm\n      gpt \(decoder-only Transformer\) or lstm\. "
                     r"\(Default without the preset: 'gpt'\.\)", text)
    assert "  --learning_rate=0.002\n" in text


def test_classifier_help_lists_its_own_sections():
    process, _ = _run_without_tensorflow("experiments.train_classifier", "--preset=transformer",
                                         "--help")
    text = process.stdout
    assert "data flags (values of --preset=transformer):" in text
    assert "  --dataset=sst2\n" in text and "  --weight_average_decay=0.998\n" in text
    assert "--corpus" not in text  # A language-model flag.


def test_help_for_an_unknown_preset_says_so():
    process, _ = _run_without_tensorflow("experiments.train_lm", "--preset=nope", "--help")
    assert process.returncode == 1
    assert process.stderr.startswith("error: --preset='nope' is not a language-model preset")


def test_help_after_the_separator_belongs_to_the_workers_command():
    # launch_local ... -- python -m experiments.train_lm --help: the launcher is not asked.
    process, _ = _run_without_tensorflow("experiments.launch_local", "--num_workers=1", "--",
                                         sys.executable, "-c", "print('worker ran')", "--help")
    assert process.returncode == 0, process.stderr
    assert "[worker 0] worker ran" in process.stdout and "flags:" not in process.stdout
