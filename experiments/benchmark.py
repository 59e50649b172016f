r"""keras_llm side by side with its peers and the hardware, in one run, one table. Examples:

    python -m experiments.benchmark --output=benchmark.json
    python -m experiments.benchmark --sweep --skip=scaling,generation
    python -m experiments.benchmark --steps=8 --repeats=1 --skip=scaling,generation,lstm  # smoke

Rows (synthetic token ids of the preset's vocabulary; warm-up excluded; medians over
--repeats alternating rounds; only ratios within one run are compared). The gpt, lstm and
pipeline ratios are medians of per-round ratios (each contender against the others timed in
the same round, seconds apart), and the table says their range over the rounds:

- gpt: keras_llm's training step (as trained: --jit_compile auto, --steps_per_execution)
  and the same step as it was before (no XLA, one step per call), against KerasHub's
  `GPT2Backbone` + tied head trained with `fit`, jit_compile off and on ("not installed" without
  `pip install -e ".[bench]"`). Ratio: our speed over KerasHub's faster setting in each round
  (median over the rounds).
- lstm: the LSTM language model step against a plain Keras Embedding -> LSTM -> Dense `fit`.
- MFU: model FLOP/s (6N + 12LdT per token, PaLM appendix B, nanoGPT's `estimate_mfu`) over the
  float32 FLOP/s of a 2048 x 2048 matmul, and over that of the step's own matmul shapes
  (forward and backward products, `gpt_matmul_shapes`), both timed in the same alternating
  rounds as the steps and compared round by round (a shared machine's peak moves with its
  load), median over the rounds; each sweep row against its own.
- pipeline: the real input pipeline (window, shuffle, batch, distribute over token ids) against
  batches built beforehand in memory.
- scaling: 2 logical CPU devices (MirroredStrategy) vs 1 device, both built in one fresh
  `experiments.benchmark_train --compare_one_device` process and timed in alternating rounds;
  2 local workers (MultiWorkerMirroredStrategy) vs 1, fresh processes in --scaling_rounds
  alternating rounds (medians). All at the same global batch; the ratios are medians of
  per-round ratios, as above.
- generation: cached greedy decoding, new tokens/s, against KerasHub's `GPT2CausalLM.generate`.
- --sweep: our step at larger widths, contexts and depths, with MFU.
"""

import json
import re
import statistics
import subprocess
import sys

from absl import app, flags, logging

from experiments.command import check_flags, run
from keras_llm import config_validation, presets

SECTIONS = ("gpt", "lstm", "pipeline", "scaling", "generation")
flags.DEFINE_string("preset", "shakespeare_char", "GPT preset whose shape is timed.")
flags.DEFINE_string("lstm_preset", "shakespeare_char_lstm", "LSTM preset whose shape is timed.")
flags.DEFINE_integer("steps", 32, "Steps per timed call.", lower_bound=1)
flags.DEFINE_integer("repeats", 5, "Alternating timed rounds (medians).", lower_bound=1)
flags.DEFINE_integer("steps_per_execution", None,
                     "Our steps per compiled call (default: the preset's, 16).", lower_bound=1)
flags.DEFINE_integer("benchmark_vocabulary_size", 67, "Vocabulary (Tiny Shakespeare's).",
                     lower_bound=3)
flags.DEFINE_list("skip", [], f"Sections to leave out: any of {', '.join(SECTIONS)}.")
flags.DEFINE_boolean("sweep", False, "Also time our step at larger model sizes.")
flags.DEFINE_integer("scaling_steps", 64, "Timed steps per scaling measurement.", lower_bound=1)
flags.DEFINE_integer("scaling_rounds", 2, "Alternating rounds of the 1- and 2-worker processes "
                     "(medians).", lower_bound=1)
flags.DEFINE_string("output", None, "Also write every figure as JSON to this file.")
FLAGS = flags.FLAGS

# (hidden_dim, sequence_length, num_layers): nanoGPT's CPU shape up to a GPT-2-small-like width.
SWEEP = ((128, 64, 4), (256, 128, 4), (384, 256, 6), (512, 256, 8))
NOT_INSTALLED = "not installed (pip install -e '.[bench]')"


