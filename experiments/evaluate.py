r"""Evaluates a trained classifier on any labelled file.

    python -m experiments.evaluate --model_dir=runs/lstm_baseline_sst2 \
        --data=../shared/data/sst2/test.tsv --text_column=1 --label_column=0 --header=false

Prints accuracy, precision, recall, F1 and the confusion matrix; `--output` also writes them as
JSON.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging

flags.DEFINE_string("model_dir", None, "A classifier run directory.", required=True)
flags.DEFINE_string("data", None, "Labelled TSV, CSV or JSONL file.", required=True)
flags.DEFINE_enum("file_format", "auto", ["auto", "tsv", "csv", "jsonl"], "File format.")
flags.DEFINE_string("text_column", "sentence", "Text column name or 0-based index.")
flags.DEFINE_string("label_column", "label", "Label column name or 0-based index.")
flags.DEFINE_enum("header", "auto", ["auto", "true", "false"], "Whether row 1 is a header.")
flags.DEFINE_string("encoding", "utf-8", "File encoding.")
flags.DEFINE_enum("errors", "strict", ["strict", "replace"], "Undecodable bytes.")
flags.DEFINE_boolean("skip_bad_rows", False, "Skip (and count) malformed rows.")
flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_string("output", None, "Also write the metrics to this JSON file.")
FLAGS = flags.FLAGS


def _column(value):
    return int(value) if value.isdigit() else value


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from keras_llm.training.classifier import evaluate_file
    from keras_llm.training.run_directory import write_json_atomically

    try:
        report, table = evaluate_file(
            FLAGS.model_dir, FLAGS.data, batch_size=FLAGS.batch_size,
            file_format=FLAGS.file_format, text_column=_column(FLAGS.text_column),
            label_column=_column(FLAGS.label_column),
            header={"auto": None, "true": True, "false": False}[FLAGS.header],
            encoding=FLAGS.encoding, errors=FLAGS.errors, skip_bad_rows=FLAGS.skip_bad_rows,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(table)
    if FLAGS.output:
        write_json_atomically(FLAGS.output, report)
    return 0


if __name__ == "__main__":
    app.run(main)
