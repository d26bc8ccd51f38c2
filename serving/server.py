"""KServe's ModelServer with a lean hot path and the protocol errors of the prodml predictor.

Compared with ``kserve.ModelServer`` it:

- logs nothing per request (no access log, no timing middleware, no gRPC interceptors);
- answers V1 predict and V2 JSON infer in a raw ASGI fast path ahead of FastAPI
  (``fast_path.py``), and gRPC ``ModelInfer`` by decoding straight to the model's columns;
- runs on uvloop (``--event-loop auto``, as KServe's flag documents);
- answers every error through one table (``errors.ERROR_TABLE``): the fast path, the FastAPI
  routes (one handler per row) and gRPC agree on the status of each error class;
- rejects bodies over ``max_request_bytes`` with 413 (gRPC: RESOURCE_EXHAUSTED, by the gRPC
  receive limit) and malformed V2 bodies (binary ones included) with 400 naming the field;
- parses V2 REST bodies with orjson instead of FastAPI's pydantic models;
- serves ``/v2/models/<m>/versions/<v>/...`` and gRPC ``model_version`` for the served version
  and answers 404 naming the served versions otherwise (KServe answers 501 / ignores it);
- reports readiness from the models (503 until a version is loaded and warm) and lists the
  served version in V2 model metadata;
- starts before the models are loaded (they load in the background), and on SIGTERM lets
  in-flight REST and gRPC requests finish before the models stop; when a model has nothing to
  serve (its ``on_failure``), it stops the same way and ``failure`` says why.
"""

import asyncio
import functools
import logging
import signal
from concurrent import futures
from typing import Dict, List, Optional

import orjson
from fastapi import FastAPI
from grpc import aio
from kserve import ModelServer
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import ModelNotReady
from kserve.model import BaseKServeModel
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.server import RESTServer
from kserve.utils.utils import to_headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.importer import import_from_string

from prodml.components.common.logs import get_logger
from prodml.serving import codec, errors, request_ids, responses
from prodml.serving.errors import RequestTooLarge, VersionNotServed
from prodml.serving.fast_path import OFFLOAD_BYTES, FastPath, offload_rows

logger = get_logger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
PLATFORM = "tensorflow_savedmodel"


class ProdmlDataPlane(DataPlane):
    """Readiness follows the models; model metadata names the served versions, per version too."""

    async def ready(self) -> bool:
        models = self.model_registry.get_models().values()
        return bool(models) and all([await m.healthy() for m in models])

    async def model_metadata(self, model_name: str, model_version: Optional[str] = None) -> Dict:
        model = self.get_model_from_registry(model_name)
        served = list(getattr(model, "versions", []))
        if model_version and model_version not in served:
            raise VersionNotServed(model_name, model_version, served)
        metadata = await super().model_metadata(model_name)
        metadata["versions"] = served
        metadata["platform"] = PLATFORM
        return metadata

    async def version_ready(self, model_name: str, model_version: str) -> bool:
        """Whether ``model_version`` is served and ready; VersionNotServed (404) if it is not served."""
        model = self.get_model_from_registry(model_name)
        if model_version not in list(getattr(model, "versions", [])):
            raise VersionNotServed(model_name, model_version, getattr(model, "versions", []))
        return await self.model_ready(model_name)


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
                    status, body = errors.rest_error(RequestTooLarge(size, self.max_bytes))
                    return await _send_json(send, status, body)
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