def _settings():
    unknown = sorted(set(FLAGS.skip) - set(SECTIONS))
    if unknown:
        raise ValueError(f"--skip: unknown section(s) {unknown}; known: {', '.join(SECTIONS)}.")
    gpt = config_validation.validate(presets.language_model_config(FLAGS.preset))
    lstm = config_validation.validate(presets.language_model_config(FLAGS.lstm_preset))
    if gpt.model.architecture != "gpt" or lstm.model.architecture != "lstm":
        raise ValueError(f"--preset must be a gpt preset and --lstm_preset an lstm one; got "
                         f"{gpt.model.architecture} and {lstm.model.architecture}.")
    return gpt, lstm


def _row(table, section, name, seconds, tokens, **extra):
    """Appends a row: `seconds` per step (None: not installed) of `tokens` each, and `extra`
    figures (e.g. `mfu`, ratios)."""
    row = {"section": section, "name": name}
    if seconds is None:
        row["status"] = NOT_INSTALLED
    else:
        row.update(ms_per_step=1000 * seconds, tokens_per_second=tokens / seconds)
    row.update(extra)
    table.append(row)
    return row


def _gpt_rows(config, vocabulary_size, table, log):
    import keras_llm.training.benchmark as bench

    tokens = config.train.batch_size * config.model.sequence_length
    ours, model, _ = bench.keras_llm_step(config, vocabulary_size)
    before, _, _ = bench.keras_llm_step(
        bench.with_train(config, jit_compile="false", steps_per_execution=1), vocabulary_size)
    contenders = {"keras_llm": ours, "keras_llm (no XLA, 1 step/call)": before}
    peers = {}
    for jit in (False, True):
        runner = bench.keras_hub_gpt_fit(config, vocabulary_size, jit)
        name = f"KerasHub GPT2 fit (jit_compile {'on' if jit else 'off'})"
        peers[name] = runner
        if runner is not None:
            contenders[name] = runner
    # The peaks are timed in the same alternating rounds as the steps (see matmul_runner).
    square, square_flops = bench.square_matmul_runner()
    shapes, shape_flops = bench.matmul_runner(bench.gpt_matmul_shapes(
        config.model, vocabulary_size, config.train.batch_size))
    contenders.update({"large matmul": square, "model's matmul shapes": shapes})
    log(f"gpt: timing {len(contenders)} contenders, {FLAGS.repeats} x {FLAGS.steps} steps ...")
    rounds = bench.alternate_rounds(contenders, FLAGS.steps, FLAGS.repeats)
    seconds = {name: statistics.median(values) for name, values in rounds.items()}
    peak = square_flops / seconds.pop("large matmul")
    shape_peak = shape_flops / seconds.pop("model's matmul shapes")
    flops_per_step = bench.flops_per_step(config, model.count_params())
    installed = [name for name in peers if peers[name] is not None]
    mfu = {name: _paired_mfu(rounds, name, "large matmul", flops_per_step, square_flops)
           for name in seconds}
    for name in list(seconds) + [n for n in peers if peers[n] is None]:
        value = seconds.get(name)
        ratio = (bench.paired_speedup(rounds, name, installed)
                 if installed and value else None)
        _row(table, "gpt", name, value, tokens, mfu=mfu.get(name),
             seconds_per_step_rounds=rounds.get(name), **_ratio_fields("vs_keras_hub_best", ratio))
    return {"flops_per_step": flops_per_step, "parameters": int(model.count_params()),
            "large_matmul_peak_flops_per_second": peak,
            "model_shapes_peak_flops_per_second": shape_peak,
            "large_matmul_seconds_rounds": rounds["large matmul"],
            "model_shapes_seconds_rounds": rounds["model's matmul shapes"],
            "mfu_of_large_matmul_peak": mfu["keras_llm"],
            "mfu_of_model_shapes_peak": _paired_mfu(rounds, "keras_llm", "model's matmul shapes",
                                                    flops_per_step, shape_flops)}


