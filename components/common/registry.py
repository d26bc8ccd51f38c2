"""The model registry: ``<registry>/<model_name>/<version>/`` with integer versions.

This is the layout TF Serving and KServe's TensorFlow runtime expect. A version is visible
only when it is complete: its completion marker (``keys.VERSION_COMPLETE_FILE``) is the last
file written, and :func:`list_versions` / :func:`latest_version` (and so evaluate, serving and
``prodml lineage``) ignore a numbered folder without it.

Claiming a number works the same on a local disk and on object stores (gs://, s3://, any
``tf.io.gfile`` scheme), which have neither an atomic folder rename nor an exclusive create:
a pusher writes ``<model>/.claim-<version>-<uuid>``, then lists the claims of that version.
If any other claim is there, or the version folder already holds files, it deletes its own
claim and tries the next free number after a random backoff. Under linearizable writes and
listings (local POSIX, GCS, S3) two pushers can both lose a number but never both win it. A
claim is deleted only after the marker is written, so a crashed pusher's claim (and its
incomplete folder) only burns a number; ``prodml gc`` removes them.

Publishing: on a local disk the version is staged in ``.staging-<uuid>`` (marker included)
and renamed into place, so it appears whole. On object stores the files are written into
the claimed folder directly and the marker goes last.

Versions written before markers existed: a local version folder holding ``model_card.json``
counts as complete (older prodml published local versions by an atomic rename, model cards
included). On object stores, where older prodml copied file by file, a version needs the marker.
"""

import datetime
import errno
import json
import os
import random
import re
import shutil
import socket
import time
import uuid
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from prodml.components.common import dataio, faults, keys
from prodml.components.common.errors import RegistryError
from prodml.components.common.names import check_model_name

_VERSION = re.compile(r"^[0-9]+$")
_CLAIM = re.compile(r"^\.claim-(?P<version>[0-9]+)-(?P<token>[0-9a-f]+)$")
STAGING_PREFIX = ".staging-"
CLAIM_PREFIX = ".claim-"
MARKER = keys.VERSION_COMPLETE_FILE
_LEGACY_MARKER = keys.MODEL_CARD_JSON


class Claim(NamedTuple):
    """A pusher's claim on a version number: ``<model>/.claim-<version>-<token>``."""

    version: int
    uri: str


def model_root(registry_uri: str, model_name: str) -> str:
    """``<registry>/<model_name>``; the name must be a DNS-1123 label (one path segment)."""
    return dataio.join(registry_uri, check_model_name(model_name))


def version_uri(registry_uri: str, model_name: str, version: int) -> str:
    return dataio.join(model_root(registry_uri, model_name), str(version))


def list_versions(registry_uri: str, model_name: str) -> List[int]:
    """Complete versions, ascending. Staging folders and versions without a marker are not versions."""
    root = model_root(registry_uri, model_name)
    return [v for v in version_folders(registry_uri, model_name) if is_complete(dataio.join(root, str(v)))]


def latest_version(registry_uri: str, model_name: str) -> Optional[int]:
    """The newest complete version, or None."""
    versions = list_versions(registry_uri, model_name)
    return versions[-1] if versions else None


def version_folders(registry_uri: str, model_name: str) -> List[int]:
    """Every numbered folder, complete or not, ascending (a number taken by a pusher, even a dead one)."""
    return sorted(int(n) for n in _listdir(model_root(registry_uri, model_name)) if _VERSION.match(n))


def is_complete(version_dir: str) -> bool:
    """True when the version folder holds its completion marker (or is a pre-marker local version)."""
    if dataio.exists(dataio.join(version_dir, MARKER)):
        return True
    return dataio.is_local(version_dir) and dataio.exists(dataio.join(version_dir, _LEGACY_MARKER))


def read_marker(registry_uri: str, model_name: str, version: int) -> Dict:
    """The completion marker of a version: model_name, version, completed, files, run_id, host, pid.

    Empty for a pre-marker version.
    """
    return read_folder_marker(version_uri(registry_uri, model_name, version))


def read_folder_marker(version_dir: str) -> Dict:
    """The completion marker of a version folder given by its path; empty when it has none."""
    path = dataio.join(version_dir, MARKER)
    return dataio.read_json(path) if dataio.exists(path) else {}


def list_claims(registry_uri: str, model_name: str) -> List[Claim]:
    """Claims present beside the versions, live or stale."""
    folder = model_root(registry_uri, model_name)
    found = []
    for name in _listdir(folder):
        match = _CLAIM.match(name)
        if match:
            found.append(Claim(int(match.group("version")), dataio.join(folder, name)))
    return sorted(found)


