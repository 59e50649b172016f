"""Checks that stock TF Serving can load and serve an export; writes its manifest and warm-up.

Stock TF Serving links core TensorFlow plus tensorflow-text's ops, runs with XLA off and runs no
Python, so `check_export` checks, in order, stopping at the first failure:
1. layout: `BASE/NAME/VERSION` with a numeric VERSION, the "serve" MetaGraph, one example request
   and one expected answer per signature (`assets.extra/example_requests.json`,
   `assets.extra/expected_outputs.json`, written by the exporter);
2. ops: every op type in the graph and its function library is registered by core TensorFlow or
   tensorflow-text, and none is an `Xla*` op (`keras.ops.slice_update` emits
   `XlaDynamicUpdateSlice` on the TensorFlow backend; `tf.function(jit_compile=True)` only marks
   a function with `_XlaMustCompile` and adds no op);
3. fresh process: the SavedModel loads in a process with TensorFlow and tensorflow-text's op
   libraries, where `keras` and `keras_llm` cannot be imported (`serving_worker.py`);
4. answers: every signature answers its example request, sent as a serialized gRPC
   `PredictRequest`, as a REST columnar body and (when the inputs share a batch dimension) as a
   REST row body, with the outputs in `expected_outputs.json` (floats within 1e-5);
5. `saved_model_cli show --all` lists every signature.
It then writes `assets.extra/manifest.json` and `assets.extra/tf_serving_warmup_requests`.
What it cannot check: the TF Serving binary itself (none here); the answers come from
`tf.saved_model.load` in a Python process with the same ops, on CPU.
"""

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from keras_llm.export import serving_requests, serving_worker
from keras_llm.export.serving_worker import json_to_array
from keras_llm.training.atomic_files import write_json

EXTRA_DIR = "assets.extra"  # TF Serving's folder for files beside the SavedModel.
FLOAT_ATOL = 1e-5  # The exporter's contract for float outputs.
_FORMS = {"grpc": "gRPC PredictRequest", "rest_columnar": "REST columnar",
          "rest_row": "REST row"}


class ServabilityError(ValueError):
    """An export that stock TF Serving would refuse to load, or would answer differently."""


def check_ops(ops, core_ops, text_ops):
    """Raises unless every op is registered by core TensorFlow or tensorflow-text, and none is XLA.

    Args:
        ops: op types in the graph (`serving_requests.graph_ops`).
        core_ops, text_ops: op names `import tensorflow`, then `import tensorflow_text`, register.

    Raises:
        ServabilityError: naming the `Xla*` ops and the unregistered ones.
    """
    problems = []
    xla = [op for op in ops if op.startswith("Xla")]
    if xla:
        problems.append(f"XLA ops {xla}, which stock TF Serving cannot run: it runs with XLA off "
                        f"(keras.ops.slice_update emits XlaDynamicUpdateSlice on the TensorFlow "
                        f"backend; tf.tensor_scatter_nd_update or slices and tf.concat do not)")
    unknown = sorted(set(ops) - set(core_ops) - set(text_ops))
    if unknown:
        problems.append(f"ops {unknown}, which neither core TensorFlow nor tensorflow-text "
                        f"registers; stock TF Serving links only those")
    if problems:
        raise ServabilityError("The graph holds " + "; and ".join(problems) + ".")


def _read_contract_file(version_dir, name, specs, part):
    """`assets.extra/<name>`: one entry per signature, keyed by its input (or output) names."""
    path = os.path.join(version_dir, EXTRA_DIR, name)
    if not os.path.isfile(path):
        raise ServabilityError(f"{path} not found: the exporter writes one entry per signature.")
    with open(path, encoding="utf-8") as file:
        entries = json.load(file)
    missing = sorted(set(specs) - set(entries))
    unknown = sorted(set(entries) - set(specs))
    if missing or unknown:
        raise ServabilityError(f"{path} must have one entry per signature {sorted(specs)}; "
                               f"missing {missing}, not in the SavedModel {unknown}.")
    for signature, entry in entries.items():
        if sorted(entry) != sorted(specs[signature][part]):
            raise ServabilityError(f"{path}: signature '{signature}' has {part} {sorted(entry)}; "
                                   f"the signature's {part} are {sorted(specs[signature][part])}.")
    return entries