def _paired_mfu(rounds, name, matmul, flops_per_step, matmul_flops):
    """Model FLOPs utilization of contender `name`: its model FLOP/s over the FLOP/s of the
    `matmul` contender (`matmul_flops` per call) in the same round, median over the rounds."""
    from keras_llm.training.benchmark import paired_speedup

    speedup = paired_speedup(rounds, name, [matmul])  # Matmul seconds over step seconds.
    return flops_per_step / matmul_flops * speedup["median"]


def _lstm_rows(config, vocabulary_size, table, log):
    import keras_llm.training.benchmark as bench

    tokens = config.train.batch_size * config.model.sequence_length
    ours, model, _ = bench.keras_llm_step(config, vocabulary_size)
    contenders = {"keras_llm LSTM": ours}
    for jit in (False, True):
        contenders[f"Keras LSTM fit (jit_compile {'on' if jit else 'off'})"] = \
            bench.keras_lstm_fit(config, vocabulary_size, jit)
    square, square_flops = bench.square_matmul_runner()
    contenders["large matmul"] = square
    log(f"lstm: timing {len(contenders)} contenders ...")
    rounds = bench.alternate_rounds(contenders, FLAGS.steps, FLAGS.repeats)
    trained = [name for name in rounds if name != "large matmul"]
    peers = [name for name in trained if name != "keras_llm LSTM"]
    flops_per_step = bench.flops_per_step(config, model.count_params())
    for name in trained:
        _row(table, "lstm", name, statistics.median(rounds[name]), tokens,
             mfu=_paired_mfu(rounds, name, "large matmul", flops_per_step, square_flops),
             seconds_per_step_rounds=rounds[name],
             **_ratio_fields("vs_keras_best", bench.paired_speedup(rounds, name, peers)))


def _pipeline_rows(config, vocabulary_size, table, log):
    import numpy as np

    import keras_llm.training.benchmark as bench
    from keras_llm.data.language_model_dataset import training_dataset

    tokens = config.train.batch_size * config.model.sequence_length
    stream = np.random.default_rng(0).integers(0, vocabulary_size, 1_000_000).astype(np.int32)
    real, _, _ = bench.keras_llm_step(config, vocabulary_size, dataset=training_dataset(
        stream, config.model.sequence_length, config.train.batch_size, seed=0))
    prebuilt, _, _ = bench.keras_llm_step(config, vocabulary_size)
    log("pipeline: timing the real input pipeline against prebuilt batches ...")
    rounds = bench.alternate_rounds({"real pipeline": real, "prebuilt batches": prebuilt},
                                    FLAGS.steps, FLAGS.repeats)
    # Overhead: the real pipeline's step time over the prebuilt one's, minus 1, round by round.
    slowdown = bench.paired_speedup(rounds, "prebuilt batches", ["real pipeline"])
    overhead = {key: slowdown[key] - 1 for key in ("median", "min", "max")}
    for name, values in rounds.items():
        _row(table, "pipeline", name, statistics.median(values), tokens,
             seconds_per_step_rounds=values, overhead=overhead["median"],
             overhead_range=[overhead["min"], overhead["max"]],
             overhead_rounds=[ratio - 1 for ratio in slowdown["rounds"]])


def _ratio_fields(key, ratio):
    """A row's ratio (`key`: the median of the per-round ratios), its range and every round's."""
    if ratio is None:
        return {key: None}
    fields = {key: ratio["median"], f"{key}_range": [ratio["min"], ratio["max"]]}
    if "rounds" in ratio:  # Not from another process's printed line.
        fields[f"{key}_rounds"] = ratio["rounds"]
    return fields


_FIGURE = re.compile(r"tokens/s:\s*([\d,]+)")
_RATIO = re.compile(r"over 1 device\): ([\d.]+)x \(per round ([\d.]+)x to ([\d.]+)x\)")


def _process_output(command, log):
    """`command`'s standard output, or None (logged) if it failed or printed no tokens/s."""
    process = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if process.returncode != 0 or not _FIGURE.search(process.stdout):
        log(f"{' '.join(command)} failed ({process.returncode}): {process.stderr[-500:]}")
        return None
    return process.stdout