async def _send_json(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": int(status),
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class V2Routes:
    """The V2 REST routes that prodml answers itself, ahead of KServe's routes for the same paths.

    - ``POST /v2/models/{model_name}[/versions/{model_version}]/infer``: KServe's route has FastAPI
      validate the body into pydantic models, which costs more than the rest of a small request,
      and answers 500 for malformed binary bodies. Here the body (JSON, or JSON then binary
      tensors per ``inference-header-content-length``) is decoded by ``codec.v2_rest_request``,
      each problem named by its header or JSON path.
    - ``GET /v2/models/{model_name}/versions/{model_version}[/ready]``: the served version's
      metadata and readiness (KServe answers 501 for any version).
    """

    def __init__(self, dataplane: ProdmlDataPlane):
        self.dataplane = dataplane

    def routes(self) -> List[Route]:
        infer = "/v2/models/{model_name}/infer"
        versioned = "/v2/models/{model_name}/versions/{model_version}"
        return [Route(infer, self.infer, methods=["POST"]), Route(versioned + "/infer", self.infer, methods=["POST"]),
                Route(versioned, self.metadata, methods=["GET"]),
                Route(versioned + "/ready", self.ready, methods=["GET"])]

    async def infer(self, request: Request) -> Response:
        model_name = request.path_params["model_name"]
        model_version = request.path_params.get("model_version")
        if not await self.dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        body = await request.body()
        headers = dict(request.headers)
        infer_request = codec.v2_rest_request(body, headers.get(INFERENCE_CONTENT_LENGTH_HEADER), model_name,
                                              model_version)
        model = self.dataplane.model_registry.get_model(model_name)
        if hasattr(model, "infer_direct"):
            rows = offload_rows(infer_request.inputs[0].shape if infer_request.inputs else ())
            response, response_headers = await model.infer_direct(
                infer_request, offload=len(body) > OFFLOAD_BYTES or rows, headers=headers)
        else:
            response, response_headers = await self.dataplane.infer(model_name, infer_request, headers)
        response, extra = self.dataplane.encode(model_name, response, headers, {})
        response_headers.update(extra)
        response_headers.pop("content-length", None)
        if isinstance(response, bytes):
            return Response(response, headers=response_headers, media_type="application/octet-stream")
        return Response(orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), headers=response_headers,
                        media_type="application/json")

    async def metadata(self, request: Request) -> Response:
        metadata = await self.dataplane.model_metadata(request.path_params["model_name"],
                                                       request.path_params["model_version"])
        return Response(orjson.dumps(metadata), media_type="application/json")

    async def ready(self, request: Request) -> Response:
        name, version = request.path_params["model_name"], request.path_params["model_version"]
        if not await self.dataplane.version_ready(name, version):
            raise ModelNotReady(name)
        return Response(orjson.dumps({"name": name, "ready": True}), media_type="application/json")


async def _rest_error_handler(_, error: Exception) -> Response:
    status, body = errors.rest_error(error)
    return Response(body, status_code=status, media_type="application/json")


class LeanRESTServer(RESTServer):
    """KServe's REST server without per-request logging, with size limit and the one error table."""

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
        # Registered first, so they take precedence over KServe's routes for the same paths.
        app.router.routes.extend(V2Routes(self.dataplane).routes())
        super()._register_endpoints(app)

    def _add_exception_handlers(self, app: FastAPI):
        for error_class in errors.ERROR_TABLE:
            app.add_exception_handler(error_class, _rest_error_handler)


