"""Batched request/response logging off the hot path.

The batcher hands each served micro-batch (columns, predictions, version) to ``log_batch``,
which only appends to a bounded queue. A background thread turns batches into records and
writes them:

- to a file (``--log_requests path``): JSON lines, one per row:
  ``{"timestamp", "model_name", "model_version", "features": {raw feature: value or null},
  "prediction": number or [numbers]}``;
- to a CloudEvents sink (``--log_requests http://...``), in the format of KServe's inference
  logger: one ``org.kubeflow.serving.inference.request`` event (``{"instances": [...]}``) and
  one ``org.kubeflow.serving.inference.response`` event (``{"predictions": [...],
  "model_version": ...}``) sharing ``ce-id``, in binary content mode, per micro-batch or, when
  the sink is slower than the server, per group of batches (up to 1,000 rows).

When the sink falls behind, whole batches are dropped and counted
(``prodml_request_log_dropped_total``); the server never waits for the log.

The file holds request data, so it is created readable and writable by its owner only (mode
0600, also applied to an existing file). It rotates by size: before a batch would take it past
``max_bytes``, ``path`` becomes ``path.1`` (``path.1`` becomes ``path.2``, ... up to
``backup_count`` files; the oldest is deleted). A single batch larger than ``max_bytes`` is
written whole.
"""

import collections
import datetime
import os
import socket
import threading
import uuid
from typing import Dict, List, Optional

import numpy as np
import orjson

from prodml.components.common.errors import ConfigError
from prodml.components.common.logs import get_logger
from prodml.serving import metrics

logger = get_logger(__name__)

REQUEST_EVENT = "org.kubeflow.serving.inference.request"
RESPONSE_EVENT = "org.kubeflow.serving.inference.response"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY  # NaN is written as null
_MAX_EVENT_ROWS = 1000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUP_COUNT = 5
FILE_MODE = 0o600


