"""Importing TensorFlow and Beam for scoring: without the extras TensorFlow pulls eagerly, and without GC churn.

Two costs of a scoring process's start-up that do nothing for it (measured in
``benchmarks/batch_predict.py``):

- ``import tensorflow`` (2.16) eagerly imports Keras 3 (``keras.src.optimizers``, which brings
  scikit-learn and SciPy with it) so that Keras optimizers register for checkpoint loading, and
  its GCE cluster resolver imports the Google API client. Calling a SavedModel's signature needs
  neither, and TensorFlow wraps both imports in ``try/except ImportError``: they are blocked while
  TensorFlow imports (about a second of CPU) and unblocked right after, so a later ``import keras``
  in the same process works as usual.
- The hundreds of thousands of objects such imports create set off the cyclic garbage collector
  again and again, though modules are never garbage (a third of TensorFlow's import time), and
  every later full collection walks them again, the interpreter's last one at exit included
  (over a second with TensorFlow loaded). :func:`frozen_imports` pauses the collector while
  they load and then moves every object alive out of its reach (``gc.freeze``). The price, in a
  long-lived process: cyclic garbage among the objects alive at that moment is never freed.
"""

import contextlib
import gc
import sys

# Imports TensorFlow makes inside ``try/except ImportError`` that inference does not use.
OPTIONAL_EXTRAS = ("keras.src.optimizers", "googleapiclient")


@contextlib.contextmanager
def frozen_imports():
    """Imports in this block run without the cyclic garbage collector; what exists after it is frozen."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.freeze()


def import_tensorflow():
    """The ``tensorflow`` module; imported as described above when this process has not imported it yet."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    blocked = [name for name in OPTIONAL_EXTRAS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # makes `import name` raise ImportError
    try:
        with frozen_imports():
            import tensorflow as tf
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return tf
