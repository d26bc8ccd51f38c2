"""The user-facing error hierarchy.

A ``ProdmlError`` is a problem with the user's input or environment. The CLI and the
component wrappers print its message as one paragraph, without a traceback, and exit
non-zero. Anything else is a bug and keeps its traceback.
"""


class ProdmlError(Exception):
    """Base class: the message names the file, column, row or field, and what to do."""

    exit_code = 2


class InputDataError(ProdmlError):
    """The input data cannot be read or does not fit the task (file, column, row)."""


class SchemaError(ProdmlError):
    """The data violates the schema: blocking anomalies, named per feature."""


class ConfigError(ProdmlError):
    """A parameter, user module or path given by the user is wrong."""


class NotBlessedError(ProdmlError):
    """A step that needs a blessed model was given one that is not."""


class RegistryError(ProdmlError):
    """The model registry cannot be read or written."""


class DeploymentError(ProdmlError):
    """A Kubernetes deployment failed or did not become Ready (names namespace/name and the reason)."""
