"""Request bodies to model columns, validated feature by feature.

Every decoder returns ``(columns, rows)``: one 1-D numpy array per raw feature in the dtype the
signature takes. A ``null`` (or an absent V2 element) becomes ``NaN`` / ``""``, which the
signature treats as a missing value, exactly like a ``tf.Example`` without the feature. A
feature absent from the request altogether is an error that names it; keys the model does not
take are ignored. Conversions are vectorised: Python-level loops run only over columns, or over
values when a column holds nulls or strings or is short (where numpy's fixed cost dominates).
"""

import struct
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import orjson
from kserve.constants.constants import GRPC_CONTENT_DATATYPE_MAPPINGS, INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InferenceError
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from prodml.components.common import keys
from prodml.serving.errors import InvalidRequest
from prodml.serving.model_version import FeatureSpec

Columns = Dict[str, np.ndarray]

# V2 datatypes a client may send for each signature datatype (converted exactly or widened).
_ACCEPTED_V2 = {
    "FP64": {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"},
    "FP32": {"FP32", "FP64", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"},
    "BYTES": {"BYTES"},
}
_NUMBER_TYPES = (int, float)
_NUMBER_OR_NULL = {int, float, type(None)}
_SMALL = 32  # up to this many values, checking them one by one beats numpy's fixed cost
# The model computes in float32: a larger magnitude (or inf) would become inf and a null prediction.
_F32_MAX = float(np.finfo(np.float32).max)


def from_instances(instances: Any, features: Mapping[str, FeatureSpec]) -> Tuple[Columns, int]:
    """V1 ``{"instances": [{feature: value, ...}, ...]}``: one object per row."""
    if not isinstance(instances, list):
        raise InvalidRequest('"instances" must be a list of objects, one per row, keyed by feature name.')
    if not instances:
        raise InvalidRequest('"instances" is empty: send at least one row.')
    wanted = features.keys()
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise InvalidRequest(f"instances[{i}] is a {_json_type(row)}; each instance must be an object "
                                 f"keyed by feature name (features: {', '.join(wanted)}).")
        if not row.keys() >= wanted:
            missing = sorted(set(wanted) - row.keys())
            raise InvalidRequest(f"instances[{i}] has no feature {_names(missing)}. Send every feature; "
                                 "use null for a missing value.")
    columns = {name: _column(spec, [row[name] for row in instances], "instances")
               for name, spec in features.items()}
    return columns, len(instances)


def from_columnar(inputs: Any, features: Mapping[str, FeatureSpec]) -> Tuple[Columns, int]:
    """V1 ``{"inputs": {feature: [value, ...], ...}}``: one list per feature, same length."""
    if not isinstance(inputs, dict):
        raise InvalidRequest('"inputs" must be an object mapping each feature name to a list of values.')
    missing = [name for name in features if name not in inputs]
    if missing:
        raise InvalidRequest(f'"inputs" has no feature {_names(missing)}. Send every feature; use null '
                             "for a missing value.")
    rows = None
    columns = {}
    for name, spec in features.items():
        values = inputs[name]
        if not isinstance(values, list):
            raise InvalidRequest(f'inputs["{name}"] is a {_json_type(values)}; it must be a list with one '
                                 "value per row.")
        if rows is None:
            rows = len(values)
        elif len(values) != rows:
            raise InvalidRequest(f'inputs["{name}"] has {len(values)} values but the other features have '
                                 f"{rows}: every feature needs one value per row (null when missing).")
        columns[name] = _column(spec, values, "inputs")
    if not rows:
        raise InvalidRequest('"inputs" has no rows: send at least one value per feature.')
    return columns, rows


def from_v2(infer_inputs: List[Any], features: Mapping[str, FeatureSpec]) -> Tuple[Columns, int]:
    """KServe ``InferInput``s (V2 binary REST, raw gRPC contents): one named input per feature."""
    by_name = _require_all({inp.name: inp for inp in infer_inputs}, features)
    rows, columns = None, {}
    for name, spec in features.items():
        inp = by_name[name]
        datatype = _v2_datatype(name, spec, inp.datatype)
        shape = _v2_shape(name, inp.shape)
        try:
            array = inp.as_numpy()
        except (ValueError, TypeError, struct.error, InferenceError) as e:
            raise InvalidRequest(f"Input '{name}' cannot be read as {datatype} with shape {list(shape)}: {e}. "
                                 "Check its data (or binary_data_size and the bytes sent) against the shape.") from e
        array = array.reshape(-1)
        rows = _same_rows(name, array.shape[0], rows)
        if spec.kind == keys.BYTES:
            columns[name] = _strings(spec, array.tolist(), "input")
        elif array.dtype == np.object_:
            columns[name] = _column(spec, array.tolist(), "input")
        else:
            with np.errstate(over="ignore"):
                array = array.astype(spec.np_dtype, copy=False)
            columns[name] = _integral(spec, array, "input")
    return columns, _some_rows(rows)


def from_v2_json(inputs: Any, features: Mapping[str, FeatureSpec]) -> Tuple[Columns, int]:
    """V2 REST JSON ``"inputs"`` as parsed: one ``{name, datatype, shape, data}`` object per feature.

    ``data`` is flat (or nested one level, for shape ``[rows, 1]``); ``null`` is a missing value.
    A problem with the body's structure is named by its JSON path (``inputs[2].datatype``).
    """
    check_v2_json_inputs(inputs)
    by_name = _require_all({item["name"]: item for item in inputs}, features)
    rows, columns = None, {}
    for name, spec in features.items():
        item = by_name[name]
        datatype = _v2_datatype(name, spec, item["datatype"])
        shape = _v2_shape(name, item["shape"])
        data = item["data"]
        if data and type(data[0]) is list:
            data = [value for inner in data for value in (inner if type(inner) is list else (inner,))]
        if len(data) != shape[0]:
            raise InvalidRequest(f"Input '{name}' has {len(data)} values for shape {shape} ({datatype}): "
                                 "send one value per row.")
        rows = _same_rows(name, shape[0], rows)
        columns[name] = _column(spec, data, "input")
    return columns, _some_rows(rows)


def from_v2_grpc(tensors: Any, features: Mapping[str, FeatureSpec]) -> Tuple[Columns, int]:
    """gRPC ``ModelInferRequest.inputs`` with typed ``contents`` (not ``raw_input_contents``)."""
    by_name = _require_all({t.name: t for t in tensors}, features)
    rows, columns = None, {}
    for name, spec in features.items():
        tensor = by_name[name]
        datatype = _v2_datatype(name, spec, tensor.datatype)
        shape = _v2_shape(name, tensor.shape)
        field = GRPC_CONTENT_DATATYPE_MAPPINGS.get(datatype)
        if field is None:
            raise InvalidRequest(f"Input '{name}' is {datatype}: send it in raw_input_contents, or as FP32.")
        values = list(getattr(tensor.contents, field))
        if len(values) != shape[0]:
            raise InvalidRequest(f"Input '{name}' has {len(values)} values in contents.{field} for shape "
                                 f"{list(shape)} ({datatype}): send one value per row.")
        rows = _same_rows(name, len(values), rows)
        columns[name] = _column(spec, values, "input")
    return columns, _some_rows(rows)


def _require_all(by_name: Dict[str, Any], features: Mapping[str, FeatureSpec]) -> Dict[str, Any]:
    missing = [name for name in features if name not in by_name]
    if missing:
        raise InvalidRequest(f"The request has no input {_names(missing)}. Send one input per feature "
                             "(see the model metadata); use null, NaN or \"\" for a missing value.")
    return by_name


def _v2_datatype(name: str, spec: FeatureSpec, datatype: str) -> str:
    if datatype == spec.datatype:
        return datatype
    datatype = (datatype or "").upper()
    if datatype not in _ACCEPTED_V2[spec.datatype]:
        raise InvalidRequest(f"Input '{name}' has datatype {datatype or 'none'}; this feature takes "
                             f"{spec.datatype} ({spec.kind} feature).")
    return datatype


def _v2_shape(name: str, shape) -> list:
    """``shape`` (a list, or gRPC's repeated field) if it is ``[rows]`` or ``[rows, 1]``."""
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
        raise InvalidRequest(f"Input '{name}' has shape {list(shape)}; it must be [rows] or [rows, 1].")
    return shape


def _same_rows(name: str, count: int, rows):
    if rows is not None and count != rows:
        raise InvalidRequest(f"Input '{name}' has {count} rows but the other inputs have {rows}: "
                             "every feature needs one value per row.")
    return count


def _some_rows(rows) -> int:
    if not rows:
        raise InvalidRequest("The request has no rows: send at least one value per input.")
    return rows


def v2_rest_request(body: bytes, json_length: Optional[str], model_name: str,
                    model_version: Optional[str] = None) -> InferRequest:
    """A V2 REST body as KServe's ``InferRequest``; InvalidRequest names the faulty header or field.

    ``json_length`` is the ``inference-header-content-length`` header (None for a JSON-only
    body): the JSON part comes first, then each input's binary tensor, ``binary_data_size``
    bytes each, in the order of ``inputs``. Binary tensors are decoded when the request is
    (``from_v2``), so a size that disagrees with the shape is named there.
    """
    binary = None
    if json_length is not None:
        length = _header_length(json_length, len(body))
        body, binary = body[:length], body[length:]
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        where = f" (the first {len(body)} bytes, per {INFERENCE_CONTENT_LENGTH_HEADER})" if json_length else ""
        raise InvalidRequest(f"Malformed JSON in the inference request{where}: {e}") from e
    return v2_request(payload, model_name, binary, model_version)


def v2_request(payload: Any, model_name: str, binary: Optional[bytes] = None,
               model_version: Optional[str] = None) -> InferRequest:
    """A parsed V2 JSON body as KServe's ``InferRequest``; ``binary``: the bytes after the JSON part
    of a binary-data request (None for a JSON-only body)."""
    if not isinstance(payload, dict):
        raise InvalidRequest('A V2 inference request is a JSON object with an "inputs" list.')
    _check_parameters(payload.get("parameters"), '"parameters"')
    check_v2_json_inputs(payload.get("inputs"), binary=binary is not None)
    binary = binary or b""
    inputs, offset = [], 0
    for i, item in enumerate(payload["inputs"]):
        parameters = item.get("parameters")
        _check_parameters(parameters, f"inputs[{i}].parameters")
        infer_input = InferInput(item["name"], item["shape"], item["datatype"], item.get("data"), parameters)
        if item.get("data") is None:
            size = (parameters or {}).get("binary_data_size")
            if type(size) is not int or size < 0:
                raise InvalidRequest(f'inputs[{i}] ("{item["name"]}") has no "data" and no binary_data_size '
                                     "parameter (a whole number of bytes): send its values in \"data\", or "
                                     "binary after the JSON part with parameters.binary_data_size.")
            if offset + size > len(binary):
                raise InvalidRequest(f'inputs[{i}] ("{item["name"]}") declares binary_data_size {size}, but only '
                                     f"{len(binary) - offset} bytes of binary data are left after the inputs "
                                     f"before it: the body has {len(binary)} bytes after the JSON part "
                                     f"({INFERENCE_CONTENT_LENGTH_HEADER}). Make the sizes add up to the body.")
            infer_input._raw_data = binary[offset:offset + size]
            offset += size
        inputs.append(infer_input)
    if offset != len(binary):
        raise InvalidRequest(f"The body has {len(binary)} bytes of binary data after the JSON part, but the "
                             f"inputs' binary_data_size parameters add up to {offset}: check "
                             f"{INFERENCE_CONTENT_LENGTH_HEADER} and each input's binary_data_size.")
    outputs = payload.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in outputs):
            raise InvalidRequest('"outputs" must be a list of objects with a name.')
        for i, output in enumerate(outputs):
            _check_parameters(output.get("parameters"), f"outputs[{i}].parameters")
        requested = [RequestedOutput(o["name"], o.get("parameters")) for o in outputs]
    request_id = payload.get("id")
    return InferRequest(model_name, inputs, request_id=None if request_id is None else str(request_id),
                        parameters=payload.get("parameters"), request_outputs=requested,
                        model_version=model_version)


def _header_length(value: str, body_size: int) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > body_size:
        raise InvalidRequest(f"The {INFERENCE_CONTENT_LENGTH_HEADER} header is {value!r:.40}; it must be the "
                             f"length in bytes of the JSON part at the start of the body: a whole number from 0 "
                             f"to the body's {body_size} bytes.")
    return int(value)


def _check_parameters(parameters: Any, where: str) -> None:
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequest(f"{where} is {_json_type(parameters)} {parameters!r:.40}; it must be an object "
                             '(e.g. {"binary_data_output": true}) or left out.')


def check_v2_json_inputs(inputs: Any, binary: bool = False) -> None:
    """Checks the structure of V2 JSON ``"inputs"``; InvalidRequest names the faulty JSON path.

    With ``binary`` (a body with binary tensors after the JSON part) an input may leave out ``data``.
    """
    if not isinstance(inputs, list):
        raise InvalidRequest('A V2 inference request is a JSON object with an "inputs" list.')
    for i, item in enumerate(inputs):
        if not (type(item) is dict and type(item.get("name")) is str and type(item.get("datatype")) is str
                and type(item.get("shape")) is list and type(item.get("data")) is list):
            _check_v2_json_input(i, item, binary)
        shape = item["shape"]
        if not (len(shape) == 1 and type(shape[0]) is int) and not all(type(d) is int for d in shape):
            raise InvalidRequest(f"inputs[{i}].shape must be a list of integers.")


def _check_v2_json_input(i: int, item: Any, binary: bool) -> None:
    """Names the first problem of V2 JSON input ``i`` (orjson gives exact types; subclasses are rare)."""
    if not isinstance(item, dict):
        raise InvalidRequest(f"inputs[{i}] must be an object with name, datatype, shape and data.")
    for field, kind in (("name", str), ("datatype", str), ("shape", list), ("data", list)):
        if field == "data" and binary and item.get("data") is None:
            continue
        if not isinstance(item.get(field), kind):
            raise InvalidRequest(f"inputs[{i}].{field} is {'missing' if field not in item else 'invalid'}: "
                                 f"expected a {'string' if kind is str else 'list'}.")


def _column(spec: FeatureSpec, values: list, where: str) -> np.ndarray:
    if spec.kind == keys.BYTES:
        return _strings(spec, values, where)
    if len(values) <= _SMALL:
        whole = spec.kind == keys.INT
        for i, value in enumerate(values):
            kind = type(value)
            if kind is float:
                if not -_F32_MAX <= value <= _F32_MAX:
                    if value == value:  # NaN (a missing value) fails the comparison too
                        raise _out_of_range(spec, where, i, value)
                elif whole and not value.is_integer():
                    raise _fractional(spec, where, i, value)
            elif kind is int:
                if not -_F32_MAX <= value <= _F32_MAX:
                    raise _out_of_range(spec, where, i, value)
            elif value is not None:
                raise _wrong_type(spec, where, i, value)
        return np.array(values, dtype=spec.np_dtype)  # numpy turns None into NaN
    if set(map(type, values)) <= _NUMBER_OR_NULL:
        try:
            with np.errstate(over="ignore"):
                array = np.array(values, dtype=spec.np_dtype)
        except OverflowError:  # an integer beyond float64
            i = next(i for i, v in enumerate(values) if type(v) is int and not -_F32_MAX <= v <= _F32_MAX)
            raise _out_of_range(spec, where, i, values[i]) from None
        return _integral(spec, array, where, values)
    for i, value in enumerate(values):
        if value is not None and type(value) not in _NUMBER_TYPES:
            raise _wrong_type(spec, where, i, value)
    raise AssertionError("unreachable")


def _strings(spec: FeatureSpec, values: list, where: str) -> np.ndarray:
    array = np.empty(len(values), dtype=np.object_)
    for i, value in enumerate(values):
        if value is None:
            value = ""
        elif type(value) is not str and type(value) is not bytes:
            raise _wrong_type(spec, where, i, value)
        array[i] = value
    return array


def _integral(spec: FeatureSpec, array: np.ndarray, where: str, values: Optional[list] = None) -> np.ndarray:
    """``array`` after the vectorised checks: in float32's range and, for INT features, whole.

    ``values`` (the request's own values, when there is such a list) only serve the message.
    """
    with np.errstate(invalid="ignore"):
        # A float32 column holds inf where the value overflowed; a float64 column the value itself.
        outside = np.isinf(array) if array.dtype == np.float32 else np.abs(array) > _F32_MAX
        bad = np.flatnonzero(outside)
        if bad.size:
            i = int(bad[0])
            raise _out_of_range(spec, where, i, values[i] if values is not None else array[i].item())
        if spec.kind == keys.INT:
            fractional = np.flatnonzero((np.mod(array, 1) != 0) & ~np.isnan(array))
            if fractional.size:
                i = int(fractional[0])
                raise _fractional(spec, where, i, float(array[i]))
    return array


def _fractional(spec: FeatureSpec, where: str, row: int, value: float) -> InvalidRequest:
    return InvalidRequest(f"Feature '{spec.name}' is an INT feature but row {row} of {where} has "
                          f"{value!r}: send whole numbers (or null when missing).")


def _out_of_range(spec: FeatureSpec, where: str, row: int, value: Any) -> InvalidRequest:
    shown = repr(value)
    if len(shown) > 30:  # a huge integer
        shown = f"{shown[:12]}... ({len(shown)} digits)"
    return InvalidRequest(f"Feature '{spec.name}' has {shown} in row {row} of {where}, outside the float32 "
                          f"range the model computes in (±{_F32_MAX:.4g}): send a finite number within it, "
                          "or null when the value is missing.")


def _wrong_type(spec: FeatureSpec, where: str, row: int, value: Any) -> InvalidRequest:
    expected = "a string" if spec.kind == keys.BYTES else "a number"
    return InvalidRequest(f"Feature '{spec.name}' is a {spec.kind} feature but row {row} of {where} has "
                          f"{_json_type(value)} {value!r:.60}: send {expected} or null.")


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number", bytes: "bytes"}.get(type(value), type(value).__name__)


def _names(names: List[str]) -> str:
    quoted = ", ".join(f"'{n}'" for n in names[:10])
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return quoted + more
