"""Answers an export's requests the way stock TF Serving would, in a fresh process.

Run as a script by `servability.check_export` (`python -I serving_worker.py JOB RESULT`): it
blocks `keras` and `keras_llm` before importing TensorFlow (TensorFlow 2.21 imports Keras eagerly
when it can, and skips it when the import fails), then loads tensorflow-text's op libraries
(`tensorflow_text/python/**/_*.so`, the files `import tensorflow_text` loads) without its Python
package, which needs `tf.keras`. What the SavedModel needs is thus what TF Serving links: core
TensorFlow's ops and tensorflow-text's, and no Keras.

It records the op names core TensorFlow registers, then those tensorflow-text adds, loads the
SavedModel, and answers each signature's example request in three forms:
- gRPC: a serialized `PredictRequest`, parsed back, its TensorProtos turned into tensors with
  `tf.make_ndarray`; the answer is a serialized `PredictResponse`.
- REST columnar: `{"signature_name": ..., "inputs": {...}}`, decoded with the signature's dtypes;
  the answer is `{"outputs": ...}` as TF Serving writes it.
- REST row: `{"signature_name": ..., "instances": [...]}`, answered with `{"predictions": [...]}`.
The checking (what the answers should be) is `servability.py`'s; this file only answers.
This module imports nothing from keras_llm, so its functions can also be tested in-process.
"""

import base64
import glob
import importlib.util
import json
import os
import sys

import numpy as np


def registered_op_names():
    """The names of every op registered in this process (core TF and any loaded op library)."""
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session

    op_list = op_def_pb2.OpList()
    op_list.ParseFromString(pywrap_tf_session.TF_GetBuffer(pywrap_tf_session.TF_GetAllOpList()))
    return sorted(op.name for op in op_list.op)


def load_tensorflow_text_ops():
    """Loads tensorflow-text's op libraries, as `import tensorflow_text` does, without its Python.

    Returns:
        list of str, the library files loaded.

    Raises:
        ModuleNotFoundError: tensorflow-text is not installed.
    """
    import tensorflow as tf

    spec = importlib.util.find_spec("tensorflow_text")  # Finds the package without running it.
    if spec is None:
        raise ModuleNotFoundError("tensorflow-text is not installed; TF Serving links its ops.")
    root = spec.submodule_search_locations[0]
    libraries = sorted(glob.glob(os.path.join(root, "python", "**", "_*.so"), recursive=True))
    for library in libraries:
        tf.load_op_library(library)
    return libraries


def json_to_array(value, dtype, where):
    """A JSON value (scalar or nested lists) as a numpy array of `dtype`, as TF Serving decodes it.

    Strings are UTF-8 encoded, `{"b64": ...}` is base64-decoded (TF Serving's binary form);
    integer dtypes take only integral numbers and bool only true/false, as TF Serving's
    json_tensor.cc does; float dtypes take any number.

    Args:
        value: the JSON value, e.g. `["a b", "c"]`, `[[1, 2], [3, 4]]` or `0.7`.
        dtype: a TF dtype or its name, e.g. "string", "int32".
        where: str, what the value is, for errors (e.g. "signature 'generate' input 'prompt'").

    Returns:
        numpy array of the dtype's numpy type (`object` holding bytes for strings).

    Raises:
        ValueError: an element of the wrong type, or ragged nested lists.
    """
    import tensorflow as tf

    dtype = tf.as_dtype(dtype)

    def element(item):
        if isinstance(item, list):
            return [element(part) for part in item]
        if dtype == tf.string:
            if isinstance(item, dict) and set(item) == {"b64"}:
                return base64.b64decode(item["b64"])
            if isinstance(item, str):
                return item.encode("utf-8")
        elif dtype == tf.bool:
            if isinstance(item, bool):
                return item
        elif dtype.is_integer:
            if isinstance(item, int) and not isinstance(item, bool):
                return item
        elif dtype.is_floating:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                return item
        raise ValueError(f"{where}: {item!r} is not a valid {dtype.name} value.")

    converted = element(value)
    shape = _rectangular_shape(converted, where)
    array = np.empty(shape, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    array[...] = np.array(converted, dtype=object) if shape else converted
    return array


def _rectangular_shape(value, where):
    """The shape of nested lists, or ValueError if they are ragged."""
    if not isinstance(value, list):
        return ()
    shapes = {_rectangular_shape(item, where) for item in value}
    if len(shapes) > 1:
        raise ValueError(f"{where}: the nested lists are ragged; a tensor must be rectangular.")
    return (len(value),) + (shapes.pop() if shapes else ())


def _array_to_json(array, name):
    """A numpy array as TF Serving's REST API writes it: nested lists; a `_bytes` output's
    strings as `{"b64": ...}`, other strings as text."""
    if array.dtype == object:  # tf.string
        if name.endswith("_bytes"):
            convert = lambda item: {"b64": base64.b64encode(item).decode("ascii")}
        else:
            def convert(item):
                try:
                    return item.decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError(
                        f"output '{name}' holds {item!r}, not UTF-8, which a REST answer cannot "
                        f"carry as text; TF Serving base64-encodes outputs named *_bytes.")
        flat = [convert(item) for item in array.ravel()]
        converted = np.empty(len(flat), dtype=object)
        converted[:] = flat  # Element-wise: np.array would read a {"b64": ...} dict as a scalar.
        return converted.reshape(array.shape).tolist()
    return array.tolist()


def decode_rest_request(body, input_dtypes):
    """A REST predict body as input tensors, the way TF Serving's json_tensor.cc reads it.

    Args:
        body: dict, `{"inputs": ...}` (columnar) or `{"instances": [...]}` (row); `inputs` and each
            instance are an object keyed by input name, or a bare value when there is one input.
        input_dtypes: dict, input name -> TF dtype name ("string", "int32", ...), from the
            signature.

    Returns:
        dict, input name -> numpy array.

    Raises:
        ValueError: a missing or unknown input, a value of the wrong type, ragged lists, or
            instances of different input names.
    """

    names = sorted(input_dtypes)
    if "inputs" in body:
        inputs = body["inputs"]
        if not (isinstance(inputs, dict) and set(inputs) == set(names)):
            if len(names) != 1:
                raise ValueError(f"'inputs' must be an object with keys {names}; got {inputs!r}.")
            inputs = {names[0]: inputs}
        return {name: json_to_array(inputs[name], input_dtypes[name], f"input '{name}'")
                for name in names}
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise ValueError(f"'instances' must be a non-empty list; got {instances!r}.")
    rows = []
    for instance in instances:
        if not (isinstance(instance, dict) and set(instance) == set(names)):
            if len(names) != 1:
                raise ValueError(
                    f"each instance must be an object with keys {names}; got {instance!r}.")
            instance = {names[0]: instance}
        rows.append(instance)
    return {name: np.stack([json_to_array(row[name], input_dtypes[name], f"input '{name}'")
                            for row in rows]) for name in names}


def encode_rest_response(outputs, row):
    """Output arrays as TF Serving's REST response: `{"outputs": ...}` or `{"predictions": [...]}`.

    As TF Serving does, one output is written bare (without its name); in row form every output
    must share the batch (0th) dimension.

    Raises:
        ValueError: row form and outputs that are scalars or differ in batch size.
    """
    names = sorted(outputs)
    if not row:
        if len(names) == 1:
            return {"outputs": _array_to_json(outputs[names[0]], names[0])}
        return {"outputs": {name: _array_to_json(outputs[name], name) for name in names}}
    sizes = {name: (outputs[name].shape[0] if outputs[name].ndim else None) for name in names}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"row format needs every output to share the batch dimension; "
                         f"got 0th dimensions {sizes}.")
    columns = {name: _array_to_json(outputs[name], name) for name in names}
    size = sizes[names[0]]
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [{name: columns[name][i] for name in names} for i in range(size)]}


