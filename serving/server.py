"""KServe's ModelServer with a lean hot path and the protocol errors of the prodml predictor.

Compared with ``kserve.ModelServer`` it:

- logs nothing per request (no access log, no timing middleware, no gRPC interceptors);
- answers V1 predict and V2 JSON infer in a raw ASGI fast path ahead of FastAPI
  (``fast_path.py``), and gRPC ``ModelInfer`` by decoding straight to the model's columns;
- runs on uvloop (``--event-loop auto``, as KServe's flag documents);
- rejects bodies over ``max_request_bytes`` with 413 (gRPC: RESOURCE_EXHAUSTED, by the gRPC
  receive limit) and malformed V2 bodies with 400 instead of FastAPI's 422;
- parses V2 REST bodies with orjson instead of FastAPI's pydantic models (same data plane);
- reports readiness from the models (503 until a version is loaded and warm) and lists the
  served version in V2 model metadata;
- starts before the models are loaded (they load in the background), and on SIGTERM lets
  in-flight REST and gRPC requests finish before the models stop.
"""

import asyncio
import functools
import logging
from concurrent import futures
from http import HTTPStatus
from typing import Dict, List, Optional

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.importer import import_from_string
from grpc import StatusCode, aio
from kserve import ModelServer
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.model import BaseKServeModel
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from kserve.protocol.rest.server import RESTServer

from prodml.components.common.logs import get_logger
from prodml.serving import codec, responses
from prodml.serving.errors import RequestTooLarge
from prodml.serving.fast_path import FastPath

logger = get_logger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
PLATFORM = "tensorflow_savedmodel"


class ProdmlDataPlane(DataPlane):
    """Readiness follows the models; model metadata names the served version."""

    async def ready(self) -> bool:
        models = self.model_registry.get_models().values()
        return bool(models) and all([await m.healthy() for m in models])

    async def model_metadata(self, model_name: str) -> Dict:
        metadata = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        metadata["versions"] = list(getattr(model, "versions", []))
        metadata["platform"] = PLATFORM
        return metadata


class RequestGuard:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (declared, or counted while read)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        for key, value in scope["headers"]:
            if key == b"content-length":
                size = int(value) if value.isdigit() else 0
                if size > self.max_bytes:
                    return await _send_json(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                            str(RequestTooLarge(size, self.max_bytes)))
                return await self.app(scope, receive, send)
        return await self.app(scope, self._limited(receive), send)

    def _limited(self, receive):
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise RequestTooLarge(seen, self.max_bytes)
            return message

        return limited_receive


async def _send_json(send, status: int, error: str) -> None:
    body = orjson.dumps({"error": error})
    await send({"type": "http.response.start", "status": int(status),
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class V2InferRoute:
    """``POST /v2/models/{model_name}/infer`` through KServe's data plane, minus FastAPI's body model.

    KServe's own route has FastAPI validate the body into pydantic models, which costs more
    than the rest of a small request; here the body is parsed with orjson and checked by hand
    (each problem named by its JSON path), then handed to the same data plane. Binary-data
    requests (``inference-header-content-length``) are decoded by KServe's ``InferRequest``.
    """

    def __init__(self, dataplane: DataPlane):
        self.dataplane = dataplane

    async def infer(self, request: Request) -> Response:
        model_name = request.path_params["model_name"]
        if not await self.dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        body = await request.body()
        headers = dict(request.headers)
        json_length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
        if json_length is not None:
            infer_request = InferRequest.from_bytes(body, int(json_length), model_name)
        else:
            infer_request = _infer_request(body, model_name)
        response, response_headers = await self.dataplane.infer(model_name, infer_request, headers)
        response, extra = self.dataplane.encode(model_name, response, headers, {})
        response_headers.update(extra)
        response_headers.pop("content-length", None)
        if isinstance(response, bytes):
            return Response(response, headers=response_headers, media_type="application/octet-stream")
        return Response(orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), headers=response_headers,
                        media_type="application/json")


def _infer_request(body: bytes, model_name: str) -> InferRequest:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"Malformed JSON in the inference request: {e}") from e
    return v2_request(payload, model_name)