class LeanServicer(InferenceServicer):
    """KServe's gRPC servicer: versions in model metadata and ``model_version``, the one error table.

    Errors become gRPC statuses by ``errors.ERROR_TABLE``, applied to each RPC method once here
    rather than as a server interceptor, which wraps the handler anew on every call.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in _RPC_METHODS:
            setattr(self, name, _with_statuses(getattr(self, name)))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        metadata = await self._data_plane.model_metadata(request.name, request.version or None)
        return pb.ModelMetadataResponse(name=metadata["name"], versions=metadata.get("versions", []),
                                        platform=metadata["platform"], inputs=metadata["inputs"],
                                        outputs=metadata["outputs"])

    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        if request.version:
            return pb.ModelReadyResponse(ready=await self._data_plane.version_ready(request.name, request.version))
        return pb.ModelReadyResponse(ready=await self._data_plane.model_ready(model_name=request.name))

    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        """Decodes typed contents straight to a prodml model's columns; other requests as KServe does.

        ``raw_input_contents`` requests go through KServe's ``InferRequest`` (and get raw outputs).
        """
        model = self._data_plane.model_registry.get_model(request.model_name)
        if model is None or not hasattr(model, "infer_columns"):
            return await super().ModelInfer(request, context)
        offload = offload_rows(request.inputs[0].shape) if request.inputs else False
        headers = to_headers(context)  # KServe's: the call's metadata, for x-request-id
        if request.raw_input_contents:
            self.validate_grpc_request(request)
            response, _ = await model.infer_direct(InferRequest.from_grpc(request), offload=offload, headers=headers)
            return response.to_grpc()
        request_id = request_ids.request_id(request.id, headers)
        tensors = request.inputs
        served = await model.infer_columns("grpc", functools.partial(codec.from_v2_grpc, tensors),
                                           version=request.model_version, offload=offload, request_id=request_id,
                                           passthrough=lambda reader, rows: reader.from_grpc(tensors, rows))
        return responses.v2_grpc(model.name, request_id, served)


_RPC_METHODS = [name for name in vars(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer)
                if not name.startswith("_")]


def _with_statuses(method):
    @functools.wraps(method)
    async def call(request, context):
        try:
            return await method(request, context)
        except aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001 - every error becomes the status of its table row
            status = errors.status_of(e)
            errors.log_error(e, status)
            await context.abort(status.grpc, errors.message_of(e))

    return call


class LeanGRPCServer(GRPCServer):
    """KServe's gRPC server without per-call interceptors (logging, error mapping).

    ``stop`` waits until the server has started: stopping a gRPC aio server that is still
    starting crashes the process.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started = asyncio.Event()

    async def stop(self, sig: Optional[int] = None):
        await self.started.wait()
        await super().stop(sig)

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
        self.started.set()
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
        self._stopping = False

    def start(self, models: List[BaseKServeModel]) -> None:
        """Registers the models (they load in the background), serves REST and gRPC until stopped."""
        for model in models:
            self.register_model(model)
            model.enable_latency_logging = False
            if hasattr(model, "on_failure"):
                model.on_failure = self._model_failed
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
        with asyncio.Runner(loop_factory=_loop_factory(self.event_loop)) as runner:
            loop = runner.get_loop()
            asyncio.set_event_loop(loop)  # a Runner with a loop factory leaves it unset
            logger.info("event loop: %s", type(loop).__module__.split(".")[0])
            self.setup_event_loop()  # KServe's: exception handler, default executor
            self._loop = loop
            runner.run(self._serve())

    async def _serve(self):
        # Signals are handled, and the models start loading, once the loop runs: whatever stops
        # the server (a signal, a model's failure) then has a loop to stop it on. (A signal before
        # this point ends the process at once: nothing is served yet.)
        self.register_signal_handler()
        for model in self._models:
            model.start()
        await super()._serve()

    def _model_failed(self, reason: str) -> None:
        """A model has nothing to serve (called from its loader thread): stop as on SIGTERM."""
        self._loop.call_soon_threadsafe(self.stop, signal.SIGTERM)

    def stop(self, sig: Optional[int] = None):
        """Drains, then stops: not ready at once, in-flight requests finish, then the models stop.

        Once uvicorn serves, it handles SIGTERM/SIGINT itself (drains the REST connections, then
        passes the signal on to this handler); a signal during its start-up, or a model's
        failure, reaches this handler first, which then tells uvicorn to exit.
        """
        if self._stopping:
            return
        self._stopping = True
        for model in self._models:
            if hasattr(model, "draining"):
                model.draining = True
        self._rest_server._server.should_exit = True

        async def shutdown():
            if self._grpc_server:
                await self._grpc_server.stop(sig)
            for name in list(self.registered_models.get_models()):
                self.registered_models.unload(name)

        self._loop.create_task(shutdown())
