"""Where the versions of the served model live, whatever folder ``--model_dir`` names.

``--model_dir`` may be:

- the registry root, holding ``<model_name>/<version>/`` (what ``prodml push`` writes);
- one model's folder of integer versions (what KServe mounts at ``/mnt/models`` from a
  ``storageUri`` that names the model in the registry, TF Serving layout);
- a single SavedModel folder (served as one fixed version: its folder name if it is an
  integer, else 1).
"""

import os
import posixpath
from typing import List, Optional

from prodml.components.common import dataio, keys, registry
from prodml.components.common.errors import ConfigError, RegistryError
from prodml.serving.model_version import is_saved_model


class ModelSource:
    """The versions of one model, listed through the registry helpers."""

    def __init__(self, model_dir: str, model_name: str):
        self.model_dir = model_dir.rstrip("/") or model_dir
        self.model_name = model_name
        self.single_version: Optional[int] = None
        if is_saved_model(self.model_dir):
            base = _basename(self.model_dir)
            self.single_version = int(base) if base.isdigit() else 1
            self.registry_uri, self.name = self.model_dir, ""
        elif _has_versions(*_split(self.model_dir)):
            self.registry_uri, self.name = _split(self.model_dir)
        else:
            self.registry_uri, self.name = self.model_dir, model_name

    def versions(self) -> List[int]:
        """Published versions, ascending."""
        if self.single_version is not None:
            return [self.single_version]
        try:
            return registry.list_versions(self.registry_uri, self.name)
        except OSError as e:
            raise RegistryError(f"Cannot list the versions under {self.where}: {e}. "
                                "Check --model_dir and that the registry is readable.") from e

    def latest(self) -> Optional[int]:
        """The newest complete version. On object stores, where publishing copies file by file
        and writes the model card last, a version without its model card is still arriving."""
        versions = self.versions()
        if self.single_version is not None or dataio.is_local(self.registry_uri):
            return versions[-1] if versions else None
        for version in reversed(versions):
            folder = registry.version_uri(self.registry_uri, self.name, version)
            card = dataio.join(folder, keys.MODEL_CARD_JSON)
            if dataio.exists(card):
                return version
        return None

    def path(self, version: int) -> str:
        """The SavedModel folder of ``version``; a ConfigError names what exists instead."""
        if self.single_version is not None:
            if version != self.single_version:
                raise ConfigError(f"--model_dir {self.model_dir} is a single SavedModel (version "
                                  f"{self.single_version}); version {version} is not there.")
            return self.model_dir
        if version not in self.versions():
            raise ConfigError(f"Version {version} of model '{self.model_name}' is not in {self.where} "
                              f"(versions there: {self.versions() or 'none'}).")
        return registry.version_uri(self.registry_uri, self.name, version)

    @property
    def where(self) -> str:
        return self.model_dir if self.single_version is not None else \
            registry.model_root(self.registry_uri, self.name)


def _split(uri: str):
    parent = posixpath.dirname(uri) if "://" in uri else os.path.dirname(os.path.abspath(uri))
    return parent, _basename(uri)


def _basename(uri: str) -> str:
    return posixpath.basename(uri) if "://" in uri else os.path.basename(os.path.abspath(uri))


def _has_versions(registry_uri: str, name: str) -> bool:
    try:
        return bool(registry.list_versions(registry_uri, name))
    except OSError:
        return False
