"""Request errors: KServe's types (which the server maps to HTTP and gRPC statuses) that are
also prodml user-facing errors."""

from kserve.errors import InvalidInput

from prodml.components.common.errors import InputDataError


class InvalidRequest(InvalidInput, InputDataError):
    """The request does not fit the model's inputs: HTTP 400, gRPC INVALID_ARGUMENT.

    The message names the feature (and row) and says what is expected.
    """

    def __init__(self, reason: str):
        InvalidInput.__init__(self, reason)
        Exception.__init__(self, reason)


class RequestTooLarge(InputDataError):
    """The request body exceeds ``--max_request_bytes``: HTTP 413 (gRPC RESOURCE_EXHAUSTED)."""

    def __init__(self, size: int, limit: int):
        self.reason = (f"The request body has {'at least ' if size > limit else ''}{size} bytes, over the "
                       f"server's limit of {limit} bytes (--max_request_bytes). "
                       "Send fewer rows per request.")
        super().__init__(self.reason)

    def __str__(self):
        return self.reason