def _call(function, inputs):
    import tensorflow as tf

    return {name: tensor.numpy() for name, tensor in
            function(**{name: tf.constant(value) for name, value in inputs.items()}).items()}


def answer(loaded, job):
    """Answers every request of `job` with `loaded`'s signatures; errors are recorded, not raised.

    Returns:
        dict, signature -> form ("grpc", "rest_columnar", "rest_row") -> `{"response": ...}` or
        `{"error": "..."}`; a gRPC response is a base64-encoded serialized `PredictResponse`.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    answers = {}
    for signature, spec in job["signatures"].items():
        function = loaded.signatures[signature]
        dtypes = {name: tensor["dtype"] for name, tensor in spec["inputs"].items()}
        forms = answers[signature] = {}
        try:
            request = predict_pb2.PredictRequest.FromString(
                base64.b64decode(job["grpc_requests"][signature]))
            outputs = _call(function, {name: tf.make_ndarray(proto)
                                       for name, proto in request.inputs.items()})
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            forms["grpc"] = {"response": base64.b64encode(
                response.SerializeToString()).decode("ascii")}
        except Exception as error:  # Reported by the parent, with the signature's name.
            forms["grpc"] = {"error": f"{type(error).__name__}: {error}"}
        for form, text in job["rest_requests"][signature].items():
            try:
                outputs = _call(function, decode_rest_request(json.loads(text), dtypes))
                forms[form] = {"response": encode_rest_response(outputs, form == "rest_row")}
            except Exception as error:
                forms[form] = {"error": f"{type(error).__name__}: {error}"}
    return answers


def main(job_path, result_path):
    sys.modules["keras"] = None  # An `import keras` now raises ImportError; TF skips it.
    sys.modules["keras_llm"] = None
    import tensorflow as tf

    result = {"core_ops": registered_op_names()}
    load_tensorflow_text_ops()
    result["text_ops"] = sorted(set(registered_op_names()) - set(result["core_ops"]))
    with open(job_path, encoding="utf-8") as file:
        job = json.load(file)
    try:
        loaded = tf.saved_model.load(job["version_dir"], tags=["serve"])
        result["loaded_signatures"] = sorted(loaded.signatures)
        result["answers"] = answer(loaded, job)
    except Exception as error:
        result["load_error"] = f"{type(error).__name__}: {error}"
    result["python_modules"] = sorted(name for name, module in sys.modules.items()
                                      if module is not None and
                                      name.split(".")[0] in ("keras", "keras_llm"))
    with open(result_path, "w", encoding="utf-8") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
