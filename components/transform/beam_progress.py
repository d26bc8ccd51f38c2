"""A pass-through Beam stage that counts record-batch rows and logs progress on long stages.

Imported only inside the transform pipeline (it imports Beam).
"""

import time
from typing import Optional

import apache_beam as beam

from prodml.components.common.logs import get_logger

log = get_logger(__name__)


def rows_of(element) -> int:
    """Rows of a raw record batch, or of a transformed (record batch, passthrough) pair."""
    return (element[0] if isinstance(element, tuple) else element).num_rows


class Progress(beam.DoFn):
    """Passes record batches through, counting their rows; on a long stage, logs the count.

    A line at most every ``seconds`` from the stage's first batch, so a short stage logs
    nothing. With ``counter``, the rows also go to that Beam counter (namespace ``prodml``).
    """

    def __init__(self, what: str, total: Optional[int], seconds: float, counter: str = ""):
        self._what, self._total, self._seconds, self._counter_name = what, total, seconds, counter
        self._rows, self._last, self._counter = 0, None, None

    def setup(self):
        self._rows, self._last = 0, None
        if self._counter_name:
            self._counter = beam.metrics.Metrics.counter("prodml", self._counter_name)

    def process(self, element):
        rows = rows_of(element)
        self._rows += rows
        if self._counter is not None:
            self._counter.inc(rows)
        now = time.monotonic()
        if self._last is None:
            self._last = now
        elif now - self._last >= self._seconds:
            self._last = now
            of = f" of {self._total}" if self._total else ""
            log.info("transform: %s: %d%s", self._what, self._rows, of)
        yield element
