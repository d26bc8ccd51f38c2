"""What every component body does around its executor: quiet logs, clean user errors.

A component body runs in its own process (a pod, or a kfp.local subprocess). User errors
(``ProdmlError``) end the process with one readable paragraph, no traceback, and the error's
exit code. The paragraph is also appended to the file named by ``PRODML_ERROR_FILE`` when set,
as one JSON line ``{"component", "error", "exit_code", "message"}``: that is how ``prodml run``
shows the failing step's message and exits with the step's exit code. Other exceptions keep
their traceback.
"""

import json
import os
import sys
from typing import Callable, TypeVar

from prodml.components.common.errors import ProdmlError
from prodml.components.common.logs import get_logger, silence_tensorflow

T = TypeVar("T")
ERROR_FILE_ENV = "PRODML_ERROR_FILE"


def run_component(component: str, body: Callable[[], T]) -> T:
    """Runs a component body with quiet logging; turns a ProdmlError into a clean exit."""
    silence_tensorflow()
    log = get_logger(component)
    try:
        return body()
    except ProdmlError as e:
        message = f"{component} failed: {e}"
        log.error(message)
        error_file = os.environ.get(ERROR_FILE_ENV)
        if error_file:
            record = {"component": component, "error": type(e).__name__, "exit_code": e.exit_code,
                      "message": message}
            with open(error_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if os.environ.get("PRODML_VERBOSE"):
            raise
        sys.exit(e.exit_code)
