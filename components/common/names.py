"""Checks on how users name a model version: the model name is a DNS-1123 label, the version ≥ 1.

A model name becomes a registry folder (``<registry>/<name>/<version>/``) and the KServe
InferenceService's name, so it must be a Kubernetes DNS-1123 label. That also keeps it a
single path segment: no ``/``, ``\\`` or ``..`` can reach the file system through it.
"""

import numbers
import re
from typing import Optional

from prodml.components.common.errors import ConfigError

# A Kubernetes DNS-1123 label (RFC 1123): what an InferenceService's metadata.name accepts.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_MODEL_NAME_LENGTH = 63


def is_dns1123_label(name: str) -> bool:
    """Whether ``name`` is a DNS-1123 label (as Kubernetes names namespaces and InferenceServices)."""
    return isinstance(name, str) and len(name) <= MAX_MODEL_NAME_LENGTH and bool(_DNS1123_LABEL.fullmatch(name))


def check_model_name(name: str, what: str = "model name") -> str:
    """Returns ``name`` when it is a DNS-1123 label; raises ConfigError naming ``what`` otherwise.

    ``what`` says where the name came from in the message, e.g. "--model-name".
    """
    if is_dns1123_label(name):
        return name
    if not isinstance(name, str):
        raise ConfigError(f"The {what} must be a string, not {type(name).__name__} ({name!r}).")
    if "/" in name or "\\" in name or ".." in name:
        why = "it contains a path separator or '..', but a model name is one folder of the registry"
    elif len(name) > MAX_MODEL_NAME_LENGTH:
        why = f"it is {len(name)} characters long"
    elif not name:
        why = "it is empty"
    else:
        why = "the name becomes the KServe InferenceService's name, which must be one"
    label = what[:1].upper() + what[1:]
    shown = f"'{name}'" if name.isprintable() else repr(name)
    raise ConfigError(f"{label} {shown} is not a valid DNS-1123 label: {why}. Use at most "
                      f"{MAX_MODEL_NAME_LENGTH} lowercase letters, digits and '-', starting and ending with a "
                      "letter or digit (e.g. 'chicago-taxi').")


def check_version(version: Optional[int], what: str = "--version") -> Optional[int]:
    """Returns ``version`` when it is None (the latest) or a whole number ≥ 1; raises ConfigError otherwise.

    Versions are numbered from 1, so 0 or a negative number is a mistake, not "the latest".
    """
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 1:
        raise ConfigError(f"{what} {version!r} is not a model version: versions are numbered 1, 2, 3, ... as "
                          f"they are pushed. Give one of those, or leave {what} out for the latest.")
    return int(version)
