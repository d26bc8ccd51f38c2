"""The KServe model: raw features in, the pushed model's predictions out.

``ProdmlModel`` is a ``kserve.Model``: KServe's data plane decodes V1 REST, V2 REST and V2 gRPC
requests and calls ``preprocess`` (validate and convert to columns against the loaded
version's signature), ``predict`` (join a micro-batch) and ``postprocess`` (encode in the
caller's protocol, with the version that served it). The prodml server's hot paths skip
the data plane: ``infer_direct`` runs the same three steps on a decoded V1 body, and
``infer_columns`` takes V2 JSON and gRPC requests decoded straight to columns.

Which version serves is ``VersionManager``'s business (``versions.py``): it loads and warms up
versions in a background thread, so the server answers liveness at once and readiness when a
version is warm, and rolls over to newer ones with ``poll_seconds``. A request may name a
version (V2 ``/versions/<v>/infer``, gRPC ``model_version``): it is served only by that version.

Every request gets a request id (the V2 ``id``, else the ``x-request-id`` header, else a new
one: ``request_ids.py``), returned in the V2 response ``id`` and the ``x-request-id`` response
header, and logged with its rows and the ``--log_passthrough`` keys it carries.
"""

import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from prodml.components.common.logs import get_logger
from prodml.serving import codec, metrics
from prodml.serving.batcher import BatchResult, MicroBatcher, run_large
from prodml.serving.errors import InvalidRequest, VersionNotServed
from prodml.serving.model_source import ModelSource
from prodml.serving.model_version import ModelVersion
from prodml.serving.request_ids import REQUEST_ID_HEADER, Passthrough, RequestTag, new_request_id, request_id
from prodml.serving.request_log import RequestLogger
from prodml.serving.versions import VersionManager

logger = get_logger(__name__)

VERSION_HEADER = "x-model-version"


class _Prepared:
    """A validated request: its columns, the version they were checked against, its protocol, its
    id and pass-through values (``tag``)."""

    __slots__ = ("version", "columns", "rows", "protocol", "request", "tag")

    def __init__(self, version, columns, rows, protocol, request, tag):
        self.version = version
        self.columns = columns
        self.rows = rows
        self.protocol = protocol
        self.request = request
        self.tag = tag


