"""Logging for people watching long work: short progress lines, no TensorFlow noise."""

import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager

LOGGER_NAME = "prodml"
_NOISY_LOGGERS = ("tensorflow", "absl", "apache_beam", "tfx_bsl", "tensorflow_transform",
                  "tensorflow_data_validation", "h5py", "urllib3", "kfp", "tf2onnx")


def silence_tensorflow() -> None:
    """Silences TensorFlow, absl, Beam and Google warning noise unless PRODML_VERBOSE is set.

    Must run before TensorFlow is imported to silence its C++ logging.
    """
    if os.environ.get("PRODML_VERBOSE"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("GLOG_minloglevel", "3")
    # Worker processes (Beam's, Spark's Python workers) start fresh interpreters: they inherit this.
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning,ignore::UserWarning")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Beam logs some progress (BatchElements statistics) through the root logger itself;
    # prodml's own logger does not propagate, so this quiets only third-party chatter.
    logging.getLogger().setLevel(logging.WARNING)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def get_logger(name: str = "") -> logging.Logger:
    """Returns a child of the ``prodml`` logger, configured once for stderr."""
    root = logging.getLogger(LOGGER_NAME)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s prodml %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if os.environ.get("PRODML_VERBOSE") else logging.INFO)
        root.propagate = False
    if name.startswith(LOGGER_NAME + "."):
        name = name[len(LOGGER_NAME) + 1:]
    return root.getChild(name) if name else root


@contextmanager
def step(logger: logging.Logger, what: str):
    """Logs the start and the duration of one unit of work."""
    start = time.perf_counter()
    logger.info("%s ...", what)
    yield
    logger.info("%s done in %.1fs", what, time.perf_counter() - start)


class RowProgress:
    """Counts the rows of a long pass and logs ``<what>: N <done> (R rows/s)`` at most every
    ``every`` seconds; nothing before ``every`` seconds have passed, so a short pass stays quiet."""

    def __init__(self, logger: logging.Logger, what: str, every: float, done: str = "rows"):
        self._log, self._what, self._every, self._done = logger, what, every, done
        self.rows = 0
        self._start = self._last = time.monotonic()

    def add(self, rows: int) -> None:
        """Counts ``rows`` more rows; logs when the last line (or the start) is ``every`` seconds old."""
        self.rows += rows
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._log.info("%s: %d %s (%.0f rows/s)", self._what, self.rows, self._done,
                           self.rows / max(now - self._start, 1e-9))
