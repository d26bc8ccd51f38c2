"""Request ids and pass-through keys: what lets a logged prediction be joined to its label later.

**Request id.** Every request gets one: the V2 request ``id`` when the body has one (not empty),
else the ``x-request-id`` header (gRPC: the ``x-request-id`` metadata), else a generated
``uuid4().hex``. It is returned to the client (V2 response ``id``; ``x-request-id`` response
header on V1 and V2 REST; gRPC response ``id``) and written into every request-log record of
the request's rows. KServe's own ``Model.__call__`` reads the same header, and a mesh such as
Istio (Envoy) adds one to requests that come without, so one id follows a request end to end; a
client that wants to join labels later sends its own (or reads the returned one).

**Pass-through keys** (``--log_passthrough trip_id,order_ref``) are request fields that are not
model features, such as an id column: extra fields of a V1 instance (``{"instances": [{...,
"trip_id": "a1"}]}``), extra lists of V1 columnar ``inputs``, or extra V2 inputs (REST JSON or
binary, gRPC typed or raw contents) with one value per row. They are never fed to the model and
never rejected; each row's values go into its request-log record's ``passthrough`` object. A
named key that a request (or a V1 instance) does not carry is logged as ``null``. Fields not
named are ignored as before. A name that is also a feature of the served model is a
configuration error (the feature is logged under ``features`` already).
"""

import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence

from prodml.components.common.errors import ConfigError
from prodml.serving.errors import InvalidRequest

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()

# Values of one request's pass-through keys: one list of row values per key (None: not sent).
PassValues = Dict[str, Optional[list]]


def new_request_id() -> str:
    """A generated request id (32 hex digits)."""
    return uuid.uuid4().hex


def request_id(body_id: Any = None, headers: Optional[Mapping[str, str]] = None) -> str:
    """The request id: the V2 body ``id`` if given, else the ``x-request-id`` header, else a new one."""
    if body_id is not None and body_id != "":
        return body_id if type(body_id) is str else str(body_id)
    if headers:
        given = headers.get(REQUEST_ID_HEADER)
        if given:
            return given
    return new_request_id()


def header_request_id(raw_headers: Sequence) -> Optional[str]:
    """The ``x-request-id`` of an ASGI scope's raw ``(name, value)`` header list, or None."""
    for key, value in raw_headers:
        if key == _REQUEST_ID_HEADER_BYTES:
            return value.decode("latin-1") or None
    return None


class RequestTag:
    """What the request log needs of one request besides its columns: its id and pass-through values."""

    __slots__ = ("request_id", "passthrough")

    def __init__(self, request_id: str, passthrough: Optional[PassValues] = None):
        self.request_id = request_id
        self.passthrough = passthrough


def parse_names(value: Optional[str], flag: str = "--log_passthrough") -> List[str]:
    """The comma-separated names of ``--log_passthrough``; ConfigError for an empty or repeated name."""
    if not value:
        return []
    names = [part.strip() for part in value.split(",")]
    empty = [i + 1 for i, name in enumerate(names) if not name]
    if empty:
        raise ConfigError(f"{flag} {value!r} has an empty name (item {empty[0]}): give field names separated by "
                          f"commas, e.g. {flag} trip_id,order_ref.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{flag} {value!r} names {', '.join(repeated)} more than once: give each field once.")
    return names


class Passthrough:
    """Reads the pass-through keys ``names`` out of request bodies (see the module docstring)."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)

    def check_features(self, features, where: str) -> None:
        """ConfigError when a pass-through name is also a model feature (of the model at ``where``)."""
        clash = [name for name in self.names if name in features]
        if clash:
            quoted = ", ".join(f"'{name}'" for name in clash)
            raise ConfigError(f"--log_passthrough names {quoted}, which {'is' if len(clash) == 1 else 'are'} also "
                              f"{'a feature' if len(clash) == 1 else 'features'} of the model at {where}. "
                              "Pass-through keys are request fields the model does not take (an id column, "
                              "say); every feature is logged under \"features\" already. Remove "
                              f"{quoted} from --log_passthrough.")

    def from_instances(self, instances: list) -> PassValues:
        """V1 rows: ``{name: [row's value or None, ...]}``."""
        return {name: [row.get(name) for row in instances] for name in self.names}

    def from_columnar(self, inputs: dict, rows: int) -> PassValues:
        """V1 columnar ``inputs``: each named key is a list with one value per row, or absent."""
        return {name: _rows_of(name, inputs.get(name), rows, f'inputs["{name}"]') for name in self.names}

    def from_v2_json(self, inputs: list, rows: int) -> PassValues:
        """V2 JSON ``inputs`` (structure already checked): each named input's ``data``."""
        found = {item["name"]: item for item in inputs if item["name"] in self.names}
        out = {}
        for name in self.names:
            item = found.get(name)
            if item is None:
                out[name] = None
                continue
            data = item["data"]
            if data and type(data[0]) is list:
                data = [value for inner in data for value in (inner if type(inner) is list else (inner,))]
            out[name] = _rows_of(name, data, rows, f"Input '{name}'")
        return out

    def from_infer_inputs(self, infer_inputs: list, rows: int) -> PassValues:
        """KServe ``InferInput``s (V2 binary REST, gRPC raw contents)."""
        found = {inp.name: inp for inp in infer_inputs if inp.name in self.names}
        out = {}
        for name in self.names:
            inp = found.get(name)
            if inp is None:
                out[name] = None
                continue
            try:
                values = inp.as_numpy().reshape(-1).tolist()
            except Exception as e:
                raise InvalidRequest(f"Pass-through input '{name}' cannot be read as {inp.datatype} with shape "
                                     f"{list(inp.shape)}: {e}.") from e
            out[name] = _rows_of(name, [_text(v) for v in values], rows, f"Input '{name}'")
        return out

    def from_grpc(self, tensors, rows: int) -> PassValues:
        """gRPC typed ``contents``: each named input's contents field of its datatype (BYTES decoded as UTF-8)."""
        from kserve.constants.constants import GRPC_CONTENT_DATATYPE_MAPPINGS

        found = {t.name: t for t in tensors if t.name in self.names}
        out = {}
        for name in self.names:
            tensor = found.get(name)
            if tensor is None:
                out[name] = None
                continue
            field = GRPC_CONTENT_DATATYPE_MAPPINGS.get(tensor.datatype.upper(), "bytes_contents")
            values = [_text(v) for v in getattr(tensor.contents, field)]
            out[name] = _rows_of(name, values, rows, f"Input '{name}'")
        return out


def _rows_of(name: str, values: Any, rows: int, where: str) -> Optional[list]:
    if values is None:
        return None
    if not isinstance(values, list):
        raise InvalidRequest(f"{where} (a --log_passthrough key) is not a list: send one value per row.")
    if len(values) != rows:
        raise InvalidRequest(f"{where} (a --log_passthrough key) has {len(values)} values but the request has "
                             f"{rows} rows: send one value per row (null when unknown), or leave it out.")
    return values


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
