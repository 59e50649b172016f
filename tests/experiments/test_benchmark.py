"""`experiments.benchmark`: the table's rows, "not installed" without keras-hub, a tiny run."""

import json
import re
import subprocess
import sys

import pytest

from experiments import benchmark
from tests.conftest import REPO_ROOT

MACHINE = {"cpu": "Test CPU", "cores": 2, "flags": ["avx2"], "tensorflow": "2.21.0"}


def test_keras_hub_rows_say_not_installed_without_keras_hub(monkeypatch):
    from keras_llm import config_validation, presets
    from keras_llm.training import benchmark as bench

    monkeypatch.setitem(sys.modules, "keras_hub", None)  # `import keras_hub` raises ImportError.
    config = config_validation.validate(presets.language_model_config("shakespeare_char"))
    assert bench.keras_hub_gpt_fit(config, 67, jit_compile=False) is None
    table = []
    benchmark._row(table, "gpt", "KerasHub GPT2 fit (jit_compile off)", None, 768)
    line = benchmark.format_table(MACHINE, table, None).splitlines()[3]
    assert line.split(None, 1)[0] == "gpt"
    assert line.endswith("KerasHub GPT2 fit (jit_compile off)      not installed (pip install -e "
                         "'.[bench]')")


def test_table_shows_speed_ratio_and_model_flops_utilization():
    table = []
    # 768 tokens in 40 ms = 19,200 tokens/s.
    benchmark._row(table, "gpt", "keras_llm", 0.040, 768, mfu=0.5, vs_keras_hub_best=1.25)
    line = benchmark.format_table(MACHINE, table, None).splitlines()[3]
    assert line.split() == ["gpt", "keras_llm", "40.0", "19,200", "1.25x", "50.0%"]


def test_paired_speedup_compares_within_each_round():
    from keras_llm.training import benchmark as bench

    # Round 1: peers 50 and 40 ms, ours 40 -> 40/40 = 1.0. Round 2 (the machine busier):
    # 70 and 80, ours 50 -> 70/50 = 1.4. Round 3: 45 and 60, ours 30 -> 45/30 = 1.5.
    rounds = {"ours": [0.040, 0.050, 0.030], "off": [0.050, 0.070, 0.045],
              "on": [0.040, 0.080, 0.060]}
    speedup = bench.paired_speedup(rounds, "ours", ["off", "on"])
    assert speedup["rounds"] == pytest.approx([1.0, 1.4, 1.5])
    assert (speedup["median"], speedup["min"], speedup["max"]) == pytest.approx((1.4, 1.0, 1.5))
    # The ratio of medians would be 50/40 = 1.25: the busy round's peer time and our quiet
    # round's time are not from the same moment.


def test_model_flops_utilization_compares_each_round_with_its_own_matmul_peak():
    # 4 GFLOP per step; the large matmul does 2 GFLOP per call, so a round's MFU is
    # (4 / step) / (2 / matmul) = 2 * matmul / step. Round 1: 2 * 10 / 40 = 0.5. Round 2, the
    # machine twice as busy for both: 2 * 20 / 80 = 0.5. Round 3, the matmul alone slowed:
    # 2 * 20 / 40 = 1.0. Median 0.5; the quotient of the medians (40 and 20 ms) would say 1.0.
    rounds = {"keras_llm": [0.040, 0.080, 0.040], "large matmul": [0.010, 0.020, 0.020]}
    assert benchmark._paired_mfu(rounds, "keras_llm", "large matmul", 4e9, 2e9) == \
        pytest.approx(0.5)


def test_alternate_rounds_times_every_contender_in_every_round(monkeypatch):
    from keras_llm.training import benchmark as bench

    calls, clock = [], iter(range(100))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(clock)))
    contenders = {name: (lambda steps, name=name: calls.append((name, steps))) for name in "ab"}
    rounds = bench.alternate_rounds(contenders, steps=4, repeats=3)
    # Two untimed calls each, then a, b, a, b, a, b; each timed call spans one clock tick.
    assert calls == [("a", 4)] * 2 + [("b", 4)] * 2 + [("a", 4), ("b", 4)] * 3
    assert rounds == {"a": [0.25] * 3, "b": [0.25] * 3}