def _saved_model_cli(version_dir):
    """Starts `saved_model_cli show --all --dir version_dir` (the venv's, else `python -m`)."""
    script = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    command = [script] if os.path.isfile(script) else [
        sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    return subprocess.Popen(command + ["show", "--all", "--dir", version_dir], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_worker_environment())


def _worker_environment():
    # CPU only, as the stock tensorflow/serving image, and off any GPU a trainer is using.
    return dict(os.environ, CUDA_VISIBLE_DEVICES="-1",
                TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))


def _serve_in_fresh_process(version_dir, specs, grpc_requests, rest_requests):
    """Runs `serving_worker.py` with `python -I` (no PYTHONPATH, no script folder on sys.path)."""
    job = {"version_dir": version_dir, "signatures": specs,
           "grpc_requests": {name: base64.b64encode(
               request.SerializeToString()).decode("ascii")
               for name, request in grpc_requests.items()},
           "rest_requests": rest_requests}
    with tempfile.TemporaryDirectory() as directory:
        job_path, result_path = (os.path.join(directory, name) for name in ("job", "result"))
        with open(job_path, "w", encoding="utf-8") as file:
            json.dump(job, file)
        process = subprocess.run(
            [sys.executable, "-I", serving_worker.__file__, job_path, result_path],
            capture_output=True, text=True, timeout=600, env=_worker_environment())
        if process.returncode != 0:
            raise ServabilityError(f"The fresh serving process failed (status "
                                   f"{process.returncode}):\n{process.stderr[-3000:]}")
        with open(result_path, encoding="utf-8") as file:
            return json.load(file)


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _compare(expected_value, actual, dtype, where):
    """Raises unless `actual` (numpy) equals the expected JSON value: floats within FLOAT_ATOL."""
    expected = json_to_array(expected_value, dtype, f"expected_outputs.json {where}")
    if actual.shape != expected.shape:
        raise ServabilityError(f"{where}: expected shape {list(expected.shape)}, got "
                               f"{list(actual.shape)} ({_short(actual.tolist())}).")
    floating = np.issubdtype(expected.dtype, np.floating)
    if floating and not np.allclose(actual, expected, rtol=0, atol=FLOAT_ATOL) or (
            not floating and not np.array_equal(actual, expected)):
        tolerance = f" (atol {FLOAT_ATOL})" if floating else ""
        raise ServabilityError(f"{where}: expected {_short(expected.tolist())}, got "
                               f"{_short(actual.tolist())}{tolerance}.")


def _response_outputs(form, response, output_names):
    """Output name -> numpy array or JSON value, from one form's answer."""
    if form == "grpc":
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        proto = predict_pb2.PredictResponse.FromString(base64.b64decode(response))
        return {name: tf.make_ndarray(proto.outputs[name]) for name in proto.outputs}
    if form == "rest_columnar":
        outputs = response["outputs"]
        return {output_names[0]: outputs} if len(output_names) == 1 else outputs
    predictions = response["predictions"]  # rest_row
    if len(output_names) == 1:
        return {output_names[0]: predictions}
    return {name: [row[name] for row in predictions] for name in output_names}


def check_answers(answers, expected_outputs, specs):
    """Raises unless every form of every signature answered with the expected outputs.

    Args:
        answers: `serving_worker.answer`'s result.
        expected_outputs: `{"<signature>": {"<output>": <JSON value>}}`.
        specs: `serving_requests.signature_specs`.

    Raises:
        ServabilityError: naming the signature, the request form and the output.
    """
    for signature, forms in answers.items():
        output_specs = specs[signature]["outputs"]
        for form, answer in forms.items():
            where = f"signature '{signature}' ({_FORMS[form]})"
            if "error" in answer:
                raise ServabilityError(f"{where} failed: {answer['error']}")
            outputs = _response_outputs(form, answer["response"], sorted(output_specs))
            if sorted(outputs) != sorted(output_specs):
                raise ServabilityError(f"{where} answered outputs {sorted(outputs)}; expected "
                                       f"{sorted(output_specs)}.")
            for name, value in outputs.items():
                dtype = output_specs[name]["dtype"]
                actual = value if form == "grpc" else json_to_array(value, dtype, where)
                _compare(expected_outputs[signature][name], actual, dtype,
                         f"{where} output '{name}'")