def v2_request(payload, model_name: str) -> InferRequest:
    """A parsed V2 JSON body as KServe's ``InferRequest``; InvalidInput names the faulty field."""
    if not isinstance(payload, dict):
        raise InvalidInput('A V2 inference request is a JSON object with an "inputs" list.')
    codec.check_v2_json_inputs(payload.get("inputs"))
    inputs = [InferInput(item["name"], item["shape"], item["datatype"], item["data"], item.get("parameters"))
              for item in payload["inputs"]]
    outputs = payload.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in outputs):
            raise InvalidInput('"outputs" must be a list of objects with a name.')
        requested = [RequestedOutput(o["name"], o.get("parameters")) for o in outputs]
    request_id = payload.get("id")
    return InferRequest(model_name, inputs, request_id=None if request_id is None else str(request_id),
                        parameters=payload.get("parameters"), request_outputs=requested)


def _client_error_handler(status: int):
    """KServe's handlers log a traceback per bad request; a client's mistake is not worth one."""

    async def handler(_, exc):
        logger.debug("%d: %s", status, exc)
        return JSONResponse(status_code=status, content={"error": str(exc)})

    return handler


async def _request_too_large_handler(_, exc: RequestTooLarge):
    return JSONResponse(status_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE, content={"error": str(exc)})


async def _validation_error_handler(_, exc: RequestValidationError):
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST,
                        content={"error": "Malformed inference request: " + "; ".join(problems)})


class LeanRESTServer(RESTServer):
    """KServe's REST server without per-request logging, with size limit and 400 for bad bodies."""

    def __init__(self, *args, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_request_bytes = max_request_bytes
        self.config.access_log = False
        access = logging.getLogger("uvicorn.access")
        access.handlers, access.propagate = [], False

    def create_application(self):
        super().create_application()
        # The app object itself (not its import string), behind the REST fast path.
        self.config.app = FastPath(import_from_string("kserve.model_server:app"), self.dataplane.model_registry,
                                   self.max_request_bytes)

    def _add_middlewares(self, app: FastAPI):
        app.add_middleware(RequestGuard, max_bytes=self.max_request_bytes)

    def _register_endpoints(self, app: FastAPI):
        # Registered first, so it takes precedence over KServe's route for the same path.
        app.router.routes.append(Route("/v2/models/{model_name}/infer", V2InferRoute(self.dataplane).infer,
                                       methods=["POST"]))
        super()._register_endpoints(app)

    def _add_exception_handlers(self, app: FastAPI):
        super()._add_exception_handlers(app)
        app.add_exception_handler(InvalidInput, _client_error_handler(HTTPStatus.BAD_REQUEST))
        app.add_exception_handler(ModelNotFound, _client_error_handler(HTTPStatus.NOT_FOUND))
        app.add_exception_handler(ModelNotReady, _client_error_handler(HTTPStatus.SERVICE_UNAVAILABLE))
        # Readiness probes ask every few seconds while a version loads: no traceback for each.
        app.add_exception_handler(ServerNotReady, _client_error_handler(HTTPStatus.SERVICE_UNAVAILABLE))
        app.add_exception_handler(RequestValidationError, _validation_error_handler)
        app.add_exception_handler(RequestTooLarge, _request_too_large_handler)


class LeanServicer(InferenceServicer):
    """KServe's gRPC servicer, listing the served version in model metadata.

    Errors become gRPC statuses by ``QuietExceptionToStatus``, applied to each RPC method once
    here rather than as a server interceptor, which wraps the handler anew on every call.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        statuses = QuietExceptionToStatus()
        for name in _RPC_METHODS:
            setattr(self, name, _with_statuses(getattr(self, name), name, statuses))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        metadata = await self._data_plane.model_metadata(model_name=request.name)
        return pb.ModelMetadataResponse(name=metadata["name"], versions=metadata.get("versions", []),
                                        platform=metadata["platform"], inputs=metadata["inputs"],
                                        outputs=metadata["outputs"])

    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        """Decodes typed contents straight to a prodml model's columns; other requests as KServe does.

        ``raw_input_contents`` requests go through KServe's ``InferRequest`` (and get raw outputs).
        """
        model = self._data_plane.model_registry.get_model(request.model_name)
        if model is None or not hasattr(model, "infer_columns"):
            return await super().ModelInfer(request, context)
        if request.raw_input_contents:
            self.validate_grpc_request(request)
            response, _ = await model.infer_direct(InferRequest.from_grpc(request))
            return response.to_grpc()
        served = await model.infer_columns("grpc", functools.partial(codec.from_v2_grpc, request.inputs))
        return responses.v2_grpc(model.name, request.id, served)


class QuietExceptionToStatus(ExceptionToStatusInterceptor):
    """Maps client errors to gRPC statuses without a traceback per bad request.

    (KServe's interceptor also reads ``ModelNotReady.reason``, which that error does not have.)
    """

    async def handle_exception(self, ex, request_or_iterator, context, method_name):
        if isinstance(ex, InvalidInput):
            await context.abort(StatusCode.INVALID_ARGUMENT, str(ex))
        elif isinstance(ex, ModelNotFound):
            await context.abort(StatusCode.NOT_FOUND, str(ex))
        elif isinstance(ex, ModelNotReady):
            await context.abort(StatusCode.UNAVAILABLE, str(ex))
        else:
            await super().handle_exception(ex, request_or_iterator, context, method_name)


_RPC_METHODS = [name for name in vars(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer)
                if not name.startswith("_")]


def _with_statuses(method, name: str, statuses: QuietExceptionToStatus):
    @functools.wraps(method)
    async def call(request, context):
        try:
            return await method(request, context)
        except aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001 - every error becomes a status, as the interceptor did
            await statuses.handle_exception(e, request, context, name)

    return call


class LeanGRPCServer(GRPCServer):
    """KServe's gRPC server without per-call interceptors (logging, error mapping)."""

    async def start(self, max_workers):
        servicer = LeanServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            options=[("grpc.max_send_message_length", self._kwargs["grpc_max_send_message_length"]),
                     ("grpc.max_receive_message_length", self._kwargs["grpc_max_receive_message_length"])])
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"[::]:{self._port}")
        logger.info("gRPC server on port %d", self._port)
        await self._server.start()
        await self._server.wait_for_termination()


