r"""Evaluates a trained classifier on any labelled file. Examples:

    python -m experiments.evaluate --model_dir=runs/lstm_baseline_sst2 \
        --data=../shared/data/sst2/test.tsv
    python -m experiments.evaluate --model_dir=runs/reviews --data=new_reviews.csv \
        --text_column=review --label_column=stars --output=metrics.json

The file is read as the run's training files were (an `sst2` run reads SST-2-style TSV, a
`--dataset=files` run its own columns and header); the reader flags below override that.
Prints accuracy, precision, recall, F1 and the confusion matrix, and writes them as JSON into
the run (MODEL_DIR/evaluations/<data file name>.json) or to `--output`.
"""

import os
import sys

from absl import app, flags, logging

from experiments.command import check_flags, run
from keras_llm import config as config_lib

_AS_TRAINED = " Default: as the run's training files were read."
flags.DEFINE_string("model_dir", None, "A classifier run directory.", required=True)
flags.DEFINE_string("data", None, "Labelled TSV, CSV or JSONL file.", required=True)
flags.DEFINE_enum("file_format", None, ["auto", "tsv", "csv", "jsonl"],
                  "File format; auto: from the suffix." + _AS_TRAINED)
flags.DEFINE_string("text_column", None, "Text column name or 0-based index." + _AS_TRAINED)
flags.DEFINE_string("label_column", None, "Label column name or 0-based index." + _AS_TRAINED)
flags.DEFINE_enum("header", None, ["auto", "true", "false"],
                  "Whether row 1 is a header." + _AS_TRAINED)
flags.DEFINE_string("encoding", None, "File encoding, e.g. utf-8, cp1252." + _AS_TRAINED)
flags.DEFINE_enum("errors", None, ["strict", "replace"],
                  "Undecodable bytes: fail (strict) or replace." + _AS_TRAINED)
flags.DEFINE_boolean("skip_bad_rows", False, "Skip (and count) malformed rows.")
flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_string("output", None, "Where to write the metrics as JSON; default: "
                    "MODEL_DIR/evaluations/<data file name>.json.")
FLAGS = flags.FLAGS


def _reader_options():
    """The reader flags the user set, as `read_labelled_file` options; the rest come from the run."""
    from keras_llm.data.labelled_files import HEADER_FLAG_VALUES, column_from_flag

    options = {"skip_bad_rows": FLAGS.skip_bad_rows}
    for name in ("file_format", "encoding", "errors"):
        if FLAGS[name].value is not None:
            options[name] = FLAGS[name].value
    for name in ("text_column", "label_column"):
        if FLAGS[name].value is not None:
            options[name] = column_from_flag(FLAGS[name].value)
    if FLAGS.header is not None:
        options["header"] = HEADER_FLAG_VALUES[FLAGS.header]
    return options


def _check_paths():
    config_lib.load_run_config(FLAGS.model_dir, config_lib.ClassifierConfig)
    if not os.path.isfile(FLAGS.data):
        raise FileNotFoundError(f"--data={FLAGS.data}: no such file.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    _, status = check_flags(_check_paths)  # Before TensorFlow loads.
    if status:
        return status
    from keras_llm.evaluation.trained_runs import evaluate_file
    from keras_llm.training.atomic_files import write_json

    try:
        report, table = evaluate_file(FLAGS.model_dir, FLAGS.data, batch_size=FLAGS.batch_size,
                                      **_reader_options())
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(table)
    output = FLAGS.output or default_output(FLAGS.model_dir, FLAGS.data)
    write_json(output, report)
    print(f"metrics written to {output}")
    return 0


def default_output(model_dir, data):
    """MODEL_DIR/evaluations/<data file name without suffix>.json: the run keeps its scores."""
    name = os.path.splitext(os.path.basename(data))[0] or "data"
    return os.path.join(model_dir, "evaluations", f"{name}.json")


if __name__ == "__main__":
    run(main, __doc__)