def test_table_states_the_per_round_range():
    table = []
    benchmark._row(table, "gpt", "keras_llm", 0.040, 768, vs_keras_hub_best=1.1,
                   vs_keras_hub_best_range=[0.95, 1.2])
    benchmark._row(table, "pipeline", "real pipeline", 0.041, 768, overhead=0.02,
                   overhead_range=[-0.005, 0.031])
    lines = benchmark.format_table(MACHINE, table, None).splitlines()
    prefix = "range over the rounds (each ratio within one round): "
    assert lines[5:7] == [prefix + "gpt keras_llm 0.95x to 1.20x",
                          prefix + "pipeline overhead -0.5% to +3.1%"]


@pytest.mark.slow  # About a minute: three models trace and compile.
def test_benchmark_runs_with_tiny_settings(tmp_path):
    output = tmp_path / "benchmark.json"
    process = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--steps=2", "--repeats=1",
         "--skip=lstm,pipeline,scaling,generation", f"--output={output}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "\nCPU: " in process.stdout and "gpt MFU: " in process.stdout
    figures = json.loads(output.read_text())
    names = [row["name"] for row in figures["rows"]]
    assert names[:2] == ["keras_llm", "keras_llm (no XLA, 1 step/call)"]
    ours = figures["rows"][0]
    # One round: its seconds per step, and the median ratio is that round's.
    assert ours["ms_per_step"] == pytest.approx(1000 * ours["seconds_per_step_rounds"][0])
    if ours.get("vs_keras_hub_best") is not None:  # KerasHub installed.
        assert ours["vs_keras_hub_best_rounds"] == [ours["vs_keras_hub_best"]]
    assert figures["machine"]["cores"] >= 1
    assert figures["gpt_mfu"]["large_matmul_peak_flops_per_second"] > 0
    assert 0 < figures["gpt_mfu"]["mfu_of_large_matmul_peak"] < 1.5


def test_compare_one_device_times_both_steps_in_one_process():
    """`benchmark_train --compare_one_device`: the mirrored step and the one-device step are
    built in one process and both timed; the printed ratio is one over the other."""
    process = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark_train", "--strategy=mirrored",
         "--num_cpu_devices=2", "--compare_one_device", "--steps=2", "--repeats=1",
         "--num_layers=1", "--hidden_dim=16", "--num_heads=2", "--sequence_length=8",
         "--batch_size=4", "--jit_compile=false"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    lines = process.stdout.splitlines()
    assert lines[1].startswith("2 replicas: ms/step ") and lines[2].startswith("1 device: ")
    replicated, single = (float(line.rsplit("tokens/s: ", 1)[1].replace(",", ""))
                          for line in lines[1:3])
    ratio = re.fullmatch(r"ratio \(tokens/s of 2 replicas over 1 device\): ([\d.]+)x "
                         r"\(per round ([\d.]+)x to ([\d.]+)x\)", lines[3])
    assert ratio, lines[3]
    # One round: its ratio is the median, the least and the most. The printed tokens/s are
    # rounded to whole tokens, the ratio to 0.01.
    assert len(set(ratio.groups())) == 1
    assert float(ratio[1]) == pytest.approx(replicated / single, abs=0.011)
    # The line `experiments.benchmark`'s scaling row reads its ratio from.
    assert benchmark._RATIO.search(lines[3]).groups() == ratio.groups()


def test_compare_one_device_refuses_a_single_replica_before_timing():
    process = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark_train", "--strategy=one_device",
         "--compare_one_device", "--steps=1000000", "--num_layers=1", "--hidden_dim=16",
         "--num_heads=2", "--sequence_length=8", "--batch_size=4", "--jit_compile=false"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1] == (
        "error: --compare_one_device: comparing with one device needs a strategy with several "
        "replicas; --strategy=one_device --num_cpu_devices=1 gives OneDeviceStrategy with 1 (on "
        "a CPU, add e.g. --strategy=mirrored --num_cpu_devices=2).")


