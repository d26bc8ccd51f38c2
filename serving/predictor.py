"""The KServe model: raw features in, the pushed model's predictions out.

``ProdmlModel`` is a ``kserve.Model``: KServe's data plane decodes V1 REST, V2 REST and V2 gRPC
requests and calls ``preprocess`` (validate and convert to columns against the loaded
version's signature), ``predict`` (join a micro-batch) and ``postprocess`` (encode in the
caller's protocol, with the version that served it). The prodml server's hot paths skip
the data plane: ``infer_direct`` runs the same three steps on a decoded V1 body, and
``infer_columns`` takes V2 JSON and gRPC requests decoded straight to columns.

Versions are loaded and warmed up in a background thread, so the server answers liveness at
once and readiness when a version is warm; with ``poll_seconds`` newer versions replace the
current one without a restart, and requests already validated against the old version finish
on it.
"""

import gc
import os
import signal
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from prodml.components.common.errors import ConfigError
from prodml.components.common.logs import get_logger
from prodml.serving import codec, metrics
from prodml.serving.batcher import BatchResult, MicroBatcher
from prodml.serving.errors import InvalidRequest
from prodml.serving.model_source import ModelSource
from prodml.serving.model_version import ModelVersion
from prodml.serving.request_log import RequestLogger

logger = get_logger(__name__)

VERSION_HEADER = "x-model-version"
_OLD_VERSION_GRACE_SECONDS = 2.0


class _Prepared:
    """A validated request: its columns, the version they were checked against, its protocol."""

    __slots__ = ("version", "columns", "rows", "protocol", "request")

    def __init__(self, version, columns, rows, protocol, request):
        self.version = version
        self.columns = columns
        self.rows = rows
        self.protocol = protocol
        self.request = request


