"""ML Metadata lineage: one record per component execution.

Each component records its execution (type ``system.ContainerExecution``, as KFP does), its
input and output artifacts (KFP's ``system.*`` types where they fit, ``prodml.*`` otherwise),
the INPUT/OUTPUT events between them, and ``system.Pipeline`` / ``system.PipelineRun``
contexts. Inputs are matched to the artifacts that upstream steps recorded by URI, which is
what links the steps into one graph from the source bytes to the pushed model.

Connections: ``sqlite:///abs/path.db`` (local), ``mysql://user@host:3306/database``,
``grpc://metadata-grpc-service.kubeflow:8080`` (the cluster's metadata service). A MySQL
password is best left out of the string: it is then read from ``$PRODML_METADATA_PASSWORD``
(in the cluster, from a Kubernetes Secret, see ``pipelines/training.py``). A password that is
in the string never reaches a log, an error message or an MLMD property: :func:`redact`.

Writes are retried with a bounded, logged backoff when the store aborts them (SQLite's
"concurrent writes aborted" when two runs share one file, a MySQL deadlock, an unavailable
gRPC server). An execution is written in one MLMD transaction, so a killed step leaves either
its whole record or none of it.
"""

import dataclasses
import json
import os
import random
import re
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, TypeVar

from prodml.components.common.errors import ConfigError, ProdmlError
from prodml.components.common.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")

PASSWORD_ENV = "PRODML_METADATA_PASSWORD"
# scheme://user:password@ -- the user part stays, the password goes (it may hold any character but '@').
_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^@\s]*@")
WRITE_ATTEMPTS = 8
# Error texts that mean "another writer holds the store right now": worth a retry.
_BUSY = ("database is locked", "concurrent writes", "deadlock", "lock wait timeout")

EXECUTION_TYPE = "system.ContainerExecution"
PIPELINE_CONTEXT = "system.Pipeline"
RUN_CONTEXT = "system.PipelineRun"

# Artifact type names. KFP's own where they fit, so KFP's UI and other MLMD tools read them.
DATASET = "system.Dataset"
MODEL = "system.Model"
METRICS = "system.Metrics"
CLASSIFICATION_METRICS = "system.ClassificationMetrics"
HTML = "system.HTML"
MARKDOWN = "system.Markdown"
STATISTICS = "prodml.ExampleStatistics"
SCHEMA = "prodml.Schema"
TRANSFORM_GRAPH = "prodml.TransformGraph"
EVALUATION = "prodml.ModelEvaluation"
BLESSING = "prodml.ModelBlessing"
INFRA_BLESSING = "prodml.InfraBlessing"
DEPLOYMENT = "prodml.Deployment"
MONITORING = "prodml.Monitoring"


class LineageError(ProdmlError):
    """The metadata store could not record or read lineage (names the store, never its password)."""


@dataclasses.dataclass
class ArtifactRecord:
    """An artifact to record: where it is, what it is, and what is known about it."""

    uri: str
    type_name: str
    properties: Dict[str, Any] = dataclasses.field(default_factory=dict)


def connection_config(connection: str):
    """Parses a connection string into an MLMD ConnectionConfig or MetadataStoreClientConfig."""
    from ml_metadata.proto import metadata_store_pb2

    parsed = urllib.parse.urlparse(connection)
    if parsed.scheme == "sqlite":
        path = connection[len("sqlite://"):]
        if not path.startswith("/"):
            raise ConfigError(f"Metadata connection '{redact(connection)}': an SQLite path must be absolute, "
                              "as in sqlite:///home/me/prodml/metadata.sqlite.")
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        return config
    if parsed.scheme == "mysql":
        config = metadata_store_pb2.ConnectionConfig()
        config.mysql.host = parsed.hostname or "localhost"
        config.mysql.port = parsed.port or 3306
        config.mysql.database = parsed.path.lstrip("/") or "metadb"
        config.mysql.user = urllib.parse.unquote(parsed.username or "root")
        config.mysql.password = urllib.parse.unquote(parsed.password or "") or os.environ.get(PASSWORD_ENV, "")
        return config
    if parsed.scheme == "grpc":
        config = metadata_store_pb2.MetadataStoreClientConfig()
        config.host = parsed.hostname or "metadata-grpc-service.kubeflow"
        config.port = parsed.port or 8080
        return config
    raise ConfigError(f"Metadata connection '{redact(connection)}' is not understood: use sqlite:///ABS/PATH.db, "
                      f"mysql://USER@HOST:PORT/DATABASE (password in ${PASSWORD_ENV}) or grpc://HOST:PORT.")