class ProdmlModel(Model):
    """Serves the latest (or a pinned) version of a pushed prodml model.

    Args:
        name: the model name on the endpoints (``/v1/models/<name>:predict``).
        source: where the versions are (see ``model_source.py``).
        version: serve this version only; None serves the latest.
        poll_seconds: check for a newer version this often (0: never).
        max_batch_size: most rows in one model call.
        max_batch_wait_ms: under load, longest a forming batch waits for more requests.
        request_log: a ``RequestLogger`` for request/response logging, or None.
        passthrough: request fields logged with each row but not fed to the model
            (``--log_passthrough``, see ``request_ids.py``); a version with a feature of one of
            these names is not served (ConfigError).
    """

    def __init__(self, name: str, source: ModelSource, version: Optional[int] = None, poll_seconds: float = 0.0,
                 max_batch_size: int = 64, max_batch_wait_ms: float = 2.0,
                 request_log: Optional[RequestLogger] = None, passthrough: Sequence[str] = ()):
        super().__init__(name, return_response_headers=True)
        self.source = source
        self.max_batch_size = max_batch_size
        self.passthrough = Passthrough(passthrough) if passthrough else None
        self.versions_manager = VersionManager(source, name, pinned=version, poll_seconds=poll_seconds,
                                               warm_up_rows=max_batch_size, on_failure=self._failed,
                                               load=self._load_version)
        self.draining = False
        self.on_failure: Optional[Callable[[str], None]] = None
        self.request_log = request_log
        self._batcher = MicroBatcher(max_batch_size, max_batch_wait_ms, on_batch=self._observe_batch)
        self._requests = {}
        self._latency = {p: metrics.LATENCY.labels(model_name=name, protocol=p) for p in ("v1", "v2", "grpc")}
        self._batch_rows = metrics.BATCH_SIZE.labels(model_name=name)
        self._batch_requests = metrics.BATCH_REQUESTS.labels(model_name=name)
        self._predictions = {}

    # Lifecycle -----------------------------------------------------------------------------

    @property
    def current(self) -> Optional[ModelVersion]:
        """The version new requests are validated against and served by."""
        return self.versions_manager.current

    @property
    def failure(self) -> Optional[str]:
        """Why the server has nothing to serve (and stopped), or None."""
        return self.versions_manager.failure

    def check_source(self) -> None:
        """Fails fast (ConfigError) when there is nothing to serve and nothing to wait for."""
        self.versions_manager.check()

    @property
    def ready(self) -> bool:
        """Ready while a version is loaded and the server is not draining."""
        return self.versions_manager.current is not None and not self.draining

    @ready.setter
    def ready(self, value: bool) -> None:
        """Readiness follows the version manager; KServe's own assignments are ignored."""

    def load(self) -> bool:
        """Loads and warms up the pinned or latest version in this thread; True when ready.

        KServe's data plane calls this for a model that is not ready yet: while the background
        loader is at work it returns False at once instead of loading twice.
        """
        return self.versions_manager.load_now() and self.ready

    def start(self) -> None:
        """Starts loading in the background (called by the model server at registration)."""
        self.versions_manager.start()

    def stop(self) -> None:
        """Stops polling, serves the queued requests, then flushes the request log."""
        self.draining = True
        self.versions_manager.stop()
        self._batcher.stop()
        if self.request_log is not None:
            self.request_log.close()

    async def healthy(self) -> bool:
        return self.ready

    def _failed(self, reason: str) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)

    def _load_version(self, path: str, number: int) -> ModelVersion:
        loaded = ModelVersion(path, number)
        if self.passthrough is not None:
            self.passthrough.check_features(loaded.features, f"{path} (version {number})")
        return loaded

    # Inference -----------------------------------------------------------------------------

    async def __call__(self, body, headers=None, verb: InferenceVerb = InferenceVerb.PREDICT):
        return await self._observed(_protocol(body), super().__call__(body, headers, verb))

    async def infer_direct(self, body, offload: bool = False,
                           headers: Optional[Mapping[str, str]] = None) -> Tuple[Any, Dict[str, str]]:
        """``preprocess``, ``predict`` and ``postprocess`` of one decoded request (REST fast path, gRPC).

        Like ``__call__`` (the prodml metrics included) minus KServe's per-stage histograms,
        whose timers cost more than a stage of a small request. With ``offload`` (a large
        request) the validation runs in a worker thread, so the event loop keeps answering
        health probes and other requests. ``headers``: the request's (only ``x-request-id`` is
        read). Returns (response, headers).
        """
        return await self._observed(_protocol(body), self._infer(body, offload, headers))

    async def _infer(self, body, offload: bool, headers) -> Tuple[Any, Dict[str, str]]:
        response_headers: Dict[str, str] = {}
        if offload:
            prepared = await run_large(self._prepare, body, headers)
        else:
            prepared = self._prepare(body, headers)
        result = await self.predict(prepared)
        return await self.postprocess(result, None, response_headers), response_headers

    async def infer_columns(self, protocol: str, decode: Callable[[Mapping[str, Any]], Tuple[Any, int]],
                            version: Optional[str] = None, offload: bool = False, request_id: str = "",
                            passthrough: Optional[Callable[[Passthrough, int], Any]] = None) -> BatchResult:
        """Decodes with ``decode(features)`` against the served version, then micro-batches.

        The leanest path (V2 JSON, gRPC contents): the caller decodes straight from its wire
        format to columns and encodes the returned ``BatchResult`` (predictions and the version
        that made them) itself. ``version`` is the version the request names (None or "": the
        current one); ``offload`` decodes in a worker thread (large requests). ``request_id`` is
        logged with the rows (the caller has worked it out, see ``request_ids.request_id``,
        and returns it); ``passthrough(reader, rows)`` reads the request's pass-through values
        with the model's ``Passthrough`` reader, when ``--log_passthrough`` names any. Counted
        in the prodml metrics like every other path.
        """
        return await self._observed(protocol, self._predict_columns(decode, version, offload, request_id,
                                                                    passthrough))

    async def _predict_columns(self, decode, requested: Optional[str], offload: bool, request_id: str,
                               passthrough) -> BatchResult:
        version = self.serving_version(requested)
        if offload:
            columns, rows = await run_large(decode, version.features)
        else:
            columns, rows = decode(version.features)
        values = None
        if self.passthrough is not None and passthrough is not None:
            values = passthrough(self.passthrough, rows)
        return await self._batcher.submit(version, columns, rows, RequestTag(request_id or new_request_id(), values))

    def serving_version(self, requested: Optional[str] = None) -> ModelVersion:
        """The version that serves a request naming ``requested`` (None or "": the current one).

        ModelNotReady before the first version and while draining; VersionNotServed (404) when the
        request names a version that is not served, listing those that are.
        """
        version = self.versions_manager.current
        if version is None or self.draining:
            raise ModelNotReady(self.name, "No model version is loaded yet." if version is None
                                else "The server is shutting down.")
        if requested and requested != str(version.version):
            raise VersionNotServed(self.name, requested, self.versions)
        return version

    async def _observed(self, protocol: str, call):
        start = time.perf_counter()
        try:
            result = await call
        except InvalidInput:
            self._count(protocol, "invalid")
            raise
        except ModelNotReady:
            self._count(protocol, "not_ready")
            raise
        except Exception:
            self._count(protocol, "error")
            raise
        self._count(protocol, "ok")
        self._latency[protocol].observe(time.perf_counter() - start)
        return result

    async def preprocess(self, payload, headers: Dict[str, str] = None) -> _Prepared:
        return self._prepare(payload, headers)

    def _prepare(self, payload, headers: Optional[Mapping[str, str]] = None) -> _Prepared:
        """Validates a request against the version that will serve it and converts it to columns.

        Also works out the request id (``headers``: the request's, for ``x-request-id``) and
        reads the pass-through values.
        """
        passthrough = self.passthrough
        if isinstance(payload, InferRequest):
            version = self.serving_version(payload.model_version)
            columns, rows = codec.from_v2(payload.inputs, version.features)
            values = passthrough.from_infer_inputs(payload.inputs, rows) if passthrough is not None else None
            return _Prepared(version, columns, rows, "grpc" if payload.from_grpc else "v2", payload,
                             RequestTag(request_id(payload.id, headers), values))
        version = self.serving_version()
        if isinstance(payload, (bytes, bytearray, str)):
            # A JSON body sent with another Content-Type (curl -d sends a form type) is still JSON.
            payload = _json_body(payload)
        if isinstance(payload, dict):
            values = None
            if "instances" in payload:
                instances = payload["instances"]
                columns, rows = codec.from_instances(instances, version.features)
                if passthrough is not None:
                    values = passthrough.from_instances(instances)
            elif "inputs" in payload:
                columns, rows = codec.from_columnar(payload["inputs"], version.features)
                if passthrough is not None:
                    values = passthrough.from_columnar(payload["inputs"], rows)
            else:
                raise InvalidRequest('The request body needs "instances" (a list of rows, each an object keyed '
                                     'by feature) or "inputs" (an object with one list per feature).')
            return _Prepared(version, columns, rows, "v1", payload, RequestTag(request_id(None, headers), values))
        raise InvalidRequest("The request body must be a JSON object (Content-Type: application/json).")

    async def predict(self, payload: _Prepared, headers: Dict[str, str] = None,
                      response_headers: Dict[str, str] = None):
        result = await self._batcher.submit(payload.version, payload.columns, payload.rows, payload.tag)
        return payload, result

    async def postprocess(self, result, headers: Dict[str, str] = None,
                          response_headers: Dict[str, str] = None):
        prepared, served = result
        version = str(served.version.version)
        if response_headers is not None:
            response_headers[VERSION_HEADER] = version
            response_headers[REQUEST_ID_HEADER] = prepared.tag.request_id
        predictions = served.predictions
        if prepared.protocol == "v1":
            return {"predictions": predictions, "model_name": self.name, "model_version": version}
        request: InferRequest = prepared.request
        binary = request.use_binary_outputs
        output = InferOutput(name="predictions", shape=list(predictions.shape),
                             datatype=served.version.output_datatype)
        if prepared.protocol == "v2":
            output.data = predictions  # encoded by InferResponse.to_rest, JSON or binary as asked
        elif binary:  # gRPC raw_output_contents, as the request used raw_input_contents
            output.set_data_from_numpy(predictions, binary_data=True)
        else:
            output.data = predictions.tolist()
        return InferResponse(response_id=prepared.tag.request_id, model_name=self.name,
                             model_version=version, infer_outputs=[output], use_binary_outputs=binary,
                             requested_outputs=request.request_outputs if prepared.protocol == "v2" else None)

    # Metadata ------------------------------------------------------------------------------

    def get_input_types(self) -> List[Dict]:
        version = self.current
        if version is None:
            return []
        return [{"name": f.name, "datatype": f.datatype, "shape": [-1]} for f in version.features.values()]

    def get_output_types(self) -> List[Dict]:
        version = self.current
        if version is None:
            return []
        return [{"name": "predictions", "datatype": version.output_datatype, "shape": version.output_shape}]

    @property
    def versions(self) -> List[str]:
        """The versions being served, as V2 metadata lists them."""
        return self.versions_manager.served()

    # Observers -----------------------------------------------------------------------------

    def _count(self, protocol: str, outcome: str) -> None:
        counter = self._requests.get((protocol, outcome))
        if counter is None:
            counter = self._requests[(protocol, outcome)] = metrics.REQUESTS.labels(
                model_name=self.name, protocol=protocol, outcome=outcome)
        counter.inc()

    def _observe_batch(self, version: ModelVersion, columns, predictions: np.ndarray, requests) -> None:
        rows = len(predictions)
        self._batch_rows.observe(rows)
        self._batch_requests.observe(len(requests))
        counter = self._predictions.get(version.version)
        if counter is None:
            counter = self._predictions[version.version] = metrics.PREDICTIONS.labels(
                model_name=self.name, model_version=str(version.version))
        counter.inc(rows)
        if self.request_log is not None:
            self.request_log.log_batch(version.version, columns, predictions, requests)


def _protocol(body: Any) -> str:
    if isinstance(body, InferRequest):
        return "grpc" if body.from_grpc else "v2"
    return "v1"


def _json_body(body) -> Any:
    """The body decoded as JSON; an InvalidRequest says why it is not."""
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"The request body is not JSON ({e}). Send a JSON object with "
                             "Content-Type: application/json.") from e
