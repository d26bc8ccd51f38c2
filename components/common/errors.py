"""The user-facing error hierarchy.

A ``ProdmlError`` is a problem with the user's input or environment. The CLI and the
component wrappers print its message as one paragraph, without a traceback, and exit with
the error's ``exit_code``. Anything else is a bug and keeps its traceback (exit code 1).

Exit codes: 0 success; 1 a bug (traceback); 2 a usage error (``ConfigError``: a bad flag,
parameter, name or user module; argparse's own errors are 2 as well); 3 a data or pipeline error
(every other ``ProdmlError``: bad input data, schema anomalies, registry, lineage or deployment
failures, a failed pipeline step); 130 interrupted.
"""

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_INTERRUPTED = 130


class ProdmlError(Exception):
    """Base class: the message names the file, column, row or field, and what to do."""

    exit_code = EXIT_DATA


class InputDataError(ProdmlError):
    """The input data cannot be read or does not fit the task (file, column, row)."""


class SchemaError(ProdmlError):
    """The data violates the schema: blocking anomalies, named per feature."""


class ConfigError(ProdmlError):
    """A parameter, user module or path given by the user is wrong."""

    exit_code = EXIT_USAGE


class NotBlessedError(ProdmlError):
    """A step that needs a blessed model was given one that is not."""


class RegistryError(ProdmlError):
    """The model registry cannot be read or written."""


class DeploymentError(ProdmlError):
    """A Kubernetes deployment failed or did not become Ready (names namespace/name and the reason)."""
