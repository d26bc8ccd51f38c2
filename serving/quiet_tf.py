"""Importing TensorFlow without its start-up noise on the server's stderr.

TensorFlow's native libraries log a few lines as they load ("WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR", "cudart_stub.cc ... Could not find cuda
drivers", oneDNN and cuDNN/cuFFT/cuBLAS factory notices), straight to file descriptor 2 and before
``TF_CPP_MIN_LOG_LEVEL`` can apply. ``import_tensorflow`` points descriptor 2 at a temporary file
for the import, then writes back every captured line that is not such noise, so nothing else
written meanwhile is lost (only delayed). With ``PRODML_VERBOSE`` set, nothing is filtered.
"""

import os
import sys
import tempfile
import threading
from types import ModuleType

# Lines of TensorFlow's native start-up noise contain one of these (lower case).
NOISE_MARKERS = (b"absl::initializelog", b"cuda", b"cudnn", b"cufft", b"cublas", b"tensorrt", b"tf-trt",
                 b"onednn", b"cpu_feature_guard", b"computation_placer", b"rebuild tensorflow with the appropriate")

_lock = threading.Lock()
_active = None  # (saved stderr descriptor, capture file) while an import is being filtered


def is_noise(line: bytes) -> bool:
    """Whether a captured stderr line is TensorFlow start-up noise."""
    lowered = line.lower()
    return any(marker in lowered for marker in NOISE_MARKERS)


def import_tensorflow() -> ModuleType:
    """``import tensorflow``, with its native start-up lines filtered out of stderr."""
    global _active
    with _lock:
        if "tensorflow" in sys.modules or os.environ.get("PRODML_VERBOSE"):
            import tensorflow

            return tensorflow
        with tempfile.TemporaryFile() as captured:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(captured.fileno(), 2)
            _active = (saved, captured)
            try:
                import tensorflow
            finally:
                restore_stderr()
        return tensorflow


def restore_stderr() -> None:
    """Ends a filtered import's capture now: stderr back in place, captured lines other than noise
    written to it. For the import itself, and for a process about to exit in the middle of one."""
    global _active
    active, _active = _active, None
    if active is None:
        return
    saved, captured = active
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    captured.seek(0)
    kept = b"".join(line for line in captured if not is_noise(line))
    if kept:
        os.write(2, kept)
