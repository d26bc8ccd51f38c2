"""Micro-batching: concurrent requests share one model call, each caller gets its own rows back.

Requests are validated and converted to columns before they get here, so a bad request never
joins a batch. ``submit`` queues the request and schedules a flush on the event loop; the
requests queued by then (those that arrived while the previous model call ran, or during the
short wait below) are served by one model call, and each caller gets its slice of the
predictions, in order.

The model runs on the event-loop thread. A worker thread would let socket work overlap the
model's kernels in theory, but in practice the two threads hand the GIL back and forth on
every socket call and tail latency explodes; a small model call is cheaper than that.

An idle server adds no wait to speak of. Under load, a forming batch waits for more requests as
long as the event loop keeps bringing new ones, up to ``max_wait_ms``.

A large request (more than ``offload_rows`` rows) is the exception: it would hold the event loop
(and with it every health probe) for the whole model call, so it is served alone, in the worker
thread of ``run_large``, in chunks of at most ``offload_rows`` rows (TensorFlow releases the GIL
while it runs).
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from prodml.components.common.logs import get_logger

logger = get_logger(__name__)


# Loop iterations without a new request after which a forming batch is served. gRPC needs a few
# iterations to hand over each call; measured: 2 leaves gRPC unbatched, 6 and 16 batch it alike,
# and an idle iteration costs a lone caller some 10 microseconds.
_IDLE_TURNS = 6
# Rows above which a request is predicted off the event loop, in chunks of this size: a model
# call of this many rows takes some tens of milliseconds on the taxi model.
OFFLOAD_ROWS = 4096
# One thread for the heavy work of large requests (validation, model calls): with more, their
# Python-level work would take the GIL from the event loop most of the time.
_LARGE_WORK = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prodml-large")


async def run_large(fn, *args):
    """``fn(*args)`` off the event loop, in the one thread that serves large requests."""
    return await asyncio.get_running_loop().run_in_executor(_LARGE_WORK, fn, *args)


class _Item:
    __slots__ = ("version", "columns", "rows", "future", "queued_at", "tag")

    def __init__(self, version, columns, rows, future, queued_at, tag):
        self.version = version
        self.columns = columns
        self.rows = rows
        self.future = future
        self.queued_at = queued_at
        self.tag = tag


class BatchResult:
    """What one caller gets back: its predictions and the version that made them."""

    __slots__ = ("predictions", "version")

    def __init__(self, predictions: np.ndarray, version: Any):
        self.predictions = predictions
        self.version = version


class MicroBatcher:
    """Groups concurrent ``submit`` calls into model calls of at most ``max_batch_size`` rows.

    ``on_batch(version, columns, predictions, requests)`` runs after each model call (metrics,
    request logging); ``requests`` lists the ``(tag, rows)`` of the requests the call served, in
    row order (``tag``: what the caller passed to ``submit``). It must be cheap and must not raise.
    """

    def __init__(self, max_batch_size: int = 64, max_wait_ms: float = 2.0,
                 on_batch: Optional[Callable[[Any, Dict[str, np.ndarray], np.ndarray, List[Tuple[Any, int]]],
                                             None]] = None,
                 offload_rows: int = OFFLOAD_ROWS):
        self.max_batch_size = max(1, int(max_batch_size))
        self.offload_rows = max(self.max_batch_size, int(offload_rows))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self._on_batch = on_batch
        self._queue: List[_Item] = []
        self._flush_scheduled = False
        self._stopping = False
        self._seen = 0        # queue length at the previous flush attempt
        self._idle_turns = 0  # consecutive attempts that found no new request

    async def submit(self, version, columns: Dict[str, np.ndarray], rows: int, tag: Any = None) -> BatchResult:
        """Queues one validated request for ``version`` and waits for its predictions.

        ``tag`` is handed back to ``on_batch`` with the request's rows (the request log's id and
        pass-through values).
        """
        if self._stopping:
            raise RuntimeError("The batcher is stopped.")
        if rows > self.offload_rows:
            return await self._serve_alone(version, columns, rows, tag)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append(_Item(version, columns, rows, future, time.monotonic(), tag))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def stop(self) -> None:
        """Serves what is queued; later ``submit`` calls fail."""
        self._stopping = True
        while self._queue:
            self._serve(self._take())

    async def _serve_alone(self, version, columns: Dict[str, np.ndarray], rows: int, tag: Any) -> BatchResult:
        """A large request: predicted in a worker thread, chunk by chunk, then observed on the loop."""
        predictions = await run_large(_predict_in_chunks, version, columns, rows, self.offload_rows)
        self._observe(version, columns, predictions, [(tag, rows)])
        return BatchResult(predictions, version)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._queue:
            return
        # Under load, requests reach the queue over several loop iterations (gRPC hands its
        # calls over one at a time). Yield to the loop while recent iterations brought more
        # requests, up to max_wait; when they bring nothing, the server is not loaded and the
        # batch goes at once (a lone caller waits a few idle iterations: microseconds).
        if len(self._queue) > self._seen:
            self._idle_turns = 0
        else:
            self._idle_turns += 1
        self._seen = len(self._queue)
        if (self._idle_turns < _IDLE_TURNS and not self._stopping
                and time.monotonic() - self._queue[0].queued_at < self.max_wait
                and sum(item.rows for item in self._queue) < self.max_batch_size):
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
            return
        while self._queue:
            self._serve(self._take())
        self._seen = self._idle_turns = 0

    def _take(self) -> List[_Item]:
        first = self._queue[0]
        count, rows = 1, first.rows
        for item in self._queue[1:]:
            # One model call serves one version: during a rollover, requests validated against
            # the new version wait for the next call.
            if item.version is not first.version or rows + item.rows > self.max_batch_size:
                break
            count += 1
            rows += item.rows
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    def _serve(self, batch: List[_Item]) -> None:
        version = batch[0].version
        try:
            if len(batch) == 1:
                columns = batch[0].columns
            else:
                columns = {name: np.concatenate([item.columns[name] for item in batch])
                           for name in batch[0].columns}
            predictions = version.predict(columns)
        except Exception as e:  # noqa: BLE001 - handed to every caller of this batch
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(e)
            return
        start = 0
        for item in batch:
            if not item.future.done():  # the caller may have gone away
                item.future.set_result(BatchResult(predictions[start:start + item.rows], version))
            start += item.rows
        self._observe(version, columns, predictions, [(item.tag, item.rows) for item in batch])

    def _observe(self, version, columns: Dict[str, np.ndarray], predictions: np.ndarray,
                 requests: List[Tuple[Any, int]]) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(version, columns, predictions, requests)
            except Exception:
                logger.exception("batch observer failed")


def _predict_in_chunks(version, columns: Dict[str, np.ndarray], rows: int, chunk: int) -> np.ndarray:
    if rows <= chunk:
        return version.predict(columns)
    parts = [version.predict({name: column[start:start + chunk] for name, column in columns.items()})
             for start in range(0, rows, chunk)]
    return np.concatenate(parts)
