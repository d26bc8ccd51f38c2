"""Where the versions of the served model live, as the command line says it.

The layout is chosen by the flag, never guessed from what exists on disk at start-up (a server
started before a model's first push must watch the right folder):

- ``--registry ROOT`` (``REGISTRY``): the registry root; the model's versions are
  ``ROOT/<model_name>/<version>/`` (what ``prodml push`` writes; ``prodml serve`` uses this).
- ``--model_dir DIR`` (``MODEL``): one model's folder of integer versions ``DIR/<version>/``, the
  TF Serving layout that KServe mounts at ``/mnt/models`` from a ``storageUri`` naming the model
  in the registry.
- ``--saved_model DIR`` (``SAVED_MODEL``): one SavedModel folder, served as its only version (its
  folder name if an integer, else 1).

Which versions count is the registry's decision (``registry.list_versions``: complete versions
only), on local paths and ``tf.io.gfile`` URIs alike.
"""

import os
import posixpath
from typing import List, Optional

from prodml.components.common import dataio, registry
from prodml.components.common.errors import ConfigError, RegistryError
from prodml.serving.model_version import is_saved_model

REGISTRY = "registry"
MODEL = "model"
SAVED_MODEL = "saved_model"


class ModelSource:
    """The versions of one model.

    Args:
        uri: the registry root (``REGISTRY``), the model's folder of versions (``MODEL``) or one
            SavedModel folder (``SAVED_MODEL``).
        model_name: the model's name (the folder under a registry root).
        layout: ``REGISTRY``, ``MODEL`` or ``SAVED_MODEL``, as the flag said.
    """

    def __init__(self, uri: str, model_name: str, layout: str = REGISTRY):
        if layout not in (REGISTRY, MODEL, SAVED_MODEL):
            raise ConfigError(f"Unknown model layout '{layout}': use '{REGISTRY}', '{MODEL}' or '{SAVED_MODEL}'.")
        self.uri = uri.rstrip("/") or uri
        self.model_name = model_name
        self.single_version: Optional[int] = None
        if layout == REGISTRY:
            self.layout = REGISTRY
            self.registry_uri, self.name = self.uri, model_name
        elif layout == SAVED_MODEL:
            if not is_saved_model(self.uri):
                raise ConfigError(f"--saved_model {self.uri} is not a SavedModel folder (no saved_model.pb). "
                                  "Give a SavedModel folder, or a folder of versions with --model_dir.")
            self.layout = SAVED_MODEL
            base = _basename(self.uri)
            self.single_version = int(base) if base.isdigit() else 1
            self.registry_uri, self.name = self.uri, ""
        else:
            self.layout = MODEL
            self.registry_uri, self.name = self.uri, ""

    @classmethod
    def from_flags(cls, model_name: str, registry_root: Optional[str], model_dir: Optional[str],
                   saved_model: Optional[str] = None) -> "ModelSource":
        """The source named by ``--registry``, ``--model_dir`` or ``--saved_model`` (exactly one of them)."""
        given = [(uri, layout) for uri, layout in
                 ((registry_root, REGISTRY), (model_dir, MODEL), (saved_model, SAVED_MODEL)) if uri]
        if len(given) != 1:
            raise ConfigError("Give exactly one of --registry (a registry root holding <model_name>/<version>/), "
                              "--model_dir (one model's folder of integer versions, e.g. KServe's "
                              "/mnt/models) and --saved_model (one SavedModel folder).")
        uri, layout = given[0]
        return cls(uri, model_name, layout)

    def versions(self) -> List[int]:
        """Complete versions, ascending."""
        if self.single_version is not None:
            return [self.single_version]
        try:
            if self.layout == REGISTRY:
                return registry.list_versions(self.registry_uri, self.name)
            # The folder's own name need not be a model name (/mnt/models): list it directly.
            return [v for v in _numbered_folders(self.uri) if registry.is_complete(self._folder(v))]
        except OSError as e:
            raise RegistryError(f"Cannot list the versions under {self.where}: {e}. "
                                "Check --registry / --model_dir and that the folder is readable.") from e

    def latest(self) -> Optional[int]:
        """The newest complete version, or None."""
        versions = self.versions()
        return versions[-1] if versions else None

    def path(self, version: int) -> str:
        """The SavedModel folder of ``version``; a RegistryError names what exists instead."""
        if self.single_version is not None:
            if version != self.single_version:
                raise ConfigError(f"--model_dir {self.uri} is a single SavedModel (version "
                                  f"{self.single_version}); version {version} is not there.")
            return self.uri
        versions = self.versions()
        if version not in versions:
            listed = ", ".join(map(str, versions)) if versions else "none"
            raise RegistryError(f"Version {version} of model '{self.model_name}' is not in {self.where} "
                                f"(complete versions there: [{listed}]).")
        return self._folder(version)

    def _folder(self, version: int) -> str:
        if self.layout == REGISTRY:
            return registry.version_uri(self.registry_uri, self.name, version)
        return dataio.join(self.uri, str(version))

    @property
    def where(self) -> str:
        """The folder that holds the versions, for messages."""
        if self.layout != REGISTRY:
            return self.uri
        return registry.model_root(self.registry_uri, self.name)


def _numbered_folders(uri: str) -> List[int]:
    if not dataio.exists(uri):
        return []
    names = os.listdir(dataio.local_path(uri)) if dataio.is_local(uri) else dataio.gfile().listdir(uri)
    return sorted(int(n.rstrip("/")) for n in names if n.rstrip("/").isascii() and n.rstrip("/").isdigit())


def _basename(uri: str) -> str:
    return posixpath.basename(uri) if "://" in uri else os.path.basename(os.path.abspath(uri))