def test_window_order_benchmark_measures_both_orders(tmp_path):
    output = tmp_path / "order.json"
    process = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark_window_order", "--num_tokens=3000",
         "--batches=2", f"--output={output}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    rows = json.loads(output.read_text())["rows"]
    assert [(row["order"], row["windows"]) for row in rows] == [("buffered", 2936),
                                                               ("permutation", 2936)]
    assert all(row["first_batch_seconds"] > 0 and row["ms_per_batch"] > 0 for row in rows)
    assert process.stdout.count("3,000 ") == 2
    assert process.stderr == ""  # TensorFlow's start-up lines are filtered, as in every command.


@pytest.mark.parametrize("flag, message", [
    ("--num_tokens=10", "error: --num_tokens: expected integers above --sequence_length=64; "
                        "got '10'."),
    ("--num_tokens=", "error: --num_tokens: expected one or more corpus sizes in tokens, e.g. "
                      "--num_tokens=1000000,5000000; got none."),
])
def test_window_order_benchmark_names_a_bad_size(flag, message):
    process = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark_window_order", flag],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    assert process.stderr.strip() == message
    assert process.stdout == ""


_MIRRORED = ("2 replicas: ms/step 40.00, tokens/s: 19,200\n1 device: ms/step 38.40, tokens/s: "
             "20,000\nratio (tokens/s of 2 replicas over 1 device): 0.96x (per round 0.92x to "
             "1.00x)\n")


def _scaling_table(monkeypatch, outputs):
    """`_scaling_rows` with each `benchmark_train` / `launch_local` process replaced, in call
    order (mirrored, then 1 and 2 workers per round), by `(returncode, stdout)`; the rows and
    the log."""
    import types

    from keras_llm import config_validation, presets

    benchmark.FLAGS(["benchmark", "--scaling_rounds=2"])
    config = config_validation.validate(presets.language_model_config("shakespeare_char"))
    results = iter(outputs)
    monkeypatch.setattr(benchmark.subprocess, "run", lambda command, **_: types.SimpleNamespace(
        returncode=(result := next(results))[0], stdout=result[1], stderr="boom"))
    table, log = [], []
    benchmark._scaling_rows(config, table, log.append)
    return {row["name"]: row for row in table}, log


def _worker(tokens_per_second):
    return 0, f"ms/step:  1.0\ntokens/s: {tokens_per_second:,}\n"


def test_scaling_ratios_pair_the_runs_of_each_round(monkeypatch):
    rows, _ = _scaling_table(monkeypatch, [(0, _MIRRORED), _worker(10_000), _worker(13_000),
                                           _worker(12_000), _worker(15_000)])
    # 768 tokens a step: 1 worker at 10,000 and 12,000 tokens/s is 76.8 and 64 ms, median 70.4.
    assert rows["1 worker"]["ms_per_step"] == pytest.approx((76.8 + 64.0) / 2)
    # Per round 13,000 / 10,000 = 1.3 and 15,000 / 12,000 = 1.25: median 1.275.
    assert rows["2 workers"]["vs_one"] == pytest.approx(1.275)
    assert rows["2 workers"]["vs_one_range"] == pytest.approx([1.25, 1.3])
    assert rows["2 logical devices (mirrored)"]["vs_one"] == 0.96
    assert rows["2 logical devices (mirrored)"]["vs_one_range"] == [0.92, 1.0]


def test_a_failed_scaling_run_fails_only_its_own_row(monkeypatch):
    # benchmark_train prints one figure; every 2-worker run fails.
    rows, log = _scaling_table(monkeypatch, [(0, "tokens/s: 20,000\n"), _worker(10_000), (1, ""),
                                             _worker(12_000), (1, "")])
    assert rows["1 device"]["status"] == rows["2 logical devices (mirrored)"]["status"] == "failed"
    assert rows["2 workers"]["status"] == "failed" and rows["2 workers"]["vs_one"] is None
    assert rows["1 worker"]["tokens_per_second"] == pytest.approx(768 / ((0.0768 + 0.064) / 2))
    assert "expected 2 tokens/s figures (2 replicas, 1 device); got 1" in log[1]
    assert sum("left out of the workers' ratio" in line for line in log) == 2