class ProdmlModel(Model):
    """Serves the latest (or a pinned) version of a pushed prodml model.

    Args:
        name: the model name on the endpoints (``/v1/models/<name>:predict``).
        model_dir: the registry root, the model's folder of versions, or one SavedModel.
        version: serve this version only; None serves the latest.
        poll_seconds: check for a newer version this often (0: never).
        max_batch_size: most rows in one model call.
        max_batch_wait_ms: under load, longest a forming batch waits for more requests.
        log_requests: JSON-lines file or CloudEvents URL for request/response logging, or None.
    """

    def __init__(self, name: str, model_dir: str, version: Optional[int] = None, poll_seconds: float = 0.0,
                 max_batch_size: int = 64, max_batch_wait_ms: float = 2.0, log_requests: Optional[str] = None):
        super().__init__(name, return_response_headers=True)
        self.source = ModelSource(model_dir, name)
        self.pinned_version = version
        self.poll_seconds = poll_seconds
        self.max_batch_size = max_batch_size
        self.current: Optional[ModelVersion] = None
        self.draining = False
        self.failure: Optional[str] = None
        self.request_log = RequestLogger(log_requests, name) if log_requests else None
        self._batcher = MicroBatcher(max_batch_size, max_batch_wait_ms, on_batch=self._observe_batch)
        self._stop = threading.Event()
        self._loader: Optional[threading.Thread] = None
        self._swap_lock = threading.Lock()
        self._failed_versions: Dict[int, str] = {}
        self._waiting_logged = False
        self._requests = {}
        self._latency = {p: metrics.LATENCY.labels(model_name=name, protocol=p) for p in ("v1", "v2", "grpc")}
        self._batch_rows = metrics.BATCH_SIZE.labels(model_name=name)
        self._batch_requests = metrics.BATCH_REQUESTS.labels(model_name=name)
        self._predictions = {}

    # Lifecycle -----------------------------------------------------------------------------

    def check_source(self) -> None:
        """Fails fast (ConfigError) when there is nothing to serve and nothing to wait for."""
        if self.pinned_version is not None:
            self.source.path(self.pinned_version)
        elif self.source.latest() is None and not self.poll_seconds:
            raise ConfigError(f"No version of model '{self.name}' under {self.source.where}. Push a model "
                              "first, check --model_dir and --model_name, or pass --poll to wait for one.")

    def load(self) -> bool:
        """Loads and warms up the pinned or latest version in this thread; True when ready.

        KServe's data plane calls this for a model that is not ready yet: while the background
        loader is at work it returns False at once instead of loading twice.
        """
        if self.current is not None:
            return self.ready
        if self._loader is not None and self._loader.is_alive():
            return False
        version = self.pinned_version if self.pinned_version is not None else self.source.latest()
        if version is None:
            return False
        self._activate(version)
        return self.ready

    def start(self) -> None:
        """Starts loading in the background (called by the model server at registration)."""
        if self._loader is None:
            self._loader = threading.Thread(target=self._load_and_poll, name="prodml-loader", daemon=True)
            self._loader.start()

    def stop(self) -> None:
        """Stops polling, serves the queued requests, then flushes the request log."""
        self.draining = True
        self.ready = False
        self._stop.set()
        self._batcher.stop()
        if self.request_log is not None:
            self.request_log.close()

    async def healthy(self) -> bool:
        return self.ready and self.current is not None and not self.draining

    def _load_and_poll(self) -> None:
        polling = bool(self.poll_seconds) and self.pinned_version is None
        while not self._stop.is_set():
            problem = None
            try:
                self._maybe_switch()
            except Exception as e:  # noqa: BLE001 - the loader must survive a bad version
                problem = str(e)
                logger.error("model %s: %s", self.name, e)
            if self.current is None and not polling:
                self.failure = f"model {self.name}: {problem or 'no version to serve'}"
                logger.error("model %s: nothing to serve; stopping", self.name)
                _terminate_process()
                return
            if not polling:
                return
            self._stop.wait(self.poll_seconds)

    def _maybe_switch(self) -> None:
        if self.pinned_version is not None:
            if self.current is None:
                self._activate(self.pinned_version)
            return
        latest = self.source.latest()
        if latest is None:
            if self.current is None and not self._waiting_logged:
                logger.info("model %s: waiting for a first version under %s", self.name, self.source.where)
                self._waiting_logged = True
            return
        if self.current is not None and latest == self.current.version:
            return
        if latest in self._failed_versions:
            return
        try:
            self._activate(latest)
        except Exception as e:
            self._failed_versions[latest] = str(e)
            raise

    def _activate(self, version: int) -> None:
        with self._swap_lock:
            if self.current is not None and self.current.version == version:
                return
            started = time.perf_counter()
            loaded = ModelVersion(self.source.path(version), version)
            warm = loaded.warm_up(self.max_batch_size)
            previous = self.current.version if self.current is not None else None
            # One reference swap: requests validated from now on use the new version; those
            # already queued keep a reference to the old one and finish on it.
            self.current = loaded
            self.ready = True
            logger.info("model %s: serving version %d (loaded in %.1fs, warm-up %.2fs)%s", self.name, version,
                        time.perf_counter() - started, warm,
                        f", replacing version {previous}" if previous is not None else "")
            if previous is not None:
                self._stop.wait(_OLD_VERSION_GRACE_SECONDS)  # let requests on the old version finish
            _freeze_long_lived_objects()

    # Inference -----------------------------------------------------------------------------

    async def __call__(self, body, headers=None, verb: InferenceVerb = InferenceVerb.PREDICT):
        return await self._observed(_protocol(body), super().__call__(body, headers, verb))

    async def infer_direct(self, body) -> Tuple[Any, Dict[str, str]]:
        """``preprocess``, ``predict`` and ``postprocess`` of one decoded request (REST fast path, gRPC).

        Like ``__call__`` (the prodml metrics included) minus KServe's per-stage histograms,
        whose timers cost more than a stage of a small request. Returns (response, headers).
        """
        return await self._observed(_protocol(body), self._infer(body))

    async def _infer(self, body) -> Tuple[Any, Dict[str, str]]:
        response_headers: Dict[str, str] = {}
        prepared = await self.preprocess(body)
        result = await self.predict(prepared)
        return await self.postprocess(result, None, response_headers), response_headers

    async def infer_columns(self, protocol: str,
                            decode: Callable[[Mapping[str, Any]], Tuple[Any, int]]) -> BatchResult:
        """Decodes with ``decode(features)`` against the current version, then micro-batches.

        The leanest path (V2 JSON, gRPC contents): the caller decodes straight from its wire
        format to columns and encodes the returned ``BatchResult`` (predictions and the version
        that made them) itself. Counted in the prodml metrics like every other path.
        """
        return await self._observed(protocol, self._predict_columns(decode))

    async def _predict_columns(self, decode) -> BatchResult:
        version = self._serving_version()
        columns, rows = decode(version.features)
        return await self._batcher.submit(version, columns, rows)

    def _serving_version(self) -> ModelVersion:
        version = self.current
        if version is None or self.draining:
            raise ModelNotReady(self.name, "No model version is loaded yet." if version is None
                                else "The server is shutting down.")
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
        version = self._serving_version()
        if isinstance(payload, InferRequest):
            columns, rows = codec.from_v2(payload.inputs, version.features)
            return _Prepared(version, columns, rows, "grpc" if payload.from_grpc else "v2", payload)
        if isinstance(payload, dict):
            if "instances" in payload:
                columns, rows = codec.from_instances(payload["instances"], version.features)
            elif "inputs" in payload:
                columns, rows = codec.from_columnar(payload["inputs"], version.features)
            else:
                raise InvalidRequest('The request body needs "instances" (a list of rows, each an object keyed '
                                     'by feature) or "inputs" (an object with one list per feature).')
            return _Prepared(version, columns, rows, "v1", payload)
        raise InvalidRequest("The request body must be a JSON object (Content-Type: application/json).")

    async def predict(self, payload: _Prepared, headers: Dict[str, str] = None,
                      response_headers: Dict[str, str] = None):
        result = await self._batcher.submit(payload.version, payload.columns, payload.rows)
        return payload, result

    async def postprocess(self, result, headers: Dict[str, str] = None,
                          response_headers: Dict[str, str] = None):
        prepared, served = result
        version = str(served.version.version)
        if response_headers is not None:
            response_headers[VERSION_HEADER] = version
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
        return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
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
        """The version being served, as V2 metadata lists it."""
        return [str(self.current.version)] if self.current is not None else []

    # Observers -----------------------------------------------------------------------------

    def _count(self, protocol: str, outcome: str) -> None:
        counter = self._requests.get((protocol, outcome))
        if counter is None:
            counter = self._requests[(protocol, outcome)] = metrics.REQUESTS.labels(
                model_name=self.name, protocol=protocol, outcome=outcome)
        counter.inc()

    def _observe_batch(self, version: ModelVersion, columns, predictions: np.ndarray, n_requests: int) -> None:
        rows = len(predictions)
        self._batch_rows.observe(rows)
        self._batch_requests.observe(n_requests)
        counter = self._predictions.get(version.version)
        if counter is None:
            counter = self._predictions[version.version] = metrics.PREDICTIONS.labels(
                model_name=self.name, model_version=str(version.version))
        counter.inc(rows)
        if self.request_log is not None:
            self.request_log.log_batch(version.version, columns, predictions)


def _freeze_long_lived_objects() -> None:
    """Keeps the garbage collector off the model's objects.

    TensorFlow leaves millions of long-lived Python objects; a full collection that scans them
    stalls every in-flight request for hundreds of milliseconds. Frozen objects are skipped.
    Unfreezing first lets the collection free a replaced version's reference cycles.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _protocol(body: Any) -> str:
    if isinstance(body, InferRequest):
        return "grpc" if body.from_grpc else "v2"
    return "v1"


def _terminate_process() -> None:
    """Stops the server the way an orchestrator would (the model server drains on SIGTERM)."""
    os.kill(os.getpid(), signal.SIGTERM)
