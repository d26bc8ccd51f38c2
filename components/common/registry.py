"""The model registry: ``<registry>/<model_name>/<version>/`` with integer versions.

This is the layout TF Serving and KServe's TensorFlow runtime expect. A version becomes
visible only when complete: it is staged under a hidden name beside the versions and then
renamed, so a crash leaves at most a ``.staging-*`` folder that no server reads.
"""

import errno
import os
import re
import shutil
import uuid
from typing import Callable, List, Optional

from prodml.components.common import dataio, keys
from prodml.components.common.errors import RegistryError

_VERSION = re.compile(r"^[0-9]+$")
STAGING_PREFIX = ".staging-"
_WRITTEN_LAST = (keys.MODEL_CARD_MD, keys.MODEL_CARD_JSON)


def model_root(registry_uri: str, model_name: str) -> str:
    return dataio.join(registry_uri, model_name)


def version_uri(registry_uri: str, model_name: str, version: int) -> str:
    return dataio.join(registry_uri, model_name, str(version))


def list_versions(registry_uri: str, model_name: str) -> List[int]:
    """Published versions, ascending. Staging folders are not versions."""
    root = model_root(registry_uri, model_name)
    if not dataio.exists(root):
        return []
    if dataio.is_local(root):
        names = os.listdir(dataio.local_path(root))
    else:
        names = [n.rstrip("/") for n in dataio.gfile().listdir(root)]
    return sorted(int(n) for n in names if _VERSION.match(n))


def latest_version(registry_uri: str, model_name: str) -> Optional[int]:
    versions = list_versions(registry_uri, model_name)
    return versions[-1] if versions else None


def publish(registry_uri: str, model_name: str, fill: Callable[[str], None], max_attempts: int = 20,
            stamp: Optional[Callable[[str, int], None]] = None) -> int:
    """Publishes a new version atomically and returns its number.

    ``fill(staging_dir)`` writes the version's whole content into a staging folder. The folder
    is then renamed to the next free integer; if another pusher took that number first, the
    next one is tried. ``stamp(staging_dir, version)``, if given, runs before each attempt to
    write the (small) files that name the version, so they always match the folder's final name.
    Works atomically on local and POSIX file systems; on object stores (gs://, s3://) a rename
    is a copy, so readers should only trust versions with a model card.
    """
    root = model_root(registry_uri, model_name)
    try:
        dataio.makedirs(root)
    except OSError as e:
        raise RegistryError(f"Cannot create the registry folder {root}: {e.strerror or e}. "
                            "Check that the registry path is writable.") from e
    staging = dataio.join(root, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")
    try:
        fill(staging)
        for _ in range(max_attempts):
            version = (latest_version(registry_uri, model_name) or 0) + 1
            target = version_uri(registry_uri, model_name, version)
            if stamp is not None:
                stamp(staging, version)
            try:
                _rename_no_overwrite(staging, target)
                return version
            except FileExistsError:
                continue
        raise RegistryError(f"Could not claim a new version under {root} after {max_attempts} attempts: "
                            "other pushers keep taking the next number.")
    finally:
        _remove_tree(staging)


def _rename_no_overwrite(src: str, dst: str) -> None:
    if dataio.is_local(src):
        try:
            # Atomic on POSIX; fails when a concurrent pusher already filled dst.
            os.rename(dataio.local_path(src), dataio.local_path(dst))
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(dst) from e
            raise
        return
    if dataio.gfile().exists(dst):
        raise FileExistsError(dst)
    # Object stores have no folder rename (gfile's is a per-object copy on GCS, absent on some
    # others): copy file by file, model cards last, so that a version with a model card is complete.
    try:
        for relative in sorted(dataio.list_files(src), key=lambda name: (name in _WRITTEN_LAST, name)):
            dataio.copy_file(dataio.join(src, relative), dataio.join(dst, relative))
    except BaseException:
        _remove_tree(dst)
        raise


def _remove_tree(uri: str) -> None:
    if dataio.is_local(uri):
        shutil.rmtree(dataio.local_path(uri), ignore_errors=True)
    elif dataio.gfile().exists(uri):
        dataio.gfile().rmtree(uri)
