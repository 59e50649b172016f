"""Exports a trained run as a SavedModel in TF Serving's layout: `BASE/NAME/VERSION/`.

    export_run("runs/shakespeare_char", "exports")  ->  exports/shakespeare_char/1/
        saved_model.pb, variables/, assets/ (the vocabulary)
        assets.extra/example_requests.json    one request per signature
        assets.extra/expected_outputs.json    what the model answered to them before saving
        assets.extra/manifest.json, tf_serving_warmup_requests   (written by the check)

The model is rebuilt outside any distribution strategy from the checkpoint the run reported
(its best, or weight-averaged, weights), so an export of a MirroredStrategy or multi-worker run
equals one of a single-device run. The version is written in a temporary folder beside the
final one, checked (`keras_llm.export.servability.check_export`), then renamed into place: a
server polling `BASE/NAME` never sees a half-written version.
"""

import hashlib
import os
import re
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from keras_llm import config as config_lib
from keras_llm.evaluation.trained_runs import load_trained_classifier
from keras_llm.evaluation.trained_runs import load_trained_language_model
from keras_llm.export.classifier_signatures import ClassifierSignatures
from keras_llm.export.language_model_signatures import LanguageModelSignatures
from keras_llm.progress import Progress
from keras_llm.training.atomic_files import write_json

# One request per signature, checked at export and sent to the server as warm-up.
LANGUAGE_MODEL_EXAMPLES = {
    "generate": {"prompt": ["ROMEO:", "To be, or not"], "max_new_tokens": 8, "temperature": 0.0,
                 "top_k": 0, "top_p": 1.0, "seed": 0},
    "score": {"text": ["To be, or not to be, that is the question.", "春眠不觉晓"]},
    "serving_default": {"token_ids": [[3, 4, 5], [6, 0, 0]]},
}
CLASSIFIER_EXAMPLES = {
    "serving_default": {"text": ["A gripping, beautifully made film.", "dull and far too long"]},
    "classify_token_ids": {"token_ids": [[3, 4, 5], [6, 0, 0]],
                           "padding_mask": [[True, True, True], [True, False, False]]},
}


class ExportError(ValueError):
    """The export directory or version cannot be written as asked."""


def next_version(model_base):
    """One more than the highest integer version folder in `model_base` (1 if none)."""
    if not os.path.isdir(model_base):
        return 1
    versions = [int(name) for name in os.listdir(model_base) if re.fullmatch(r"\d+", name)]
    return max(versions, default=0) + 1


def _to_json(value):
    value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    if value.dtype.kind in "SO":  # bytes -> str, as TF Serving's REST API returns strings
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(value).tolist()
    return value.tolist()


def _expected_outputs(module, examples, signatures):
    outputs = {}
    for name, request in examples.items():
        specs = {spec.name: spec for spec in signatures[name].structured_input_signature[0]}
        inputs = {key: tf.constant(value, dtype=specs[key].dtype) for key, value in request.items()}
        outputs[name] = {key: _to_json(value) for key, value in signatures[name](**inputs).items()}
    return outputs


def _vocabulary_sha256(tokenizer_dir):
    """sha256 of each file of the run's saved tokenizer (the vocabulary the graph holds)."""
    digests = {}
    for name in sorted(os.listdir(tokenizer_dir)):
        with open(os.path.join(tokenizer_dir, name), "rb") as file:
            digests[name] = hashlib.sha256(file.read()).hexdigest()
    return digests


def build_signatures(model_dir):
    """Loads a run and returns `(module, signatures, examples, info)` for `tf.saved_model.save`.

    Raises:
        FileNotFoundError, ValueError: as `load_trained_language_model` / `load_trained_classifier`.
    """
    if isinstance(config_lib.load_any_run_config(model_dir), config_lib.ClassifierConfig):
        model, tokenizer, labels, config = load_trained_classifier(model_dir)
        module = ClassifierSignatures(model, tokenizer, labels.names, config.data.sequence_length)
        names, examples = ("serving_default", "classify_token_ids"), CLASSIFIER_EXAMPLES
        info = {"task": "classification", "labels": labels.names}
    else:
        model, tokenizer, config, step = load_trained_language_model(model_dir)
        module = LanguageModelSignatures(model, tokenizer)
        names, examples = ("generate", "score", "serving_default"), LANGUAGE_MODEL_EXAMPLES
        info = {"task": "language_modeling", "step": step}
    # Keras 3 layers kept in Python lists are invisible to TF's object graph (keras#18398):
    # track every variable explicitly, as the checkpoints do.
    module.model_variables = list(model.variables)
    signatures = {name: getattr(module, name).get_concrete_function() for name in names}
    info.update({"run": os.path.abspath(model_dir), "preset": config.preset,
                 "architecture": config.model.architecture,
                 "vocabulary_sha256": _vocabulary_sha256(os.path.join(model_dir, "tokenizer"))})
    return module, signatures, examples, info