def publish(registry_uri: str, model_name: str, fill: Callable[[str], None], max_attempts: int = 20,
            stamp: Optional[Callable[[str, int], None]] = None, marker: Optional[Dict] = None) -> int:
    """Publishes a new version and returns its number; the version appears only complete.

    ``fill(folder)`` writes the version's content. ``stamp(folder, version)``, if given, then
    writes the (small) files that name the version. ``marker`` adds fields to the completion
    marker, e.g. the run that pushed the version, so that lineage can explain the version even
    if the pusher dies before recording it.
    """
    root = model_root(registry_uri, model_name)
    try:
        dataio.makedirs(root)
    except OSError as e:
        raise RegistryError(f"Cannot create the registry folder {root}: {e.strerror or e}. "
                            "Check that the registry path is writable.") from e
    local = dataio.is_local(root)
    staging = dataio.join(root, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}") if local else ""
    try:
        if local:
            fill(staging)
        floor = 0  # a number whose folder holds files even if a listing does not show it yet
        for attempt in range(max_attempts):
            claim, floor = _claim_next(registry_uri, model_name, floor)
            if claim is None:
                _backoff(attempt)
                continue
            try:
                if _write_version(root, staging, claim.version, fill, stamp, model_name, marker or {}):
                    break
            finally:
                _remove_file(claim.uri)
        else:
            raise RegistryError(f"Could not claim a new version under {root} after {max_attempts} attempts: "
                                "other pushers keep taking the next number.")
    finally:
        if local:
            _remove_tree(staging)
    faults.point("push:after_publish")
    return claim.version


def _write_version(root: str, staging: str, version: int, fill: Callable[[str], None],
                   stamp: Optional[Callable[[str, int], None]], model_name: str, marker: Dict) -> bool:
    """Writes the claimed version; False when its folder turns out to be taken (try the next number)."""
    target = dataio.join(root, str(version))
    if staging:
        if stamp is not None:
            stamp(staging, version)
        faults.point("push:before_marker")
        _write_marker(staging, model_name, version, marker)
        try:
            _rename_no_overwrite(staging, target)
        except FileExistsError:
            return False
        return True
    try:
        dataio.makedirs(target)  # a folder entry even where folders are implicit, so listings see the number
        fill(target)
        if stamp is not None:
            stamp(target, version)
        faults.point("push:before_marker")
        _write_marker(target, model_name, version, marker)
    except BaseException:
        _remove_tree(target)
        raise
    return True


def _write_marker(folder: str, model_name: str, version: int, extra: Dict) -> None:
    files = [f for f in dataio.list_files(folder) if f != MARKER and ".tmp-" not in f]
    dataio.write_json(dataio.join(folder, MARKER), {
        **extra, "model_name": model_name, "version": version, "files": files,
        "completed": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(), "pid": os.getpid()})


def _claim_next(registry_uri: str, model_name: str, floor: int = 0) -> Tuple[Optional[Claim], int]:
    """Claims the next free number above ``floor``.

    Returns (the claim, ``floor``), or (None, new floor) when another pusher claimed the
    number at the same time (the floor stays) or its folder already holds files (it rises).
    """
    claims = list_claims(registry_uri, model_name)
    taken = version_folders(registry_uri, model_name) + [c.version for c in claims] + [floor]
    version = max(taken) + 1
    root = model_root(registry_uri, model_name)
    dataio.makedirs(root)
    mine = Claim(version, dataio.join(root, f"{CLAIM_PREFIX}{version}-{uuid.uuid4().hex}"))
    _write_small(mine.uri, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                       "created": time.time()}))
    rivals = [c for c in list_claims(registry_uri, model_name) if c.version == version and c.uri != mine.uri]
    target = version_uri(registry_uri, model_name, version)
    taken_by_files = dataio.exists(target) and bool(dataio.list_files(target))
    if rivals or taken_by_files:
        _remove_file(mine.uri)
        return None, version if taken_by_files else floor
    return mine, floor


def _backoff(attempt: int) -> None:
    # Random, so that two pushers that both lost a number do not collide again in lockstep.
    time.sleep(random.uniform(0, min(1.0, 0.02 * 2 ** attempt)))


def _listdir(uri: str) -> List[str]:
    if not dataio.exists(uri):
        return []
    if dataio.is_local(uri):
        return os.listdir(dataio.local_path(uri))
    return [n.rstrip("/") for n in dataio.gfile().listdir(uri)]


def _write_small(uri: str, text: str) -> None:
    if dataio.is_local(uri):
        with open(dataio.local_path(uri), "x", encoding="utf-8") as f:
            f.write(text)
        return
    with dataio.gfile().GFile(uri, "w") as f:
        f.write(text)


def _remove_file(uri: str) -> None:
    try:
        if dataio.is_local(uri):
            os.remove(dataio.local_path(uri))
        else:
            dataio.gfile().remove(uri)
    except Exception as e:  # tf.errors.NotFoundError is not an OSError
        if dataio.exists(uri):
            raise RegistryError(f"Cannot remove {uri}: {e}") from e


def _rename_no_overwrite(src: str, dst: str) -> None:
    try:
        # Atomic on POSIX; fails when the folder already holds files (a pusher not using claims).
        os.rename(dataio.local_path(src), dataio.local_path(dst))
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(dst) from e
        raise


def remove_tree(uri: str) -> None:
    """Removes a folder and every file under it (local or gfile URI); used by ``prodml gc``."""
    _remove_tree(uri)


def _remove_tree(uri: str) -> None:
    if dataio.is_local(uri):
        shutil.rmtree(dataio.local_path(uri), ignore_errors=True)
        return
    if not dataio.exists(uri):
        return
    # File by file: some gfile schemes (ram://) drop a folder entry but keep the files under it.
    for relative in dataio.list_files(uri):
        _remove_file(dataio.join(uri, relative))
    if dataio.gfile().exists(uri):
        dataio.gfile().rmtree(uri)