def build_manifest(version_dir, extra=None):
    """What a deployment needs to know about the export, as a JSON-serializable dict.

    Args:
        version_dir: str, the SavedModel version folder.
        extra: optional dict merged in, e.g. `{"run_dir": ..., "step": 2000}`.

    Returns:
        dict with the TensorFlow, Keras and tensorflow-text versions, the GraphDef producer
        version, the sha256 of every file under `assets/`, each signature's inputs and outputs
        (dtypes, shapes with -1 for unknown sizes) and `min_tf_serving_version`, the TF
        major.minor that wrote the graph.

    Raises:
        ServabilityError: an `extra` key that would overwrite one of these fields.
    """
    meta_graph = serving_requests.serving_meta_graph(serving_requests.read_saved_model(version_dir))
    written_by = meta_graph.meta_info_def.tensorflow_version  # e.g. "2.21.0"
    assets = os.path.join(version_dir, "assets")
    hashes = {}
    for folder, _, files in os.walk(assets):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as file:
                hashes[os.path.relpath(path, assets).replace(os.sep, "/")] = hashlib.sha256(
                    file.read()).hexdigest()
    manifest = {
        "tensorflow_version": importlib.metadata.version("tensorflow"),
        "keras_version": importlib.metadata.version("keras"),
        "tensorflow_text_version": importlib.metadata.version("tensorflow-text"),
        "saved_model_tensorflow_version": written_by,
        "graph_def_producer": meta_graph.graph_def.versions.producer,
        "min_tf_serving_version": ".".join(written_by.split(".")[:2]),
        "assets_sha256": dict(sorted(hashes.items())),
        "signatures": serving_requests.signature_specs(meta_graph),
    }
    clashes = sorted(set(extra or {}) & set(manifest))
    if clashes:
        raise ServabilityError(f"manifest_extra keys {clashes} would overwrite the manifest's own "
                               f"fields; use other names.")
    manifest.update(extra or {})
    return manifest


def _model_name(version_dir):
    """TF Serving's NAME in BASE/NAME/VERSION; VERSION must be a number for it to be found."""
    version = os.path.basename(version_dir)
    if not version.isdigit():
        raise ServabilityError(f"TF Serving serves BASE/NAME/VERSION with a numeric VERSION; "
                               f"{version_dir} ends in '{version}'.")
    return os.path.basename(os.path.dirname(version_dir))