# A staging folder untouched this long belongs to an export that was killed (an export takes
# minutes): the next export removes it.
STALE_STAGING_SECONDS = 3600


def _remove_stale_staging(model_base):
    for name in os.listdir(model_base):
        path = os.path.join(model_base, name)
        if (name.startswith(".tmp-") and os.path.isdir(path)
                and time.time() - os.path.getmtime(path) > STALE_STAGING_SECONDS):
            shutil.rmtree(path, ignore_errors=True)


def export_run(model_dir, export_dir, model_name=None, version=None, check=True, log=print):
    """Exports `model_dir`'s reported checkpoint to `export_dir/model_name/version/`.

    Args:
        model_dir: str, a language-model or classifier run directory.
        export_dir: str, the model base path TF Serving is given (`--model_base_path` parent).
        model_name: str or None (default: the run directory's name).
        version: int >= 1 or None (default: one more than the highest version there).
        check: run `check_export` before the version is renamed into place.
        log: a print-like function.

    Returns:
        str, the path of the new version directory.

    Raises:
        ExportError: the version exists or is not a positive int, or the name is not a plain
            folder name.
        ServabilityError: the export failed the servability check (nothing is left behind).
    """
    if not export_dir:
        raise ExportError("--export_dir must name a folder; it is empty.")
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ExportError(f"--export_dir={export_dir} is a file, not a folder.")
    model_name = model_name or os.path.basename(os.path.normpath(model_dir))
    if not re.fullmatch(r"[A-Za-z0-9._-]+", model_name) or model_name in (".", ".."):
        raise ExportError(f"--model_name={model_name!r}: expected a folder name of letters, "
                          "digits, '.', '_' or '-' (not '.' or '..').")
    model_base = os.path.join(export_dir, model_name)
    if version is None:
        version = next_version(model_base)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(f"--version must be an integer >= 1; got {version!r}.")
    final = os.path.join(model_base, str(version))
    if os.path.exists(final):
        raise ExportError(f"{final} already exists; TF Serving versions are immutable. Use "
                          f"another --version (next free: {next_version(model_base)}).")
    # Stages for the progress line: build, save, expected outputs, and the check.
    progress = Progress("export", 4 if check else 3, unit="stages")
    module, signatures, examples, info = build_signatures(model_dir)
    progress.update()
    try:
        os.makedirs(model_base, exist_ok=True)
    except OSError as error:
        raise ExportError(f"--export_dir={export_dir}: cannot create {model_base} "
                          f"({error.strerror}).") from None
    _remove_stale_staging(model_base)
    # BASE/NAME/.tmp-*/VERSION: a numeric version folder for the check, inside a folder whose
    # name TF Serving ignores; renamed to BASE/NAME/VERSION once it passed.
    staging = tempfile.mkdtemp(dir=model_base, prefix=f".tmp-{version}-")
    temporary = os.path.join(staging, str(version))
    try:
        log(f"Exporting {model_dir} ({info['task']}) to {final} ...")
        tf.saved_model.save(module, temporary, signatures=signatures)
        progress.update()
        write_json(os.path.join(temporary, "assets.extra", "example_requests.json"), examples)
        write_json(os.path.join(temporary, "assets.extra", "expected_outputs.json"),
                   _expected_outputs(module, examples, signatures))
        progress.update()
        if check:
            from keras_llm.export.servability import check_export
            check_export(temporary, model_name=model_name, manifest_extra=info, log=log)
            progress.update()
        try:
            os.replace(temporary, final)
        except OSError:
            raise ExportError(f"{final} appeared while this export ran (another export took "
                              f"version {version}); rerun to take the next one.") from None
    finally:
        progress.close()
        shutil.rmtree(staging, ignore_errors=True)
    log(f"Exported {final} (signatures: {', '.join(signatures)}).")
    return final
