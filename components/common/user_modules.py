"""Loading a function from a user's Python file (a local path or any ``tf.io.gfile`` URI)."""

import hashlib
import importlib.util
import os
import sys
import tempfile
from typing import Callable

from prodml.components.common import dataio
from prodml.components.common.errors import ConfigError


def load_function(module_file: str, function_name: str) -> Callable:
    """Imports ``module_file`` and returns its ``function_name``.

    A remote file is copied to a local temporary file first. Any failure (missing file,
    import error, missing or non-callable function) is a ``ConfigError`` naming the file.
    """
    if not dataio.exists(module_file):
        raise ConfigError(f"User module {module_file} does not exist: give the path or URI of a "
                          f"Python file that defines {function_name}().")
    path = dataio.local_path(module_file) if dataio.is_local(module_file) else _copy_local(module_file)
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    name = f"prodml_user_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise ConfigError(f"User module {module_file} failed to import: {type(e).__name__}: {e}. "
                          "Fix the file and run again.") from e
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"User module {module_file} does not define a function "
                          f"{function_name}(): add one.")
    return function


def _copy_local(uri: str) -> str:
    folder = tempfile.mkdtemp(prefix="prodml_user_module_")
    path = os.path.join(folder, uri.rstrip("/").rsplit("/", 1)[-1])
    dataio.gfile().copy(uri, path, overwrite=True)
    return path