def _loop_factory(event_loop: str):
    """uvloop for ``--event-loop`` auto (when installed) or uvloop, as KServe's flag documents.

    ``kserve.ModelServer`` runs its servers in ``asyncio.run``, on the default loop, whatever
    the flag says; uvloop makes every request cheaper, gRPC's included.
    """
    if event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if event_loop == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


class ProdmlModelServer(ModelServer):
    """A ``kserve.ModelServer`` for prodml models (see the module docstring).

    Takes ``kserve.ModelServer``'s arguments plus ``max_request_bytes``.
    """

    def __init__(self, *args, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_request_bytes = max_request_bytes
        self.dataplane = ProdmlDataPlane(model_registry=self.registered_models)
        self._models: List[BaseKServeModel] = []

    def start(self, models: List[BaseKServeModel]) -> None:
        """Registers the models (they may still be loading), serves REST and gRPC until stopped."""
        for model in models:
            self.register_model(model)
            model.enable_latency_logging = False
            model.start()
        self._models = list(models)
        self._rest_server = LeanRESTServer(
            "kserve.model_server:app", self.dataplane, self.model_repository_extension, self.http_port,
            workers=1, grace_period=self.grace_period, event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive, ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile, max_request_bytes=self.max_request_bytes)
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = LeanGRPCServer(
                self.grpc_port, self.dataplane, self.model_repository_extension,
                kwargs={"grpc_max_send_message_length": max(self.max_request_bytes, 4 * 1024 * 1024),
                        "grpc_max_receive_message_length": self.max_request_bytes},
                grace_period=self.grace_period)
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.register_signal_handler()
        with asyncio.Runner(loop_factory=_loop_factory(self.event_loop)) as runner:
            loop = runner.get_loop()
            asyncio.set_event_loop(loop)  # a Runner with a loop factory leaves it unset
            logger.info("event loop: %s", type(loop).__module__.split(".")[0])
            self.setup_event_loop()  # KServe's: exception handler, default executor
            runner.run(self._serve())

    def stop(self, sig: Optional[int] = None):
        """Drains, then stops: not ready at once, in-flight requests finish, then the models stop.

        Uvicorn has already drained the REST connections when the signal reaches this handler.
        """
        for model in self._models:
            if hasattr(model, "draining"):
                model.draining = True

        async def shutdown():
            if self._grpc_server:
                await self._grpc_server.stop(sig)
            for name in list(self.registered_models.get_models()):
                self.registered_models.unload(name)

        asyncio.get_event_loop().create_task(shutdown())
