"""Batched request/response logging off the hot path.

The batcher hands each served micro-batch (columns, predictions, version, and the requests it
joined: their ids, pass-through values and row counts) to ``log_batch``, which only appends to a
bounded queue. A background thread turns batches into records and writes them.

One record per served row (the format monitoring reads; ``request_ids.py`` says where ids and
pass-through values come from)::

    {"timestamp": "2026-12-01T16:00:00.123456+00:00",  # when the row's micro-batch was served
                                                       # (UTC; a CloudEvents group: its first batch)
     "model_name": "chicago-taxi", "model_version": 3,  # the version that predicted it (int)
     "request_id": "5f0c...",       # V2 id, else x-request-id, else a generated uuid4 hex
     "row": 0,                      # index of the row inside its request, from 0
     "passthrough": {"trip_id": "a1"},  # only the keys named by --log_passthrough ({} without);
                                        # null for a named key the request did not carry
     "features": {"fare": 12.45, "company": null},  # every raw feature; null when missing
     "prediction": 0.73}            # a number, or a list of numbers (one per class)

Keys come in this order. Sinks:

- a file (``--log_requests path``): JSON lines, one record per line;
- a CloudEvents sink (``--log_requests http://...``), in the style of KServe's inference logger,
  binary content mode, per micro-batch or, when the sink is slower than the server, per group of
  batches (up to 1,000 rows): one ``org.kubeflow.serving.inference.request`` event whose body is
  ``{"instances": [record, ...]}`` (each record exactly as above) and one
  ``org.kubeflow.serving.inference.response`` event ``{"predictions": [...], "model_name": ...,
  "model_version": "3", "request_ids": [one per row]}``. Both share ``ce-id``: the request id of
  the first request in the group (as KServe's logger uses the request id), so ``ce-id`` is not
  unique when a client reuses ids; ``ce-modelid`` is ``<model_name>/<version>``.

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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import orjson

from prodml.components.common.errors import ConfigError
from prodml.components.common.logs import get_logger
from prodml.serving import metrics
from prodml.serving.request_ids import RequestTag, new_request_id

logger = get_logger(__name__)

REQUEST_EVENT = "org.kubeflow.serving.inference.request"
RESPONSE_EVENT = "org.kubeflow.serving.inference.response"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY  # NaN is written as null
_MAX_EVENT_ROWS = 1000
_EMPTY = b"{}"
_LINE = b'%s,"request_id":%s,"row":%d,"passthrough":%s,"features":%s,"prediction":%s}\n'
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

    def log_batch(self, version: int, columns: Dict[str, np.ndarray], predictions: np.ndarray,
                  requests: Optional[Sequence[Tuple[RequestTag, int]]] = None) -> None:
        """Queues one served batch; O(1), never blocks.

        ``requests``: the requests the batch joined, in order, each ``(tag, rows)``; None logs the
        batch as one request with a generated id.
        """
        if len(self._queue) >= self._max_queued:
            self._dropped.inc()
            return
        if requests is None:
            requests = ((RequestTag(new_request_id()), len(predictions)),)
        self._queue.append((datetime.datetime.now(datetime.UTC), version, columns, predictions, requests))

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

    def _lines(self, when, version, columns, predictions, requests) -> bytes:
        return b"".join(_records(when.isoformat(timespec="microseconds"), self.model_name, version, columns,
                                 predictions, requests))

    def _post(self, when, version, columns, predictions, requests) -> None:
        stamp = when.isoformat(timespec="microseconds")
        first = requests[0][0].request_id
        common = {
            "ce-specversion": "1.0",
            "ce-id": first,
            "ce-source": self._source,
            "ce-time": stamp,
            "ce-inferenceservicename": os.environ.get("K_SERVICE", self.model_name),
            "ce-namespace": os.environ.get("POD_NAMESPACE", ""),
            "ce-component": "predictor",
            "ce-endpoint": self.model_name,
            "ce-modelid": f"{self.model_name}/{version}",
            "content-type": "application/json",
        }
        records = _records(stamp, self.model_name, version, columns, predictions, requests)
        request = b'{"instances":[' + b",".join(line[:-1] for line in records) + b"]}"
        ids = [tag.request_id for tag, rows in requests for _ in range(rows)]
        response = orjson.dumps({"predictions": predictions, "model_name": self.model_name,
                                 "model_version": str(version), "request_ids": ids}, option=_NUMPY)
        for event_type, body in ((REQUEST_EVENT, request), (RESPONSE_EVENT, response)):
            reply = self._client.post(self.target, content=body, headers={**common, "ce-type": event_type})
            reply.raise_for_status()


def _records(stamp: str, model_name: str, version: int, columns: Dict[str, np.ndarray], predictions: np.ndarray,
             requests: Sequence[Tuple[RequestTag, int]]) -> List[bytes]:
    """One JSON line (ending in a newline) per row, in the format of the module docstring."""
    features = _rows(columns)
    preds = list(predictions)  # numpy scalars (or rows), written in their own precision
    head = orjson.dumps({"timestamp": stamp, "model_name": model_name, "model_version": version})[:-1]
    out = []
    j = 0
    for tag, rows in requests:
        request_id = orjson.dumps(tag.request_id)
        if tag.passthrough is None:
            for i in range(rows):
                out.append(_LINE % (head, request_id, i, _EMPTY, orjson.dumps(features[j], option=_NUMPY),
                                    orjson.dumps(preds[j], option=_NUMPY)))
                j += 1
            continue
        if rows == 1:  # the common case under load: skip the per-request set-up below
            passthrough = orjson.dumps({name: None if values is None else values[0]
                                        for name, values in tag.passthrough.items()}, option=_NUMPY)
            out.append(_LINE % (head, request_id, 0, passthrough, orjson.dumps(features[j], option=_NUMPY),
                                orjson.dumps(preds[j], option=_NUMPY)))
            j += 1
            continue
        # A key the request did not carry is null in every row.
        columns = [(name, values if values is not None else _nulls(rows)) for name, values in tag.passthrough.items()]
        for i in range(rows):
            passthrough = orjson.dumps({name: values[i] for name, values in columns}, option=_NUMPY)
            out.append(_LINE % (head, request_id, i, passthrough, orjson.dumps(features[j], option=_NUMPY),
                                orjson.dumps(preds[j], option=_NUMPY)))
            j += 1
    return out


def _nulls(rows: int) -> list:
    return [None] * rows


def _coalesce(batches: list, max_rows: int) -> list:
    """Joins consecutive batches of one version (up to ``max_rows``), so that a busy server
    sends few large events instead of many small ones."""
    out = []
    for when, version, columns, predictions, requests in batches:
        if out and out[-1][1] == version and len(out[-1][3]) + len(predictions) <= max_rows:
            first, _, joined, joined_predictions, joined_requests = out[-1]
            out[-1] = (first, version, {name: np.concatenate([joined[name], columns[name]]) for name in joined},
                       np.concatenate([joined_predictions, predictions]), [*joined_requests, *requests])
        else:
            out.append((when, version, columns, predictions, requests))
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
