"""``prodml gc``: clear what killed runs and pushers leave behind, and record what they did not.

A SIGKILL (an OOM kill, a lost node, Ctrl-\\) gives a step no chance to clean up. Nothing it
leaves is ever read as a result (versions need their completion marker, MLMD records are
written in one transaction), but it takes space and, for a push killed after publishing, leaves
a version whose lineage is not recorded yet. ``prodml gc`` finds, under one local root:

- ``staging``: a pusher's ``<registry>/<model>/.staging-*`` folder;
- ``batch_staging``: a killed batch prediction's ``.<output>.staging-*`` folder under the root
  (its owner process is gone; its predictions were never published);
- ``claim``: a dead pusher's ``<registry>/<model>/.claim-<version>-*`` (it only burns a number);
- ``incomplete_version``: a numbered folder without completion marker whose pusher is gone;
- ``tmp_file``: a half-written ``*.tmp-*`` file of an atomic write;
- ``run_folder`` / ``task_folder``: a ``pipeline_root`` run folder that no recorded execution
  references (the run was killed in its first step), or, in a training run that never reached
  push, a task folder no recorded execution references (the killed step's partial output);
- ``unrecorded_push``: a complete version whose pusher died between publishing and recording:
  its push execution is recorded from the marker's run id and that run's other records.

It removes (or records) them, or only reports them with ``dry_run``. What may belong to a run
still in progress is left alone: it must be older than ``older_than`` seconds, or, for claims,
markers and staging folders, name a dead process on this host.
"""

import dataclasses
import os
import socket
import time
from typing import Dict, List, Optional

from prodml.components.common import dataio, defaults, keys, lineage, registry
from prodml.components.common.errors import ConfigError

DEFAULT_OLDER_THAN = 3600.0
TRAINING_LAST_TASK = "push"  # a training run folder whose push is recorded ran to the end


@dataclasses.dataclass
class Finding:
    """One leftover: what it is, where, why it is stale, and what gc did about it."""

    kind: str
    uri: str
    detail: str
    action: str = ""


def collect_garbage(root: Optional[str] = None, dry_run: bool = False,
                    older_than: float = DEFAULT_OLDER_THAN) -> List[Finding]:
    """Finds the leftovers under a local prodml root and, unless ``dry_run``, removes or records them."""
    from prodml.pipelines.local import prepare_root

    local_root = prepare_root(root)
    connection = local_root.metadata_connection if os.path.exists(local_root.metadata_db) else ""
    findings = []
    for model_name in _model_names(local_root.registry):
        findings += _registry_findings(local_root.registry, model_name, connection, older_than)
    findings += _batch_staging(local_root.path, older_than)
    findings += _tmp_files(local_root.path, older_than)
    if connection:
        findings += _pipeline_root_findings(local_root.pipeline_root, connection, older_than)
    for finding in findings:
        finding.action = _apply(finding, local_root, connection, dry_run)
    return findings


def format_findings(findings: List[Finding], dry_run: bool) -> str:
    """One line per leftover, then a count."""
    if not findings:
        return "Nothing to clean: no staging folders, stale claims, incomplete versions, .tmp files, " \
               "crashed run folders or unrecorded pushes."
    lines = [f"{f.action:<13} {f.kind:<18} {f.uri}  ({f.detail})" for f in findings]
    done = sum(1 for f in findings if f.action in ("removed", "recorded"))
    if dry_run:
        lines.append(f"{len(findings)} leftover(s) found; nothing changed (--dry-run).")
    else:
        lines.append(f"{done} of {len(findings)} leftover(s) removed or recorded.")
    return "\n".join(lines)