class RotatingFile:
    """An append-only binary file, mode 0600, rotated by size into ``path.1`` ... ``path.<backup_count>``.

    ``max_bytes`` 0 never rotates; ``backup_count`` 0 starts the file over instead of keeping it.
    """

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES, backup_count: int = DEFAULT_BACKUP_COUNT):
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._open()

    def write(self, data: bytes) -> None:
        """Appends ``data`` (whole lines), rotating first if it would take the file past ``max_bytes``."""
        if self.max_bytes and self.size and self.size + len(data) > self.max_bytes:
            self._rotate()
        self._file.write(data)
        self.size += len(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # an existing file (or a loose umask) keeps no wider mode
        self._file = os.fdopen(fd, "ab", buffering=1 << 16)
        self.size = os.fstat(fd).st_size

    def _rotate(self) -> None:
        self._file.close()
        if self.backup_count > 0:
            for i in range(self.backup_count - 1, 0, -1):
                older = f"{self.path}.{i}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        else:
            os.remove(self.path)
        self._open()


class RequestLogger:
    """Writes served batches to a JSON-lines file or a CloudEvents HTTP sink, in the background."""

    def __init__(self, target: str, model_name: str, flush_seconds: float = 0.2,
                 max_queued_batches: int = 10000, max_bytes: int = DEFAULT_MAX_BYTES,
                 backup_count: int = DEFAULT_BACKUP_COUNT):
        self.target = target
        self.model_name = model_name
        self.is_http = target.startswith(("http://", "https://"))
        self._flush_seconds = flush_seconds
        self._queue: collections.deque = collections.deque()
        self._max_queued = max_queued_batches
        self._dropped = metrics.LOG_DROPPED.labels(model_name=model_name)
        self._wake = threading.Event()
        self._stopping = False
        self._file = None
        self._client = None
        if self.is_http:
            import httpx

            self._client = httpx.Client(timeout=10.0)
            self._source = f"http://{socket.gethostname()}/{model_name}"
        else:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
                self._file = RotatingFile(target, max_bytes, backup_count)
            except OSError as e:
                raise ConfigError(f"Cannot open the request log {target}: {e.strerror or e}. "
                                  "Give --log_requests a writable file path or an http(s) URL.") from e
        self._thread = threading.Thread(target=self._run, name="prodml-request-log", daemon=True)
        self._thread.start()

    def log_batch(self, version: int, columns: Dict[str, np.ndarray], predictions: np.ndarray) -> None:
        """Queues one served batch; O(1), never blocks."""
        if len(self._queue) >= self._max_queued:
            self._dropped.inc()
            return
        self._queue.append((datetime.datetime.now(datetime.UTC), version, columns, predictions))

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued and stops."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._file is not None:
            self._file.close()
        if self._client is not None:
            self._client.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            stopping = self._stopping
            self._drain()
            if stopping:
                return

    def _drain(self) -> None:
        batches = []
        while self._queue:
            batches.append(self._queue.popleft())
        if not batches:
            return
        try:
            if self.is_http:
                for batch in _coalesce(batches, _MAX_EVENT_ROWS):
                    self._post(*batch)
            else:
                for batch in batches:
                    self._file.write(self._lines(*batch))
                self._file.flush()
        except Exception as e:  # noqa: BLE001 - a broken sink must not take the server down
            self._dropped.inc(len(batches))
            logger.warning("request log to %s failed (%s); %d batches dropped", self.target, e, len(batches))

    def _lines(self, when, version, columns, predictions) -> bytes:
        stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        head = orjson.dumps({"timestamp": stamp, "model_name": self.model_name, "model_version": version})[:-1]
        preds = list(predictions)  # numpy scalars (or rows), written in their own precision
        out = []
        for features, pred in zip(_rows(columns), preds):
            out.append(head + b',"features":' + orjson.dumps(features, option=_NUMPY) + b',"prediction":'
                       + orjson.dumps(pred, option=_NUMPY) + b"}\n")
        return b"".join(out)

    def _post(self, when, version, columns, predictions) -> None:
        event_id = str(uuid.uuid4())
        stamp = when.isoformat().replace("+00:00", "Z")
        common = {
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": self._source,
            "ce-time": stamp,
            "ce-inferenceservicename": os.environ.get("K_SERVICE", self.model_name),
            "ce-namespace": os.environ.get("POD_NAMESPACE", ""),
            "ce-component": "predictor",
            "ce-endpoint": self.model_name,
            "ce-modelid": f"{self.model_name}/{version}",
            "content-type": "application/json",
        }
        request = orjson.dumps({"instances": _rows(columns)}, option=_NUMPY)
        response = orjson.dumps({"predictions": predictions, "model_name": self.model_name,
                                 "model_version": str(version)}, option=_NUMPY)
        for event_type, body in ((REQUEST_EVENT, request), (RESPONSE_EVENT, response)):
            reply = self._client.post(self.target, content=body, headers={**common, "ce-type": event_type})
            reply.raise_for_status()


def _coalesce(batches: list, max_rows: int) -> list:
    """Joins consecutive batches of one version (up to ``max_rows``), so that a busy server
    sends few large events instead of many small ones."""
    out = []
    for when, version, columns, predictions in batches:
        if out and out[-1][1] == version and len(out[-1][3]) + len(predictions) <= max_rows:
            _, _, joined, joined_predictions = out[-1]
            out[-1] = (when, version, {name: np.concatenate([joined[name], columns[name]]) for name in joined},
                       np.concatenate([joined_predictions, predictions]))
        else:
            out.append((when, version, columns, predictions))
    return out


def _rows(columns: Dict[str, np.ndarray]) -> List[dict]:
    """Columns back to one dict per row, with null for missing values (NaN and "")."""
    names = list(columns)
    lists = []
    for name in names:
        column = columns[name]
        if column.dtype == np.object_:
            lists.append([_text(v) for v in column.tolist()])
        elif column.dtype == np.float32:  # numpy scalars keep float32's shortest form (12.45)
            lists.append(list(column))
        else:
            lists.append(column.tolist())
    return [dict(zip(names, values)) for values in zip(*lists)]


def _text(value) -> Optional[str]:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value or None