def check_export(version_dir, model_name=None, manifest_extra=None, write_files=True, log=print):
    """Checks that stock TF Serving can load and serve the export, then writes its manifest and
    warm-up requests into `version_dir/assets.extra/` (see the module docstring for the checks).

    The exporter calls it with `write_files=True` on the staged version; checking a published
    version again (`experiments.check_export`) passes `write_files=False`, which only reads:
    a version TF Serving may be serving is never rewritten.

    Args:
        version_dir: str, the export's version folder, BASE/NAME/VERSION.
        model_name: str, the `model_spec.name` of the requests; default: NAME.
        manifest_extra: optional dict merged into manifest.json (e.g. run directory and step).
        write_files: write manifest.json and the warm-up records; False requires them present.
        log: `str -> None`, called with one line per check.

    Returns:
        dict: `version_dir`, `model_name`, `signatures` (name -> inputs/outputs), `ops`,
        `tensorflow_text_ops` (those of tensorflow-text the graph uses), `request_forms`
        (signature -> forms checked), `manifest` and `warmup_requests` (paths).

    Raises:
        ServabilityError: the first check that fails, naming what was wrong and what was expected.
    """
    version_dir = os.path.abspath(version_dir)
    default_name = _model_name(version_dir)
    model_name = model_name or default_name
    try:
        meta_graph = serving_requests.serving_meta_graph(
            serving_requests.read_saved_model(version_dir))
    except (FileNotFoundError, ValueError) as error:
        raise ServabilityError(str(error)) from error
    specs = serving_requests.signature_specs(meta_graph)
    if not specs:
        raise ServabilityError(f"{version_dir} has no serving signatures; TF Serving needs one.")
    examples = _read_contract_file(version_dir, "example_requests.json", specs, "inputs")
    expected = _read_contract_file(version_dir, "expected_outputs.json", specs, "outputs")
    try:
        arrays = {signature: serving_requests.example_arrays(
            examples[signature], specs[signature], f"example_requests.json '{signature}'")
            for signature in specs}
    except ValueError as error:
        raise ServabilityError(str(error)) from error
    log(f"layout: {model_name}/{os.path.basename(version_dir)}, signatures {sorted(specs)}, one "
        f"example request and expected answer each")

    grpc_requests = {name: serving_requests.predict_request(model_name, name, arrays[name])
                     for name in specs}
    rest_requests = {name: serving_requests.rest_bodies(name, arrays[name], examples[name])
                     for name in specs}
    cli = _saved_model_cli(version_dir)  # Runs beside the fresh process.
    try:
        served = _serve_in_fresh_process(version_dir, specs, grpc_requests, rest_requests)
        ops = serving_requests.graph_ops(version_dir)
        check_ops(ops, served["core_ops"], served["text_ops"])
        text_ops = sorted(set(ops) & set(served["text_ops"]))
        log(f"ops: {len(ops)} op types, all registered by core TensorFlow or tensorflow-text, "
            f"no Xla* op; tensorflow-text ops used: {', '.join(text_ops) or 'none'}")
        if served["python_modules"]:
            raise ServabilityError(f"The fresh serving process imported {served['python_modules']}"
                                   f"; it must load the export with TensorFlow alone.")
        if "load_error" in served:
            raise ServabilityError(f"tf.saved_model.load failed in a fresh process with only "
                                   f"TensorFlow and tensorflow-text's ops: {served['load_error']}")
        log("fresh process: loaded with TensorFlow and tensorflow-text's op libraries only "
            "(keras, keras_llm blocked)")
        check_answers(served["answers"], expected, specs)
        forms = {signature: sorted(answers) for signature, answers in served["answers"].items()}
        no_rows = [signature for signature, names in forms.items() if "rest_row" not in names]
        row_note = (f"REST row for all but {', '.join(no_rows)} (scalar inputs or no shared "
                    f"batch dimension)" if no_rows else "REST row for all")
        log(f"answers: every signature as expected over gRPC, REST columnar and {row_note}")
        stdout, stderr = cli.communicate(timeout=600)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    listed = re.findall(r"^signature_def\['([^']+)'\]:$", stdout, re.M)
    if cli.returncode != 0 or set(specs) - set(listed):
        raise ServabilityError(f"saved_model_cli show --all (status {cli.returncode}) lists "
                               f"signatures {sorted(listed)}; expected {sorted(specs)}. "
                               f"{stderr[-2000:]}")
    log(f"saved_model_cli: show --all lists {sorted(specs)}")

    extra_dir = os.path.join(version_dir, EXTRA_DIR)
    manifest_path = os.path.join(extra_dir, "manifest.json")
    warmup_path = os.path.join(extra_dir, serving_requests.WARMUP_FILE)
    files = f"{EXTRA_DIR}/manifest.json, {EXTRA_DIR}/{serving_requests.WARMUP_FILE}"
    if write_files:
        write_json(manifest_path, build_manifest(version_dir, manifest_extra))
        serving_requests.write_warmup_requests(warmup_path, [grpc_requests[name] for name in specs])
        log(f"written: {files} ({len(specs)} PredictionLog records)")
    else:
        missing = [path for path in (manifest_path, warmup_path) if not os.path.isfile(path)]
        if missing:
            raise ServabilityError(f"{', '.join(missing)} missing: export with experiments.export, "
                                   "which writes them.")
        log(f"present: {files}")
    return {"version_dir": version_dir, "model_name": model_name, "signatures": specs,
            "ops": ops, "tensorflow_text_ops": text_ops, "request_forms": forms,
            "manifest": manifest_path, "warmup_requests": warmup_path}