def reconcile_push(connection: str, registry_uri: str, model_name: str, version: int,
                   older_than: float = DEFAULT_OLDER_THAN) -> Optional[int]:
    """Records the push of a complete version that has no record in ML Metadata; returns the execution id.

    The version's marker names the run that pushed it; that run's ingest, train, evaluate and
    infra_validate records give the push its inputs, so lineage walks from the version back to the data as if
    push had recorded it itself. Returns None when the version has a record already, its marker
    names no run, the run left no record, or its pusher may still be recording it.
    """
    uri = registry.version_uri(registry_uri, model_name, version)
    if lineage.find_artifacts(connection, uri, lineage.MODEL):
        return None
    marker = registry.read_marker(registry_uri, model_name, version)
    run_id = marker.get("run_id")
    if not run_id or not process_gone(marker, older_than):
        return None
    steps = lineage.run_steps(connection, run_id)
    wanted = {"model": ("train", keys.MODEL_KEY, lineage.MODEL),
              "blessing": ("evaluate", keys.BLESSING_KEY, lineage.BLESSING),
              "evaluation": ("evaluate", keys.EVALUATION_KEY, lineage.EVALUATION),
              keys.INFRA_BLESSING_KEY: ("infra_validate", keys.INFRA_BLESSING_KEY, lineage.INFRA_BLESSING),
              "examples": ("ingest", keys.EXAMPLES_KEY, lineage.DATASET)}
    inputs = {}
    for key, (component, output, type_name) in wanted.items():
        found = steps.get(component, {}).get("outputs", {}).get(output)
        if found:
            inputs[key] = lineage.ArtifactRecord(found["uri"], type_name)
    if "model" not in inputs:
        return None
    examples = steps["ingest"]["outputs"][keys.EXAMPLES_KEY] if "examples" in inputs else {}
    pipeline_name = _pipeline_name(connection, run_id) or defaults.PIPELINE_NAME
    properties = {"model_name": model_name, "version": version, "registry_uri": registry_uri,
                  "data_sha256": examples.get("properties", {}).get("sha256"), "run_id": run_id,
                  "recorded_from_marker": True}
    return lineage.record_execution(
        connection, "push", pipeline_name, run_id, inputs=inputs,
        outputs={keys.PUSHED_MODEL_KEY: lineage.ArtifactRecord(uri, lineage.MODEL, properties)},
        parameters={"registry_uri": registry_uri, "model_name": model_name, "pushed": True,
                    "recorded_from_marker": True})


def process_gone(info: Dict, older_than: float = DEFAULT_OLDER_THAN) -> bool:
    """True when the process named by a claim or marker (``host``, ``pid``) cannot still be working.

    It is gone when it ran on this host and no longer exists, or when the record is older than
    ``older_than`` seconds (``created`` as epoch seconds, or the marker's ISO ``completed``).
    """
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, owned by someone else
            pass
    created = info.get("created")
    if created is None and info.get("completed"):
        import datetime

        created = datetime.datetime.fromisoformat(info["completed"]).timestamp()
    return created is not None and time.time() - float(created) > older_than


def _model_names(registry_uri: str) -> List[str]:
    if not dataio.exists(registry_uri):
        return []
    result = []
    for name in sorted(os.listdir(registry_uri)):
        try:
            registry.model_root(registry_uri, name)
        except ConfigError:  # not a model folder (not a DNS-1123 label)
            continue
        if os.path.isdir(os.path.join(registry_uri, name)):
            result.append(name)
    return result


def _registry_findings(registry_uri: str, model_name: str, connection: str, older_than: float) -> List[Finding]:
    root = registry.model_root(registry_uri, model_name)
    findings = []
    claims = registry.list_claims(registry_uri, model_name)
    live_claims, stale_claims = set(), set()
    for claim in claims:
        info = _read_claim(claim.uri)
        folder = registry.version_uri(registry_uri, model_name, claim.version)
        if registry.is_complete(folder):
            findings.append(Finding("claim", claim.uri, f"version {claim.version} is complete"))
        elif process_gone(info, older_than):
            findings.append(Finding("claim", claim.uri, f"pusher pid {info.get('pid')} on "
                                                        f"{info.get('host')} is gone; number burnt"))
            stale_claims.add(claim.version)
        else:
            live_claims.add(claim.version)
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith(registry.STAGING_PREFIX) and _older(path, older_than):
            findings.append(Finding("staging", path, f"no change for {_age(path):.0f}s"))
    complete = set(registry.list_versions(registry_uri, model_name))
    for version in registry.version_folders(registry_uri, model_name):
        folder = registry.version_uri(registry_uri, model_name, version)
        if version in complete:
            if connection and not lineage.find_artifacts(connection, folder, lineage.MODEL):
                marker = registry.read_marker(registry_uri, model_name, version)
                if marker.get("run_id") and process_gone(marker, older_than):
                    findings.append(Finding("unrecorded_push", folder,
                                            f"published by run {marker['run_id']}, push not recorded"))
        elif version in stale_claims or (version not in live_claims and _older(folder, older_than)):
            findings.append(Finding("incomplete_version", folder, "no completion marker, no live pusher"))
    return findings


