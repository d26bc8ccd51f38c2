"""Request errors and the one table that maps them to HTTP statuses and gRPC codes.

Every path of the server answers errors through ``ERROR_TABLE``: the REST fast path
(``fast_path.py``), KServe's FastAPI routes (one exception handler per row, ``server.py``) and
gRPC (``server.py``'s servicer). An exception takes the row of its nearest class in the table
(by method resolution order); anything else is a bug: 500 / INTERNAL, with a traceback in the log.
Client errors (4xx, 503) are not logged per request: a bad client must not flood the log.

The prodml error classes are KServe's types (so that KServe's own code treats them alike) and
prodml user-facing errors (one paragraph naming the feature, row, field or version).
"""

from dataclasses import dataclass
from http import HTTPStatus
from typing import Dict, Iterable, Tuple, Type

import orjson
from grpc import StatusCode
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady

from prodml.components.common.errors import InputDataError
from prodml.components.common.logs import get_logger

logger = get_logger(__name__)


class InvalidRequest(InvalidInput, InputDataError):
    """The request does not fit the model's inputs: HTTP 400, gRPC INVALID_ARGUMENT.

    The message names the feature (and row) or the field and says what is expected.
    """

    def __init__(self, reason: str):
        InvalidInput.__init__(self, reason)
        Exception.__init__(self, reason)


class RequestTooLarge(InputDataError):
    """The request body exceeds ``--max_request_bytes``: HTTP 413, gRPC RESOURCE_EXHAUSTED."""

    def __init__(self, size: int, limit: int):
        self.reason = (f"The request body has {'at least ' if size > limit else ''}{size} bytes, over the "
                       f"server's limit of {limit} bytes (--max_request_bytes). "
                       "Send fewer rows per request.")
        super().__init__(self.reason)

    def __str__(self):
        return self.reason


class VersionNotServed(ModelNotFound, InputDataError):
    """A request names a version the server does not serve: HTTP 404, gRPC NOT_FOUND.

    The message names the versions served (those listed by the model metadata).
    """

    def __init__(self, model_name: str, version: str, served: Iterable[str]):
        served = list(served)
        listed = ", ".join(served) if served else "none yet"
        self.reason = (f"Model '{model_name}' has no version '{version}' being served (versions served: "
                       f"{listed}). Send the request to /v2/models/{model_name}/infer for the current "
                       "version, or name a version listed by the model metadata.")
        Exception.__init__(self, self.reason)

    def __str__(self):
        return self.reason


@dataclass(frozen=True)
class ErrorStatus:
    """How one error class is answered: the HTTP status and the gRPC code."""

    http: HTTPStatus
    grpc: StatusCode


# Every error the server raises or lets through (its own and KServe's), by class. The nearest
# class wins (method resolution order), so a subclass may have its own row. README.md's error
# table is this one.
ERROR_TABLE: Dict[Type[BaseException], ErrorStatus] = {
    # A request that does not fit the model or the protocol (InvalidRequest and KServe's own).
    InvalidInput: ErrorStatus(HTTPStatus.BAD_REQUEST, StatusCode.INVALID_ARGUMENT),
    # No model by that name.
    ModelNotFound: ErrorStatus(HTTPStatus.NOT_FOUND, StatusCode.NOT_FOUND),
    # The request names a version that is not served.
    VersionNotServed: ErrorStatus(HTTPStatus.NOT_FOUND, StatusCode.NOT_FOUND),
    # The body is over --max_request_bytes (on gRPC, the runtime's own receive limit says so).
    RequestTooLarge: ErrorStatus(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, StatusCode.RESOURCE_EXHAUSTED),
    # No version loaded yet, or shutting down.
    ModelNotReady: ErrorStatus(HTTPStatus.SERVICE_UNAVAILABLE, StatusCode.UNAVAILABLE),
    ServerNotReady: ErrorStatus(HTTPStatus.SERVICE_UNAVAILABLE, StatusCode.UNAVAILABLE),
    # KServe routes the predictor does not have (V1 :explain).
    NotImplementedError: ErrorStatus(HTTPStatus.NOT_IMPLEMENTED, StatusCode.UNIMPLEMENTED),
    # Anything else is a bug in the server.
    Exception: ErrorStatus(HTTPStatus.INTERNAL_SERVER_ERROR, StatusCode.INTERNAL),
}
INTERNAL = ERROR_TABLE[Exception]
_BY_TYPE: Dict[type, ErrorStatus] = {}


def status_of(error: BaseException) -> ErrorStatus:
    """The table's row for ``error``: its nearest class in ``ERROR_TABLE``."""
    kind = type(error)
    status = _BY_TYPE.get(kind)
    if status is None:
        status = next((ERROR_TABLE[c] for c in kind.__mro__ if c in ERROR_TABLE), INTERNAL)
        _BY_TYPE[kind] = status
    return status


def message_of(error: BaseException) -> str:
    """What the client reads: the error's own message, or its type for an unexpected error."""
    if status_of(error) is INTERNAL:
        return f"Internal error ({type(error).__name__}): {error}"
    return str(error)


def is_client_error(status: ErrorStatus) -> bool:
    """Every row but the last: the client's mistake or a routine state (not ready); no traceback logged."""
    return status is not INTERNAL


def rows() -> Tuple[Tuple[Type[BaseException], ErrorStatus], ...]:
    """The table as (error class, status) pairs, for documentation and tests."""
    return tuple(ERROR_TABLE.items())


def log_error(error: BaseException, status: ErrorStatus) -> None:
    """A traceback for an unexpected error; a debug line for a client's (no log flood)."""
    if is_client_error(status):
        logger.debug("%d: %s", status.http, error)
    else:
        logger.error("request failed", exc_info=error)


def rest_error(error: BaseException) -> Tuple[int, bytes]:
    """The REST answer to ``error``: (HTTP status, ``{"error": message}`` JSON body)."""
    status = status_of(error)
    log_error(error, status)
    return int(status.http), orjson.dumps({"error": message_of(error)})
