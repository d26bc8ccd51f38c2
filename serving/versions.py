"""Loading the versions of one model and rolling over to newer ones, in a background thread.

``VersionManager`` owns which version is served: it loads and warms up the pinned or the
latest version, and with ``poll_seconds`` it checks for a newer one and swaps it in without a
restart (requests already validated against the old version finish on it). It never stops the
process itself: when there is nothing to serve and nothing to wait for, it records the reason in
``failure`` and calls ``on_failure(reason)``; the model server decides what to do (stop, exit 1).
"""

import gc
import threading
import time
from typing import Callable, Dict, List, Optional

from prodml.components.common.errors import RegistryError
from prodml.components.common.logs import get_logger
from prodml.serving.model_source import ModelSource
from prodml.serving.model_version import ModelVersion

logger = get_logger(__name__)

# After a swap, how long the loader waits before the next check, so that requests validated
# against the old version finish on it before it can be released.
OLD_VERSION_GRACE_SECONDS = 2.0


class VersionManager:
    """The served version of one model: first load, polling, rollover and the failure path.

    Args:
        source: where the versions are.
        model_name: for messages.
        pinned: serve this version only; None serves the latest.
        poll_seconds: check for a newer version this often (0: never).
        warm_up_rows: the largest batch the warm-up traces (the micro-batch size).
        on_failure: called once, from the loader thread, with the reason when there is nothing
            to serve and nothing to wait for.
        load: loads one version folder (``ModelVersion`` by default).
    """

    def __init__(self, source: ModelSource, model_name: str, pinned: Optional[int] = None,
                 poll_seconds: float = 0.0, warm_up_rows: int = 64,
                 on_failure: Optional[Callable[[str], None]] = None,
                 load: Callable[[str, int], ModelVersion] = ModelVersion):
        self.source = source
        self.model_name = model_name
        self.pinned = pinned
        self.poll_seconds = poll_seconds
        self.warm_up_rows = warm_up_rows
        self.on_failure = on_failure
        self.current: Optional[ModelVersion] = None
        self.failure: Optional[str] = None
        self._load = load
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._swap_lock = threading.Lock()
        self._failed_versions: Dict[int, str] = {}
        self._waiting_logged = False

    @property
    def polling(self) -> bool:
        return bool(self.poll_seconds) and self.pinned is None

    def check(self) -> None:
        """Fails fast (RegistryError, as `prodml lineage` does) when there is nothing to serve or wait for."""
        if self.pinned is not None:
            self.source.path(self.pinned)
        elif not self.polling and self.source.latest() is None:
            raise RegistryError(f"No version of model '{self.model_name}' under {self.source.where}. Push a "
                                "model first, check the registry and the model name, or pass --poll to wait "
                                "for one.")

    def served(self) -> List[str]:
        """The versions requests are served by (what the V2 metadata lists)."""
        current = self.current
        return [str(current.version)] if current is not None else []

    def start(self) -> None:
        """Starts loading (and polling) in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prodml-loader", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stops polling; a load in progress finishes in the background."""
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for the loader thread to end; True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def load_now(self) -> bool:
        """Loads the pinned or latest version in this thread unless the loader is at it; True when loaded."""
        if self.current is not None:
            return True
        if self._thread is not None and self._thread.is_alive():
            return False
        version = self.pinned if self.pinned is not None else self.source.latest()
        if version is None:
            return False
        self.activate(version)
        return True

    def activate(self, version: int) -> None:
        """Loads and warms up ``version``, then serves it (one reference swap)."""
        with self._swap_lock:
            if self.current is not None and self.current.version == version:
                return
            started = time.perf_counter()
            loaded = self._load(self.source.path(version), version)
            warm = loaded.warm_up(self.warm_up_rows)
            previous = self.current.version if self.current is not None else None
            # Requests validated from now on use the new version; those already queued keep a
            # reference to the old one and finish on it.
            self.current = loaded
            logger.info("model %s: serving version %d (loaded in %.1fs, warm-up %.2fs)%s", self.model_name, version,
                        time.perf_counter() - started, warm,
                        f", replacing version {previous}" if previous is not None else "")
            if previous is not None:
                self._stop.wait(OLD_VERSION_GRACE_SECONDS)
            _freeze_long_lived_objects()
            if previous is not None:
                logger.info("model %s: version %d released", self.model_name, previous)

    def _run(self) -> None:
        while not self._stop.is_set():
            problem = None
            try:
                self._check_once()
            except Exception as e:  # noqa: BLE001 - the loader must survive a bad version
                problem = str(e)
                logger.error("model %s: %s", self.model_name, e)
            if self.current is None and not self.polling:
                self._fail(problem or "no version to serve")
                return
            if not self.polling:
                return
            self._stop.wait(self.poll_seconds)

    def _check_once(self) -> None:
        if self.pinned is not None:
            if self.current is None:
                self.activate(self.pinned)
            return
        latest = self.source.latest()
        if latest is None:
            if self.current is None and not self._waiting_logged:
                logger.info("model %s: waiting for a first version under %s", self.model_name, self.source.where)
                self._waiting_logged = True
            return
        if self.current is not None and latest == self.current.version:
            return
        if latest in self._failed_versions:
            return
        try:
            self.activate(latest)
        except Exception as e:
            self._failed_versions[latest] = str(e)
            raise

    def _fail(self, reason: str) -> None:
        self.failure = f"model {self.model_name}: {reason}"
        logger.error("model %s: nothing to serve; stopping", self.model_name)
        if self.on_failure is not None:
            self.on_failure(self.failure)


def _freeze_long_lived_objects() -> None:
    """Keeps the garbage collector off the model's objects.

    TensorFlow leaves millions of long-lived Python objects; a full collection that scans them
    stalls every in-flight request for hundreds of milliseconds. Frozen objects are skipped.
    Unfreezing first lets the collection free a replaced version's reference cycles.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