def _batch_staging(root: str, older_than: float) -> List[Finding]:
    from prodml.components.batch_predict import outputs

    findings = []
    for folder, dirs, _ in os.walk(root):
        # ".<output>.staging-<id>"; a pusher's ".staging-<id>" is the registry's (see above).
        for name in [d for d in dirs if d.startswith(".") and outputs.STAGING_INFIX in d[1:]]:
            path = os.path.join(folder, name)
            owner = outputs.read_owner(path)
            if process_gone(owner, older_than) if owner else _older(path, older_than):
                who = f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "its run"
                findings.append(Finding("batch_staging", path, f"{who} is gone; never published"))
            dirs.remove(name)  # its files are part of the finding
    return findings


def _tmp_files(root: str, older_than: float) -> List[Finding]:
    findings = []
    for folder, dirs, names in os.walk(root):
        # Staging folders are judged whole (by their owner), not file by file.
        dirs[:] = [d for d in dirs if ".staging-" not in d]
        for name in names:
            path = os.path.join(folder, name)
            if ".tmp-" in name and _older(path, older_than):
                findings.append(Finding("tmp_file", path, "half-written atomic write"))
    return findings


def _pipeline_root_findings(pipeline_root: str, connection: str, older_than: float) -> List[Finding]:
    if not os.path.isdir(pipeline_root):
        return []
    store = lineage.connect(connection)
    recorded = {a.uri.rstrip("/") for a in store.get_artifacts()}
    findings = []
    for run in sorted(os.listdir(pipeline_root)):
        run_dir = os.path.join(pipeline_root, run)
        if not os.path.isdir(run_dir) or not _older(run_dir, older_than):
            continue
        tasks = sorted(t for t in os.listdir(run_dir) if os.path.isdir(os.path.join(run_dir, t)))
        referenced = {t for t in tasks if _references(recorded, os.path.join(run_dir, t))}
        if not referenced:
            findings.append(Finding("run_folder", run_dir, "no recorded execution references it"))
        elif TRAINING_LAST_TASK not in referenced:
            findings += [Finding("task_folder", os.path.join(run_dir, t),
                                 "the run stopped before push and no recorded execution references it")
                         for t in tasks if t not in referenced]
    return findings


def _references(recorded, folder: str) -> bool:
    prefix = folder.rstrip("/") + "/"
    return any(uri == folder or uri.startswith(prefix) for uri in recorded)


def _apply(finding: Finding, local_root, connection: str, dry_run: bool) -> str:
    if finding.kind == "unrecorded_push":
        if dry_run:
            return "would record"
        registry_uri, model_name, version = finding.uri.rsplit(os.sep, 2)
        recorded = reconcile_push(connection, registry_uri, model_name, int(version), older_than=0)
        return "recorded" if recorded else "not recorded"
    if dry_run:
        return "would remove"
    if os.path.isdir(finding.uri):
        registry.remove_tree(finding.uri)
    elif os.path.exists(finding.uri):
        os.remove(finding.uri)
    return "removed"


def _read_claim(uri: str) -> Dict:
    try:
        return dataio.read_json(uri)
    except (OSError, ValueError):
        return {}


def _pipeline_name(connection: str, run_id: str) -> str:
    store = lineage.connect(connection)
    context = store.get_context_by_type_and_name(lineage.RUN_CONTEXT, run_id)
    return lineage.properties_of(context).get("pipeline_name", "") if context else ""


def _newest_mtime(path: str) -> float:
    newest = os.path.getmtime(path)
    if os.path.isdir(path):
        for folder, dirs, names in os.walk(path):
            for name in dirs + names:
                try:
                    newest = max(newest, os.path.getmtime(os.path.join(folder, name)))
                except OSError:
                    pass
    return newest


def _age(path: str) -> float:
    return time.time() - _newest_mtime(path)


def _older(path: str, older_than: float) -> bool:
    """True when nothing under ``path`` changed for ``older_than`` seconds."""
    try:
        return _age(path) >= older_than
    except OSError:
        return False
