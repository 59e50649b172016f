"""The servability check on tiny tf.Module exports: a good one passes and gets its manifest and
warm-up file; an XLA op, a wrong expected output or a missing example request fails, named.

One good export is checked once per module (the fresh serving process takes a few seconds)."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from keras_llm.export import servability, serving_requests, serving_worker
from keras_llm.export.servability import ServabilityError, check_export
from tests.export.tiny_export import EXAMPLE_REQUESTS, save_export, tiny_export


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """The good export, and what check_export returned and logged."""
    version_dir = tiny_export(str(tmp_path_factory.mktemp("export")))
    lines = []
    report = check_export(version_dir, manifest_extra={"run_dir": "/runs/gpt", "step": 2000},
                          log=lines.append)
    return version_dir, report, lines


def _copy(version_dir, tmp_path):
    """The export as the exporter left it: without what check_export wrote."""
    copy = tmp_path / "tiny" / "1"
    shutil.copytree(version_dir, copy, ignore=shutil.ignore_patterns(
        "manifest.json", serving_requests.WARMUP_FILE))
    return str(copy)


def _edit_json(version_dir, name, edit):
    path = os.path.join(version_dir, "assets.extra", name)
    with open(path, encoding="utf-8") as file:
        value = json.load(file)
    edit(value)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file)


def test_a_good_export_passes_every_check(checked):
    version_dir, report, lines = checked
    assert [line.split(":")[0] for line in lines] == [
        "layout", "ops", "fresh process", "answers", "saved_model_cli", "written"]
    assert report["model_name"] == "tiny"
    assert report["tensorflow_text_ops"] == ["TFText>WhitespaceTokenizeWithOffsetsV2"]
    # The scalar signature cannot go in the REST row format.
    assert report["request_forms"] == {"scale": ["grpc", "rest_columnar"],
                                       "tokens": ["grpc", "rest_columnar", "rest_row"]}


def test_manifest_has_versions_asset_hashes_signatures_and_the_extra_fields(checked):
    version_dir, report, _ = checked
    with open(report["manifest"], encoding="utf-8") as file:
        manifest = json.load(file)
    with open(os.path.join(version_dir, "assets", "vocab.txt"), "rb") as file:
        vocabulary_sha256 = hashlib.sha256(file.read()).hexdigest()
    assert manifest["assets_sha256"] == {"vocab.txt": vocabulary_sha256}
    assert manifest["tensorflow_version"] == tf.__version__
    assert manifest["min_tf_serving_version"] == ".".join(tf.__version__.split(".")[:2])
    assert manifest["graph_def_producer"] == tf.version.GRAPH_DEF_VERSION
    assert manifest["run_dir"] == "/runs/gpt" and manifest["step"] == 2000
    assert manifest["signatures"] == {
        "scale": {"inputs": {"count": {"dtype": "int32", "shape": []},
                             "temperature": {"dtype": "float32", "shape": []}},
                  "outputs": {"scaled": {"dtype": "float32", "shape": []}}},
        "tokens": {"inputs": {"text": {"dtype": "string", "shape": [-1]}},
                   "outputs": {"joined": {"dtype": "string", "shape": [-1]},
                               "token_ids": {"dtype": "int64", "shape": [-1, 4]}}}}


def test_warmup_file_holds_one_predict_log_per_signature(checked):
    from tensorflow_serving.apis import prediction_log_pb2

    _, report, _ = checked
    assert report["warmup_requests"].endswith("assets.extra/tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(report["warmup_requests"])]
    requests = {log.predict_log.request.model_spec.signature_name: log.predict_log.request
                for log in logs}
    assert len(logs) == 2 and sorted(requests) == ["scale", "tokens"]
    assert {request.model_spec.name for request in requests.values()} == {"tiny"}
    assert tf.make_ndarray(requests["tokens"].inputs["text"]).tolist() == [b"the cat sat", b"a cat"]
    assert tf.make_ndarray(requests["scale"].inputs["count"]) == np.int32(3)
    assert requests["scale"].inputs["temperature"].dtype == tf.float32.as_datatype_enum


def test_graph_ops_read_the_function_library(checked):
    ops = serving_requests.graph_ops(checked[0])
    assert "TFText>WhitespaceTokenizeWithOffsetsV2" in ops  # Only in a library function.
    assert "LookupTableFindV2" in ops and not any(op.startswith("Xla") for op in ops)


def test_an_xla_op_fails_naming_it(tmp_path):
    import keras

    assert keras.backend.backend() == "tensorflow"

    class SliceUpdate(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def update(self, x):
            return {"y": keras.ops.slice_update(x, [0, 1], tf.ones([1, 2]))}

    module = SliceUpdate()
    version_dir = save_export(str(tmp_path / "xla" / "1"), module, {"update": module.update},
                              {"update": {"x": [[0.0, 0.0, 0.0]]}},
                              {"update": {"y": [[0.0, 1.0, 1.0]]}})
    with pytest.raises(ServabilityError, match=r"XLA ops \['XlaDynamicUpdateSlice'\], which "
                       r"stock TF Serving cannot run: it runs with XLA off"):
        check_export(version_dir, log=lambda line: None)


def test_jit_compile_adds_no_xla_op_only_an_attribute(tmp_path):
    class Compiled(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], jit_compile=True)
        def double(self, x):
            return {"y": 2.0 * x}

    module = Compiled()
    tf.saved_model.save(module, str(tmp_path), signatures={"double": module.double})
    graph = serving_requests.serving_meta_graph(
        serving_requests.read_saved_model(str(tmp_path))).graph_def
    assert not any(op.startswith("Xla") for op in serving_requests.graph_ops(str(tmp_path)))
    assert any("_XlaMustCompile" in function.attr for function in graph.library.function)


def test_a_wrong_expected_output_fails_naming_signature_and_output(checked, tmp_path):
    version_dir = _copy(checked[0], tmp_path)
    _edit_json(version_dir, "expected_outputs.json",
               lambda expected: expected["tokens"].update(joined=["the|cat|sat", "a|dog"]))
    with pytest.raises(ServabilityError, match=(
            r"signature 'tokens' \(gRPC PredictRequest\) output 'joined': expected "
            r"\[b'the\|cat\|sat', b'a\|dog'\], got \[b'the\|cat\|sat', b'a\|cat'\]")):
        check_export(version_dir, log=lambda line: None)
    assert not os.path.exists(os.path.join(version_dir, "assets.extra", "manifest.json"))


def test_a_missing_example_request_fails_before_anything_runs(checked, tmp_path):
    version_dir = _copy(checked[0], tmp_path)
    _edit_json(version_dir, "example_requests.json", lambda requests: requests.pop("scale"))
    with pytest.raises(ServabilityError, match=(
            r"example_requests.json must have one entry per signature \['scale', 'tokens'\]; "
            r"missing \['scale'\], not in the SavedModel \[\]")):
        check_export(version_dir, log=lambda line: None)


def test_a_version_folder_must_be_numeric(tmp_path):
    with pytest.raises(ServabilityError, match="numeric VERSION; .* ends in 'latest'"):
        check_export(str(tmp_path / "tiny" / "latest"))


def test_unregistered_ops_are_named():
    with pytest.raises(ServabilityError, match=r"ops \['MyCustomOp'\], which neither core "
                       r"TensorFlow nor tensorflow-text registers"):
        servability.check_ops(["Const", "MyCustomOp", "TFText>X"], ["Const"], ["TFText>X"])


def test_rest_decoding_follows_the_signature_dtypes():
    decode = serving_worker.decode_rest_request
    inputs = decode({"instances": [{"ids": [1, 2], "text": {"b64": "aGk="}},
                                   {"ids": [3, 4], "text": "yo"}]},
                    {"ids": "int32", "text": "string"})
    assert inputs["ids"].dtype == np.int32 and inputs["ids"].tolist() == [[1, 2], [3, 4]]
    assert inputs["text"].tolist() == [b"hi", b"yo"]
    with pytest.raises(ValueError, match="input 'ids': 1.5 is not a valid int32 value"):
        decode({"inputs": {"ids": [1.5]}}, {"ids": "int32"})
    with pytest.raises(ValueError, match="ragged"):
        decode({"inputs": [[1, 2], [3]]}, {"ids": "int64"})


def test_rest_responses_are_written_as_tf_serving_writes_them():
    encode = serving_worker.encode_rest_response
    outputs = {"ids": np.array([[1, 2], [3, 4]]), "text_bytes": np.array([b"hi", b"yo"],
                                                                          dtype=object)}
    assert encode(outputs, row=True) == {"predictions": [
        {"ids": [1, 2], "text_bytes": {"b64": "aGk="}},
        {"ids": [3, 4], "text_bytes": {"b64": "eW8="}}]}
    assert encode({"y": np.float32(0.5)}, row=False) == {"outputs": 0.5}
    with pytest.raises(ValueError, match="share the batch dimension"):
        encode({"y": np.float32(0.5), "z": np.zeros(2)}, row=True)