def redact(connection: str) -> str:
    """The text with the password of every ``scheme://user:password@host`` in it replaced by ``***``.

    Use it wherever a connection string is logged, shown or recorded.
    """
    if not isinstance(connection, str):
        return connection
    return _PASSWORD.sub(r"\1:***@", connection)


def connect(connection: str):
    """Opens the metadata store named by a connection string."""
    from ml_metadata import metadata_store

    config = connection_config(connection)

    def open_store():
        try:
            return metadata_store.MetadataStore(config)
        except RuntimeError as e:  # MLMD reports a refused connection or login as a bare RuntimeError
            if any(marker in str(e).lower() for marker in _BUSY):  # another writer holds the store: retry
                from ml_metadata import errors

                raise errors.AbortedError(str(e)) from e
            hint = (f" Check the host, port, database, user and password (in the URL or ${PASSWORD_ENV})."
                    if connection.startswith("mysql") else "")
            raise LineageError(f"Cannot open ML Metadata at {redact(connection)}: {_first_line(e)}.{hint}") from e

    return with_retries(f"opening ML Metadata at {redact(connection)}", open_store)


def with_retries(what: str, call: Callable[[], T], attempts: int = WRITE_ATTEMPTS) -> T:
    """Runs ``call``, retrying with a bounded, jittered, logged backoff while the store aborts it.

    A transient failure that outlasts ``attempts`` becomes a LineageError naming ``what``; any
    other MLMD error passes through unchanged.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as e:  # MLMD's StatusError subclasses; decided by _transient
            if not _transient(e):
                raise
            if attempt == attempts:
                raise LineageError(f"{what} failed {attempts} times: {_first_line(e)}. Another run may be "
                                   "holding the metadata store; retry when it has finished.") from e
            delay = min(5.0, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            log.warning("%s: %s; retrying in %.1fs (attempt %d of %d)", what, _first_line(e), delay,
                        attempt + 1, attempts)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _transient(error: Exception) -> bool:
    from ml_metadata import errors

    if isinstance(error, (errors.AbortedError, errors.UnavailableError, errors.DeadlineExceededError)):
        return True
    text = str(error).lower()
    return isinstance(error, errors.StatusError) and any(marker in text for marker in _BUSY)


def _first_line(error: Exception) -> str:
    return redact(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)


def record_execution(connection: str, component: str, pipeline_name: str, run_id: str,
                     inputs: Dict[str, ArtifactRecord], outputs: Dict[str, ArtifactRecord],
                     parameters: Optional[Dict[str, Any]] = None) -> int:
    """Records one completed component execution and returns its MLMD id.

    ``inputs`` and ``outputs`` map the component's input/output names to artifacts. An input
    already recorded (same URI and type) is reused, which links this execution to the one
    that produced it. Does nothing when ``connection`` is empty.
    """
    if not connection:
        return 0
    return with_retries(f"recording the {component} execution of run {run_id} in {redact(connection)}",
                        lambda: _record(connection, component, pipeline_name, run_id, inputs, outputs,
                                        parameters))


def _record(connection: str, component: str, pipeline_name: str, run_id: str,
            inputs: Dict[str, ArtifactRecord], outputs: Dict[str, ArtifactRecord],
            parameters: Optional[Dict[str, Any]]) -> int:
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    store = connect(connection)
    # Contexts and their link first: the execution, its artifacts and events then land in one
    # transaction (put_execution), so a kill leaves no execution without its inputs and outputs.
    pipeline_ctx = _context(store, PIPELINE_CONTEXT, pipeline_name)
    run_ctx = _context(store, RUN_CONTEXT, run_id, {"pipeline_name": pipeline_name})
    pipeline_ctx.id, run_ctx.id = _put_contexts(store, [pipeline_ctx, run_ctx])
    _link_run_to_pipeline(store, pipeline_ctx.id, run_ctx.id)

    execution = mlmd.Execution(
        type_id=_type_id(store, "execution", EXECUTION_TYPE),
        name=f"{run_id}.{component}.{time.time_ns()}",
        last_known_state=mlmd.Execution.COMPLETE)
    _set_properties(execution.custom_properties, {
        "component": component, "task_name": component, "display_name": component,
        "pipeline_name": pipeline_name, "run_id": run_id, **(parameters or {})})

    pairs = []
    for key, record in inputs.items():
        pairs.append((_input_artifact(store, record), _event(mlmd.Event.INPUT, key)))
    for key, record in outputs.items():
        pairs.append((_new_artifact(store, record, key), _event(mlmd.Event.OUTPUT, key)))
    execution_id, _, _ = store.put_execution(execution, pairs, [pipeline_ctx, run_ctx],
                                             reuse_context_if_already_exist=True)
    log.debug("recorded %s execution %d in %s", component, execution_id, redact(connection))
    return execution_id


def find_artifacts(connection: str, uri: str, type_name: str = "") -> List[Any]:
    """Artifacts recorded with this URI (and type, if given), newest first."""
    store = connect(connection)
    found = store.get_artifacts_by_uri(uri)
    if type_name:
        type_id = _type_id(store, "artifact", type_name)
        found = [a for a in found if a.type_id == type_id]
    return sorted(found, key=lambda a: a.id, reverse=True)


def upstream(connection: str, artifact_id: int) -> List[Dict[str, Any]]:
    """Walks the lineage back from an artifact to the source data.

    Returns one entry per execution, newest first: its component, run id, and its input and
    output artifacts (type, URI, custom properties).
    """
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    store = connect(connection)
    types = {t.id: t.name for t in store.get_artifact_types()}
    steps, seen, frontier = [], set(), [artifact_id]
    while frontier:
        events = store.get_events_by_artifact_ids(frontier)
        producer_ids = sorted({e.execution_id for e in events if e.type == mlmd.Event.OUTPUT} - seen,
                              reverse=True)
        frontier = []
        for execution in store.get_executions_by_id(producer_ids):
            seen.add(execution.id)
            entry = _describe_execution(store, execution, types)
            frontier += [artifact["id"] for artifact in entry["inputs"].values()]
            steps.append(entry)
    return steps


def run_steps(connection: str, run_id: str) -> Dict[str, Dict[str, Any]]:
    """The executions recorded for one pipeline run, by component (the newest if one ran twice).

    Each entry is as in :func:`upstream`; empty when the run left no record.
    """
    store = connect(connection)
    context = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    if context is None:
        return {}
    types = {t.id: t.name for t in store.get_artifact_types()}
    steps = {}
    for execution in sorted(store.get_executions_by_context(context.id), key=lambda e: e.id):
        entry = _describe_execution(store, execution, types)
        steps[entry["component"]] = entry
    return steps


def _describe_execution(store, execution, types: Dict[int, str]) -> Dict[str, Any]:
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    io = store.get_events_by_execution_ids([execution.id])
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in io])}
    entry = {"execution_id": execution.id,
             "component": _value(execution.custom_properties.get("component")),
             "run_id": _value(execution.custom_properties.get("run_id")),
             "state": mlmd.Execution.State.Name(execution.last_known_state),
             "inputs": {}, "outputs": {}}
    for event in io:
        artifact = artifacts[event.artifact_id]
        key = event.path.steps[0].key if event.path.steps else str(artifact.id)
        side = "inputs" if event.type == mlmd.Event.INPUT else "outputs"
        entry[side][key] = {"id": artifact.id, "type": types.get(artifact.type_id, "?"),
                            "uri": artifact.uri, "properties": properties_of(artifact)}
    return entry


def properties_of(node) -> Dict[str, Any]:
    """Custom properties of an MLMD node as plain Python values."""
    return {k: _value(v) for k, v in node.custom_properties.items()}


def _type_id(store, kind: str, name: str) -> int:
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    proto = {"artifact": mlmd.ArtifactType, "execution": mlmd.ExecutionType,
             "context": mlmd.ContextType}[kind](name=name)
    put = {"artifact": store.put_artifact_type, "execution": store.put_execution_type,
           "context": store.put_context_type}[kind]
    return put(proto, can_add_fields=True)


def _input_artifact(store, record: ArtifactRecord):
    """The recorded artifact at this URI, unless what is known about it now differs (new bytes, say)."""
    type_id = _type_id(store, "artifact", record.type_name)
    wanted = {k: v for k, v in _plain(record.properties).items() if v is not None}
    known = [a for a in store.get_artifacts_by_uri(record.uri) if a.type_id == type_id
             and all(properties_of(a).get(k) == v for k, v in wanted.items())]
    if known:
        return max(known, key=lambda a: a.id)
    return _artifact(type_id, record, "")


def _new_artifact(store, record: ArtifactRecord, key: str):
    return _artifact(_type_id(store, "artifact", record.type_name), record, key)


def _artifact(type_id: int, record: ArtifactRecord, key: str):
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    artifact = mlmd.Artifact(type_id=type_id, uri=record.uri, state=mlmd.Artifact.LIVE)
    _set_properties(artifact.custom_properties, {"display_name": key, **record.properties}
                    if key else record.properties)
    return artifact


def _event(kind, key: str):
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    event = mlmd.Event(type=kind)
    event.path.steps.add().key = key
    return event


def _context(store, type_name: str, name: str, properties: Optional[Dict[str, Any]] = None):
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    type_id = _type_id(store, "context", type_name)
    existing = store.get_context_by_type_and_name(type_name, name)
    if existing is not None:
        return existing
    context = mlmd.Context(type_id=type_id, name=name)
    _set_properties(context.custom_properties, properties or {})
    return context


def _put_contexts(store, contexts) -> List[int]:
    """Creates the contexts that do not exist yet; a concurrent run creating the same one is fine."""
    from ml_metadata import errors

    ids = []
    for context in contexts:
        if context.id:
            ids.append(context.id)
            continue
        try:
            ids.append(store.put_contexts([context])[0])
        except errors.AlreadyExistsError:
            type_name = store.get_context_types_by_id([context.type_id])[0].name
            ids.append(store.get_context_by_type_and_name(type_name, context.name).id)
    return ids


def _link_run_to_pipeline(store, pipeline_id: int, run_id: int) -> None:
    from ml_metadata import errors
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    if all(p.id != pipeline_id for p in store.get_parent_contexts_by_context(run_id)):
        try:
            store.put_parent_contexts([mlmd.ParentContext(child_id=run_id, parent_id=pipeline_id)])
        except errors.AlreadyExistsError:  # a concurrent step of the same run linked it first
            pass


def _plain(values: Dict[str, Any]) -> Dict[str, Any]:
    """Values as they read back from MLMD (containers become JSON strings)."""
    return {k: v if isinstance(v, (bool, int, float, str)) or v is None
            else json.dumps(v, sort_keys=True, default=str) for k, v in values.items()}


def _set_properties(target, values: Dict[str, Any]) -> None:
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            target[key].bool_value = value
        elif isinstance(value, int):
            target[key].int_value = value
        elif isinstance(value, float):
            target[key].double_value = value
        elif isinstance(value, str):
            target[key].string_value = redact(value)
        else:
            target[key].string_value = redact(json.dumps(value, sort_keys=True, default=str))


def _value(value) -> Any:
    if value is None:
        return None
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None
