"""Request bodies to model columns, validated feature by feature.

Every decoder returns ``(columns, rows)``: one 1-D numpy array per raw feature in the dtype the
signature takes. A ``null`` (or an absent V2 element) becomes ``NaN`` / ``""``, which the
signature treats as a missing value, exactly like a ``tf.Example`` without the feature. A
feature absent from the request altogether is an error that names it; keys the model does not
take are ignored. Conversions are vectorised: Python-level loops run only over columns, or over
values when a column holds nulls or strings or is short (where numpy's fixed cost dominates).
"""

from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
from kserve.constants.constants import GRPC_CONTENT_DATATYPE_MAPPINGS

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
        except (ValueError, TypeError) as e:
            raise InvalidRequest(f"Input '{name}' cannot be read as {datatype} with shape {shape}: {e}") from e
        array = array.reshape(-1)
        rows = _same_rows(name, array.shape[0], rows)
        if spec.kind == keys.BYTES:
            columns[name] = _strings(spec, array.tolist(), "input")
        elif array.dtype == np.object_:
            columns[name] = _column(spec, array.tolist(), "input")
        else:
            columns[name] = _integral(spec, array.astype(spec.np_dtype, copy=False), "input")
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


def check_v2_json_inputs(inputs: Any) -> None:
    """Checks the structure of V2 JSON ``"inputs"``; InvalidRequest names the faulty JSON path."""
    if not isinstance(inputs, list):
        raise InvalidRequest('A V2 inference request is a JSON object with an "inputs" list.')
    for i, item in enumerate(inputs):
        if not (type(item) is dict and type(item.get("name")) is str and type(item.get("datatype")) is str
                and type(item.get("shape")) is list and type(item.get("data")) is list):
            _check_v2_json_input(i, item)
        shape = item["shape"]
        if not (len(shape) == 1 and type(shape[0]) is int) and not all(type(d) is int for d in shape):
            raise InvalidRequest(f"inputs[{i}].shape must be a list of integers.")


def _check_v2_json_input(i: int, item: Any) -> None:
    """Names the first problem of V2 JSON input ``i`` (orjson gives exact types; subclasses are rare)."""
    if not isinstance(item, dict):
        raise InvalidRequest(f"inputs[{i}] must be an object with name, datatype, shape and data.")
    for field, kind in (("name", str), ("datatype", str), ("shape", list), ("data", list)):
        if not isinstance(item.get(field), kind):
            raise InvalidRequest(f"inputs[{i}].{field} is {'missing' if field not in item else 'invalid'}: "
                                 f"expected a {'string' if kind is str else 'list'}.")


def _column(spec: FeatureSpec, values: list, where: str) -> np.ndarray:
    if spec.kind == keys.BYTES:
        return _strings(spec, values, where)
    if len(values) <= _SMALL:
        for i, value in enumerate(values):
            kind = type(value)
            if kind is not float and kind is not int and value is not None:
                raise _wrong_type(spec, where, i, value)
            if kind is float and spec.kind == keys.INT and value == value and not value.is_integer():
                _whole_numbers(spec, values, where)
        return np.array(values, dtype=spec.np_dtype)  # numpy turns None into NaN
    if set(map(type, values)) <= _NUMBER_OR_NULL:
        return _integral(spec, np.array(values, dtype=spec.np_dtype), where)
    for i, value in enumerate(values):
        if value is not None and type(value) not in _NUMBER_TYPES:
            raise _wrong_type(spec, where, i, value)
    raise AssertionError("unreachable")


def _whole_numbers(spec: FeatureSpec, values: list, where: str) -> None:
    """``_integral`` for a few values: a Python loop is cheaper than numpy's fixed cost."""
    for i, value in enumerate(values):
        if type(value) is float and value == value and not value.is_integer():
            raise InvalidRequest(f"Feature '{spec.name}' is an INT feature but row {i} of {where} has "
                                 f"{value!r}: send whole numbers (or null when missing).")


def _strings(spec: FeatureSpec, values: list, where: str) -> np.ndarray:
    array = np.empty(len(values), dtype=np.object_)
    for i, value in enumerate(values):
        if value is None:
            value = ""
        elif type(value) is not str and type(value) is not bytes:
            raise _wrong_type(spec, where, i, value)
        array[i] = value
    return array


def _integral(spec: FeatureSpec, array: np.ndarray, where: str) -> np.ndarray:
    if spec.kind == keys.INT and array.size <= _SMALL:
        _whole_numbers(spec, array.tolist(), where)
    elif spec.kind == keys.INT:
        with np.errstate(invalid="ignore"):
            fractional = np.flatnonzero((np.mod(array, 1) != 0) & ~np.isnan(array))
        if fractional.size:
            i = int(fractional[0])
            raise InvalidRequest(f"Feature '{spec.name}' is an INT feature but row {i} of {where} has "
                                 f"{float(array[i])!r}: send whole numbers (or null when missing).")
    return array


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
