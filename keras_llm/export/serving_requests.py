"""An export's SavedModel contents and its example requests in TF Serving's wire formats.

`saved_model.pb` is read as TF Serving reads it: the MetaGraph tagged "serve", its op types and
its SignatureDefs (names, dtypes, shapes). Example requests (`assets.extra/example_requests.json`,
`{"<signature>": {"<input>": <JSON value>}}`) become gRPC `PredictRequest` protos and REST JSON
bodies, and the `PredictRequest`s become the TFRecord of warm-up requests TF Serving replays
before it serves (https://www.tensorflow.org/tfx/serving/saved_model_warmup).
"""

import json
import os
import tempfile

from keras_llm.export.serving_worker import json_to_array
from keras_llm.training.atomic_files import write_bytes

SERVE_TAG = "serve"  # The tag set TF Serving loads by default.
WARMUP_FILE = "tf_serving_warmup_requests"  # The name TF Serving looks for in assets.extra/.


def read_saved_model(version_dir):
    """Parses `version_dir/saved_model.pb`.

    Returns:
        `saved_model_pb2.SavedModel`.

    Raises:
        FileNotFoundError: there is no saved_model.pb.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(version_dir, "saved_model.pb")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is {version_dir} a SavedModel version folder?")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as file:
        saved_model.ParseFromString(file.read())
    return saved_model


def serving_meta_graph(saved_model):
    """The MetaGraphDef tagged exactly {"serve"}, or ValueError naming the tag sets found."""
    tag_sets = [sorted(meta_graph.meta_info_def.tags) for meta_graph in saved_model.meta_graphs]
    for meta_graph in saved_model.meta_graphs:
        if list(meta_graph.meta_info_def.tags) == [SERVE_TAG]:
            return meta_graph
    raise ValueError(f"TF Serving loads the MetaGraph tagged ['{SERVE_TAG}']; the SavedModel has "
                     f"tag sets {tag_sets}.")


def graph_ops(version_dir):
    """Every op type in the serving MetaGraph's graph and in its function library.

    Names of library functions (a node may call one directly) are left out: they are not ops.

    Args:
        version_dir: str, a SavedModel folder (TF Serving's BASE/NAME/VERSION).

    Returns:
        sorted list of str, e.g. `["Const", "Identity", "StatefulPartitionedCall", ...]`.
    """
    graph = serving_meta_graph(read_saved_model(version_dir)).graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return sorted(ops - {function.signature.name for function in graph.library.function})


def _tensor_spec(tensor_info):
    from tensorflow.python.framework import dtypes

    shape = tensor_info.tensor_shape
    return {"dtype": dtypes.as_dtype(tensor_info.dtype).name,
            "shape": None if shape.unknown_rank else [dim.size for dim in shape.dim]}


def signature_specs(meta_graph):
    """Each serving signature's inputs and outputs, as TF Serving sees them.

    `__saved_model_init_op` (the table initializer, not a signature) is left out.

    Returns:
        dict, signature -> {"inputs": {name: {"dtype": "string", "shape": [-1]}}, "outputs": ...};
        -1 is an unknown dimension, a `None` shape an unknown rank.
    """
    return {name: {part: {tensor: _tensor_spec(info)
                          for tensor, info in sorted(getattr(signature, part).items())}
                   for part in ("inputs", "outputs")}
            for name, signature in sorted(meta_graph.signature_def.items())
            if not name.startswith("__")}


def example_arrays(request, spec, where):
    """One example request's JSON values as numpy arrays of the signature's dtypes.

    Raises:
        ValueError: a value of the wrong type, ragged, or of a shape the signature rejects.
    """
    arrays = {}
    for name, tensor in spec["inputs"].items():
        array = json_to_array(request[name], tensor["dtype"], f"{where} input '{name}'")
        shape = tensor["shape"]
        if shape is not None and (len(shape) != array.ndim or any(
                size not in (-1, actual) for size, actual in zip(shape, array.shape))):
            raise ValueError(f"{where} input '{name}' has shape {list(array.shape)}; the "
                             f"signature expects {shape} (-1: any size).")
        arrays[name] = array
    return arrays


def predict_request(model_name, signature, arrays):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` carrying `arrays` as TensorProtos."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for name, array in arrays.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array, dtype=None))
    return request


def shares_batch_dimension(arrays):
    """Whether the row (`instances`) format can carry these inputs: every one has a 0th dimension
    and all have the same size there. TF Serving's REST API docs: in row format all named inputs
    must share the 0th dimension, so it cannot carry a scalar input (e.g. a temperature)."""
    sizes = {array.shape[0] if array.ndim else None for array in arrays.values()}
    return None not in sizes and len(sizes) == 1


def rest_bodies(signature, arrays, request):
    """The REST predict bodies for one example request, as JSON text.

    Args:
        signature: str, the signature's name.
        arrays: dict, input name -> numpy array (`example_arrays`).
        request: dict, input name -> the example's JSON value.

    Returns:
        dict, "rest_columnar" -> `{"signature_name": ..., "inputs": {...}}`, and, when the inputs
        share the batch dimension, "rest_row" -> `{"signature_name": ..., "instances": [...]}`
        (one bare value per row for a one-input signature, as clients usually send it).
    """
    bodies = {"rest_columnar": json.dumps({"signature_name": signature, "inputs": request})}
    if shares_batch_dimension(arrays):
        size = next(iter(arrays.values())).shape[0]
        rows = [{name: request[name][i] for name in request} for i in range(size)]
        if len(request) == 1:
            rows = [next(iter(row.values())) for row in rows]
        bodies["rest_row"] = json.dumps({"signature_name": signature, "instances": rows})
    return bodies


def write_warmup_requests(path, requests):
    """Writes TF Serving's warm-up file: a TFRecord of `PredictionLog`s, one per request.

    Args:
        path: str, `VERSION/assets.extra/tf_serving_warmup_requests`.
        requests: list of `PredictRequest`.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    with tempfile.TemporaryDirectory() as directory:  # TFRecordWriter writes only to files.
        temporary = os.path.join(directory, WARMUP_FILE)
        with tf.io.TFRecordWriter(temporary) as writer:
            for request in requests:
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
        with open(temporary, "rb") as file:
            write_bytes(path, file.read())