def _tokens_per_second(output):
    """The `tokens/s:` figures in a command's `output`, in order."""
    return [float(figure.replace(",", "")) for figure in _FIGURE.findall(output)]


def _scaling_rows(config, table, log):
    """Mirrored on 2 logical devices against 1 device, timed alternating in one fresh process
    (`benchmark_train --compare_one_device`); 2 local workers against 1, fresh processes run
    in alternating rounds (a worker set cannot share a process). Rows: medians; ratios: the
    median of the per-round ratios."""
    benchmark = [sys.executable, "-m", "experiments.benchmark_train", f"--preset={FLAGS.preset}"]
    launch = [sys.executable, "-m", "experiments.launch_local", "--threads_per_worker=1",
              "--timeout_seconds=900"]
    tokens = config.train.batch_size * config.model.sequence_length
    seconds, ratios = {}, {}
    log("scaling: 2 logical devices (mirrored) against 1 device, alternating in one process ...")
    steps = max(2, FLAGS.scaling_steps // FLAGS.repeats)
    command = benchmark + ["--strategy=mirrored", "--num_cpu_devices=2", "--compare_one_device",
                           f"--steps={steps}", f"--repeats={FLAGS.repeats}"]
    output = _process_output(command, log)
    figures = _tokens_per_second(output) if output else []
    if output and len(figures) != 2:
        log(f"{' '.join(command)}: expected 2 tokens/s figures (2 replicas, 1 device); got "
            f"{len(figures)}: {output[-500:]}")
        figures = []
    mirrored, one = figures or (None, None)
    seconds["2 logical devices (mirrored)"] = tokens / mirrored if mirrored else None
    seconds["1 device"] = tokens / one if one else None
    ratio = _RATIO.search(output) if figures else None
    if ratio:
        ratios["2 logical devices (mirrored)"] = dict(
            zip(("median", "min", "max"), (float(value) for value in ratio.groups())))
    elif figures:
        log(f"{' '.join(command)}: no per-round ratio line; the mirrored row has no ratio.")
    runs = {"1 worker": [], "2 workers": []}  # Seconds per step of every run that worked.
    paired = {"1 worker": [], "2 workers": []}  # Only rounds in which both runs worked.
    for round_index in range(FLAGS.scaling_rounds):
        timed = {}
        for name, workers in (("1 worker", 1), ("2 workers", 2)):
            log(f"scaling: {name}, round {round_index + 1} of {FLAGS.scaling_rounds} ...")
            output = _process_output(
                launch + [f"--num_workers={workers}", "--"] + benchmark
                + ["--strategy=multi_worker", f"--steps={FLAGS.scaling_steps}"], log)
            if output:  # launch_local: the chief's line comes first.
                timed[name] = tokens / _tokens_per_second(output)[0]
                runs[name].append(timed[name])
        if len(timed) == 2:
            for name, value in timed.items():
                paired[name].append(value)
        elif timed:
            log(f"scaling: round {round_index + 1} left out of the workers' ratio (one of its "
                "runs failed).")
    for name, values in runs.items():
        seconds[name] = statistics.median(values) if values else None
    if paired["1 worker"]:
        from keras_llm.training.benchmark import paired_speedup

        ratios["2 workers"] = paired_speedup(paired, "2 workers", ["1 worker"])
    for name, reference in (("2 logical devices (mirrored)", "1 device"),
                            ("2 workers", "1 worker")):
        for row_name in (reference, name):
            extra = _ratio_fields("vs_one", ratios.get(name)) if row_name == name else {}
            if row_name in runs:
                extra["seconds_per_step_runs"] = runs[row_name]
            row = _row(table, "scaling", row_name, seconds[row_name], tokens, **extra)
            if seconds[row_name] is None:
                row["status"] = "failed"


def _generation_rows(config, vocabulary_size, table, log):
    from keras_llm.generation import benchmark as generation

    prompt_length, new_tokens, batch = 16, 64, 8
    model = generation.build_benchmark_model(config.model, vocabulary_size,
                                             prompt_length + new_tokens)
    log("generation: cached decoding and KerasHub generate ...")
    ours = generation.benchmark_decoding(model, vocabulary_size, prompt_length, new_tokens,
                                         [batch], repeats=FLAGS.repeats)[0]
    table.append({"section": "generation", "name": "keras_llm cached generate",
                  "new_tokens_per_second": ours["cached_tokens_per_second"], "batch": batch})
    hub = generation.benchmark_keras_hub(config.model, vocabulary_size, prompt_length,
                                         new_tokens, batch, ours["cached_tokens_per_second"],
                                         repeats=FLAGS.repeats)
    row = {"section": "generation", "name": "KerasHub GPT2CausalLM.generate", "batch": batch}
    if "tokens_per_second" in hub:
        row.update(new_tokens_per_second=hub["tokens_per_second"])
        table[-1]["vs_keras_hub"] = hub["ours_over_keras_hub"]
    else:
        row["status"] = NOT_INSTALLED
    table.append(row)


def _sweep_rows(config, vocabulary_size, table, log):
    import keras_llm.training.benchmark as bench

    for hidden_dim, sequence_length, num_layers in SWEEP:
        sized = bench.with_model(config, hidden_dim=hidden_dim, sequence_length=sequence_length,
                                 num_layers=num_layers)
        log(f"sweep: d={hidden_dim} T={sequence_length} L={num_layers} ...")
        ours, model, _ = bench.keras_llm_step(sized, vocabulary_size)
        # The largest shape takes seconds per step on 2 cores: fewer, shorter rounds.
        steps, repeats = max(2, FLAGS.steps // 16), min(FLAGS.repeats, 3)
        square, square_flops = bench.square_matmul_runner()
        shapes, shape_flops = bench.matmul_runner(bench.gpt_matmul_shapes(
            sized.model, vocabulary_size, sized.train.batch_size))
        rounds = bench.alternate_rounds({"keras_llm": ours, "large matmul": square,
                                         "model's matmul shapes": shapes}, steps, repeats)
        peak = square_flops / statistics.median(rounds["large matmul"])
        tokens = sized.train.batch_size * sequence_length
        flops_per_step = bench.flops_per_step(sized, model.count_params())
        _row(table, "sweep", f"d={hidden_dim} T={sequence_length} L={num_layers}",
             statistics.median(rounds["keras_llm"]), tokens,
             mfu=_paired_mfu(rounds, "keras_llm", "large matmul", flops_per_step, square_flops),
             parameters=int(model.count_params()), peak_flops_per_second=peak,
             seconds_per_step_rounds=rounds["keras_llm"],
             large_matmul_seconds_rounds=rounds["large matmul"],
             model_shapes_seconds_rounds=rounds["model's matmul shapes"],
             mfu_of_model_shapes_peak=_paired_mfu(rounds, "keras_llm", "model's matmul shapes",
                                                  flops_per_step, shape_flops))


def _spread(row):
    """`row`'s per-round range as text ("" without one): ratios, or the pipeline's overhead."""
    if row.get("overhead_range"):
        low, high = row["overhead_range"]
        return f"{row['section']} overhead {100 * low:+.1f}% to {100 * high:+.1f}%"
    for key in ("vs_keras_hub_best_range", "vs_keras_best_range", "vs_one_range"):
        if row.get(key):
            low, high = row[key]
            return f"{row['section']} {row['name']} {low:.2f}x to {high:.2f}x"
    return ""


def format_table(machine, table, mfu):
    """The printed table: one line per row, figures with units."""
    from keras_llm.generation.benchmark import machine_line

    lines = [machine_line(machine)]
    if mfu:
        lines.append(
            f"float32 matmul peak (medians): "
            f"{mfu['large_matmul_peak_flops_per_second'] / 1e9:.0f} GFLOP/s "
            f"(large squares), {mfu['model_shapes_peak_flops_per_second'] / 1e9:.0f} GFLOP/s "
            f"(the GPT step's own matmul shapes, forward and backward); "
            f"model {mfu['flops_per_step'] / 1e9:.2f} GFLOP/step")
    lines.append("MFU: each round's model FLOP/s over the large-matmul FLOP/s of the same round, "
                 "median over the rounds")
    lines.append(f"{'section':<10} {'contender':<40} {'ms/step':>8} {'tokens/s':>10} "
                 f"{'ratio':>7} {'MFU':>6}")
    for row in table:
        if "status" in row:
            lines.append(f"{row['section']:<10} {row['name']:<40} {row['status']}")
            continue
        ratio = next((row[key] for key in ("vs_keras_hub_best", "vs_keras_best", "vs_one",
                                           "vs_keras_hub") if row.get(key) is not None), None)
        if "new_tokens_per_second" in row:
            speed, ms = f"{row['new_tokens_per_second']:>10,.0f}", f"{'':>8}"
        else:
            speed, ms = f"{row['tokens_per_second']:>10,.0f}", f"{row['ms_per_step']:>8.1f}"
        ratio_text = f"{ratio:>6.2f}x" if ratio is not None else f"{'':>7}"
        mfu_text = f"{100 * row['mfu']:>5.1f}%" if row.get("mfu") is not None else ""
        if "overhead" in row and row["name"] == "real pipeline":
            mfu_text = f"overhead {100 * row['overhead']:+.1f}%"
        lines.append(f"{row['section']:<10} {row['name']:<40} {ms} {speed} {ratio_text} "
                     f"{mfu_text}")
    spreads = [_spread(row) for row in table if row["name"] in (
        "keras_llm", "keras_llm LSTM", "real pipeline", "2 logical devices (mirrored)",
        "2 workers")]
    lines.extend(f"range over the rounds (each ratio within one round): {spread}"
                 for spread in spreads if spread)
    if mfu:
        lines.append(f"gpt MFU: {100 * mfu['mfu_of_large_matmul_peak']:.1f}% of the large-matmul "
                     f"peak, {100 * mfu['mfu_of_model_shapes_peak']:.1f}% of the model-shape peak")
    lines.append("ratio: gpt/lstm rows: the median over the rounds of the row's speed over the "
                 "fastest peer's in the same round (so not always the quotient of the medians "
                 "above); scaling: over 1 device / 1 worker, the same way; generation: over "
                 "KerasHub. New tokens/s for generation.")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    configs, status = check_flags(_settings)
    if status:
        return status
    gpt, lstm = configs
    import keras_llm.training.benchmark as bench
    from keras_llm.generation.benchmark import machine_description
    from keras_llm.training.precision import apply_runtime_settings

    # As training does (threads, malloc's top pad, dtype policy), for every contender alike:
    # they share this process.
    apply_runtime_settings(gpt.train)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    if FLAGS.steps_per_execution:
        gpt = bench.with_train(gpt, steps_per_execution=FLAGS.steps_per_execution)
        lstm = bench.with_train(lstm, steps_per_execution=FLAGS.steps_per_execution)
    vocabulary_size = FLAGS.benchmark_vocabulary_size
    machine = machine_description()
    table, mfu = [], None
    if "gpt" not in FLAGS.skip:
        mfu = _gpt_rows(gpt, vocabulary_size, table, log)
    if "lstm" not in FLAGS.skip:
        _lstm_rows(lstm, vocabulary_size, table, log)
    if "pipeline" not in FLAGS.skip:
        _pipeline_rows(gpt, vocabulary_size, table, log)
    if "generation" not in FLAGS.skip:
        _generation_rows(gpt, vocabulary_size, table, log)
    if FLAGS.sweep:
        _sweep_rows(gpt, vocabulary_size, table, log)
    if "scaling" not in FLAGS.skip:
        _scaling_rows(gpt, table, log)
    text = format_table(machine, table, mfu)
    print(f"python -m experiments.benchmark {' '.join(sys.argv[1:])}".rstrip())
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as file:
            json.dump({"machine": machine, "preset": FLAGS.preset, "lstm_preset": FLAGS.lstm_preset,
                       "steps": FLAGS.steps, "repeats": FLAGS.repeats, "gpt_mfu": mfu,
                       "rows": table}, file, indent=2)
    return 0


if __name__ == "__main__":
    run(main, __doc__)
