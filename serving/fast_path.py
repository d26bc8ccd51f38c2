"""The REST hot path: V1 predict and V2 JSON infer, answered ahead of FastAPI.

FastAPI's routing, dependency solving and middleware cost several times more CPU than a small
prediction itself. ``FastPath`` wraps the whole ASGI app: for ``POST /v1/models/<name>:predict``
and ``POST /v2/models/<name>/infer`` with a plain JSON body it reads the body, parses it with
orjson, decodes it to columns (V1 through the model's ``infer_direct``: the same preprocess,
micro-batch and postprocess as KServe's data plane; V2 straight to columns, see
``ProdmlModel.infer_columns``), then writes the orjson-encoded response itself. Everything
else goes to the wrapped app unchanged: other routes, unknown models (404 there), CloudEvents,
other content types, V2 binary data, and V2 bodies asking for specific ``outputs`` or
``parameters``. ``/v2/models/<name>/versions/<v>/infer`` is served here too, by that version
only. Errors are answered through the one error table (``errors.py``) with ``{"error": ...}``.

A large body (over ``OFFLOAD_BYTES``) is validated in a worker thread, and its model call runs
off the event loop too (``batcher.py``), so health probes keep being answered. Parsing its JSON
stays on the loop: orjson holds the GIL throughout, so a thread would not free the loop;
``--max_request_bytes`` bounds it.
"""

from functools import partial
from http import HTTPStatus
from typing import Optional, Tuple

import orjson
from kserve.errors import ModelNotReady

from prodml.serving import codec, errors, request_ids, responses
from prodml.serving.batcher import OFFLOAD_ROWS
from prodml.serving.errors import RequestTooLarge
from prodml.serving.predictor import VERSION_HEADER
from prodml.serving.request_ids import REQUEST_ID_HEADER

# Bodies larger than this are validated in a worker thread (some 1,000 taxi rows).
OFFLOAD_BYTES = 512 * 1024

_V1_PREFIX, _V1_SUFFIX = "/v1/models/", ":predict"
_V2_PREFIX, _V2_SUFFIX = "/v2/models/", "/infer"
_VERSIONS = "/versions/"
_JSON_TYPE = b"application/json"
_REQUEST_ID = REQUEST_ID_HEADER.encode()
# Request headers that call for KServe's own handling (CloudEvents, V2 binary data).
_SLOW_HEADER_PREFIXES = (b"ce-", b"inference-header-content-length")
_JSON_HEADERS = [(b"content-type", b"application/json")]
_CLOSE = [(b"connection", b"close")]  # answered before the body was read (all of it)


class FastPath:
    """ASGI app: answers V1/V2 JSON inference for fast-path models, passes the rest to ``app``.

    Args:
        app: the full ASGI app (KServe's FastAPI app with its middleware).
        registry: KServe's model registry (``get_model(name)``).
        max_bytes: larger request bodies get 413.
    """

    def __init__(self, app, registry, max_bytes: int):
        self.app = app
        self.registry = registry
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        protocol, model, version = self._route(scope["path"])
        if model is None:
            return await self.app(scope, receive, send)
        declared = header_id = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = int(value) if value.isdigit() else 0
            elif key == b"content-type":
                if value != _JSON_TYPE:
                    return await self.app(scope, receive, send)
            elif key == _REQUEST_ID:
                header_id = value.decode("latin-1")
            elif key.startswith(_SLOW_HEADER_PREFIXES):
                return await self.app(scope, receive, send)
        if declared is not None and declared > self.max_bytes:
            return await _send_error(send, RequestTooLarge(declared, self.max_bytes), _CLOSE)
        if not await model.healthy():
            return await _send_error(send, ModelNotReady(model.name), _CLOSE)
        body = await self._read(receive)
        if body is None:
            return None  # the client went away
        if len(body) > self.max_bytes:
            return await _send_error(send, RequestTooLarge(len(body), self.max_bytes), _CLOSE)
        try:
            # On the loop even when large: orjson holds the GIL throughout, so a thread would not
            # free the loop, only add a hand-over.
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            what = "Unrecognized request format" if protocol == "v1" else "Malformed JSON in the inference request"
            return await _send_error(send, errors.InvalidRequest(f"{what}: {e}"))
        if not _plain(protocol, payload):
            return await self.app(scope, _replay(body, receive), send)
        large = len(body) > OFFLOAD_BYTES
        try:
            if protocol == "v2":
                inputs = payload.get("inputs")
                request_id = request_ids.request_id(payload.get("id"), {REQUEST_ID_HEADER: header_id})
                served = await model.infer_columns("v2", partial(codec.from_v2_json, inputs), version=version,
                                                   offload=large, request_id=request_id,
                                                   passthrough=lambda reader, rows: reader.from_v2_json(inputs, rows))
                response = responses.v2_json(model.name, request_id, served)
                headers = {VERSION_HEADER: response["model_version"], REQUEST_ID_HEADER: request_id}
            else:
                response, headers = await model.infer_direct(
                    payload, offload=large, headers={REQUEST_ID_HEADER: header_id} if header_id else None)
            content = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
        except Exception as e:  # noqa: BLE001 - every error is answered by its row of the table
            return await _send_error(send, e)
        return await _send(send, HTTPStatus.OK, content,
                           [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()])

    def _route(self, path: str) -> Tuple[Optional[str], object, Optional[str]]:
        """(protocol, model, requested version) for a fast-path route, else (None, None, None)."""
        version = None
        if path.startswith(_V1_PREFIX) and path.endswith(_V1_SUFFIX):
            protocol, name = "v1", path[len(_V1_PREFIX):-len(_V1_SUFFIX)]
        elif path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX):
            protocol, name = "v2", path[len(_V2_PREFIX):-len(_V2_SUFFIX)]
            if _VERSIONS in name:
                name, _, version = name.partition(_VERSIONS)
                if not version or "/" in version:
                    return None, None, None
        else:
            return None, None, None
        if not name or "/" in name:
            return None, None, None
        model = self.registry.get_model(name)
        if model is None or not hasattr(model, "infer_columns"):
            return None, None, None
        return protocol, model, version

    async def _read(self, receive) -> Optional[bytes]:
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_bytes:
                    return b"".join(chunks)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _plain(protocol: str, payload) -> bool:
    """Whether the fast path serves this body (else KServe's data plane does)."""
    if not isinstance(payload, dict):
        return protocol == "v1"  # the model answers 400 for it
    if protocol == "v1":  # a structured CloudEvent
        return not all(k in payload for k in ("time", "type", "source", "id", "specversion", "data"))
    if "outputs" in payload or "parameters" in payload:
        return False
    inputs = payload.get("inputs")
    if isinstance(inputs, list):
        for item in inputs:
            if type(item) is dict and "parameters" in item:
                return False
    return True


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def offload_rows(shape) -> bool:
    """Whether a V2 input of ``shape`` is large enough to decode off the event loop."""
    return bool(shape) and shape[0] > OFFLOAD_ROWS


async def _send_error(send, error: Exception, headers=()) -> None:
    status, body = errors.rest_error(error)
    await _send(send, status, body, headers)


async def _send(send, status: int, content: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": int(status),
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(content)).encode()), *headers]})
    await send({"type": "http.response.body", "body": content})
