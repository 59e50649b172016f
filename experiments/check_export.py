r"""Checks that stock TF Serving can load and serve an export (read-only). Examples:

    python -m experiments.check_export exports/shakespeare_char/1
    python -m experiments.check_export exports/sst2/3 --model_name=sentiment

EXPORT_VERSION_DIR is TF Serving's BASE/NAME/VERSION folder. The checks: only ops of core
TensorFlow and tensorflow-text, none Xla*; a load in a fresh process without Keras; every
signature's example request (assets.extra/example_requests.json) answered as
assets.extra/expected_outputs.json says, over gRPC and REST; saved_model_cli lists every
signature; assets.extra/manifest.json and assets.extra/tf_serving_warmup_requests (written by
experiments.export) are present. Nothing is written: a served version is never changed. Prints
one line per check and a last "servable: ..." line; exits 0 when servable, else 1.
"""

import os
import sys

from absl import app, flags, logging

from experiments.command import EXIT_FAILURE, check_flags, run

flags.DEFINE_string("model_name", None, "model_spec.name of the requests. Default: NAME.")
FLAGS = flags.FLAGS


def _check_directory(argv):
    if len(argv) != 2:
        raise ValueError(f"expected one EXPORT_VERSION_DIR argument; got {argv[1:]}.")
    version_dir = argv[1]
    if not os.path.isfile(os.path.join(version_dir, "saved_model.pb")):
        raise FileNotFoundError(f"{version_dir}/saved_model.pb not found: is {version_dir} an "
                                f"export version folder (BASE/NAME/VERSION)?")
    return version_dir


def main(argv):
    logging.set_verbosity(logging.WARNING)
    version_dir, status = check_flags(lambda: _check_directory(argv))  # Before TensorFlow loads.
    if status:
        return status
    from keras_llm.export.servability import ServabilityError, check_export

    try:
        report = check_export(version_dir, model_name=FLAGS.model_name, write_files=False)
    except ServabilityError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"servable: {report['version_dir']} ({', '.join(sorted(report['signatures']))})")
    return 0


if __name__ == "__main__":
    run(main, __doc__)
