"""The lineage of a pushed model, read back from ML Metadata: from its version to its data bytes."""

from typing import Any, Dict, List, Optional

from prodml.components.common import dataio, lineage, names, registry
from prodml.components.common.errors import RegistryError

# The main line from a pushed model back to its source: (component, the input that leads further back).
_MAIN_LINE = (("push", "model"), ("train", "transformed_examples"), ("transform", "examples"),
              ("ingest", "data"))


def model_lineage(connection: str, registry_uri: str, model_name: str,
                  version: Optional[int] = None) -> Dict[str, Any]:
    """Returns the pushed version, the executions upstream of it, and its source data fingerprint.

    ``version`` None means the latest; 0 or a negative number is a ConfigError, as is a model
    name that is not a DNS-1123 label (a path separator or '..' never reaches the registry).
    """
    names.check_model_name(model_name, "model name (--model-name)")
    if names.check_version(version) is None:
        version = registry.latest_version(registry_uri, model_name)
    if version is None:
        raise RegistryError(f"No version of model '{model_name}' is pushed under {registry_uri}. "
                            "Run 'prodml run training' first, or check --root and --model-name.")
    complete = registry.list_versions(registry_uri, model_name)
    uri = registry.version_uri(registry_uri, model_name, version)
    if version not in complete and not dataio.exists(uri):
        raise RegistryError(f"Model '{model_name}' has no version {version} under {registry_uri} "
                            f"(complete versions: {complete or 'none'}).")
    if version not in complete:
        raise RegistryError(f"Version {version} of '{model_name}' is not a complete version under {registry_uri} "
                            f"(complete versions: {complete or 'none'}): without its completion marker it is "
                            "still being pushed, or its pusher died ('prodml gc' removes what it left).")
    found = lineage.find_artifacts(connection, uri, lineage.MODEL)
    if not found:
        # A push killed between publishing and recording: record it from the version's marker.
        from prodml.pipelines.gc import reconcile_push

        if reconcile_push(connection, registry_uri, model_name, version):
            found = lineage.find_artifacts(connection, uri, lineage.MODEL)
    if not found:
        run_id = registry.read_marker(registry_uri, model_name, version).get("run_id")
        raise RegistryError(f"Version {version} of '{model_name}' ({uri}) has no record in ML Metadata "
                            f"({lineage.redact(connection)}); "
                            + (f"run {run_id} published it and has not recorded it (yet)." if run_id
                               else "it was not pushed by a recorded run."))
    steps = lineage.upstream(connection, found[0].id)
    by_component = {step["component"]: step for step in steps}
    chain = []
    for component, next_input in _MAIN_LINE:
        step = by_component.get(component)
        if step is None:
            break
        chain.append({"component": component, "run_id": step["run_id"],
                      "outputs": step["outputs"], "inputs": step["inputs"], "follows": next_input})
    source = chain[-1]["inputs"].get("data") if chain and chain[-1]["component"] == "ingest" else None
    return {"model_name": model_name, "version": version, "uri": uri, "chain": chain,
            "source": source, "executions": len(steps), "batch_runs": batch_runs(connection, uri)}


def batch_runs(connection: str, model_uri: str) -> List[Dict[str, Any]]:
    """The batch prediction runs that read the model at ``model_uri``, newest first.

    Each: run_id, the predictions' URI and their properties (rows, scored, errors, data_sha256, ...).
    """
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    store = lineage.connect(connection)
    model_ids = [a.id for a in store.get_artifacts_by_uri(model_uri)]
    if not model_ids:
        return []
    reading = {e.execution_id for e in store.get_events_by_artifact_ids(model_ids) if e.type == mlmd.Event.INPUT}
    runs = []
    for execution in sorted(store.get_executions_by_id(sorted(reading)), key=lambda e: e.id, reverse=True):
        props = lineage.properties_of(execution)
        if props.get("component") != "batch_predict":
            continue
        produced = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                    if e.type == mlmd.Event.OUTPUT]
        for artifact in store.get_artifacts_by_id(produced):
            runs.append({"run_id": props.get("run_id", ""), "execution_id": execution.id, "uri": artifact.uri,
                         "properties": lineage.properties_of(artifact)})
    return runs


def format_lineage(report: Dict[str, Any]) -> str:
    """A short human summary, newest first."""
    lines = [f"Lineage of {report['model_name']} v{report['version']} ({report['uri']}):"]
    produced = {"push": "pushed_model", "train": "model", "transform": "transformed_examples",
                "ingest": "examples"}
    for step in report["chain"]:
        out = step["outputs"].get(produced[step["component"]], {})
        detail = _detail(step["component"], out.get("properties", {}))
        lines.append(f"  ← {step['component']:<9} run {step['run_id'][:12]}  {out.get('uri', '')}{detail}")
    source = report["source"]
    if source:
        props = source["properties"]
        lines.append(f"  ← data      {source['uri']}  sha256 {props.get('sha256', '?')}  "
                     f"{props.get('size_bytes', '?')} bytes")
    else:
        lines.append("  (the chain back to the source data is incomplete in ML Metadata)")
    for run in report.get("batch_runs", []):
        props = run["properties"]
        lines.append(f"  → batch_predict run {run['run_id']}  {run['uri']}  {props.get('scored', '?')} of "
                     f"{props.get('rows', '?')} rows scored, {props.get('errors', '?')} dead letters, data sha256 "
                     f"{str(props.get('data_sha256', '?'))[:12]}")
    return "\n".join(lines)


def _detail(component: str, props: Dict[str, Any]) -> str:
    if component == "ingest" and "row_counts" in props:
        return f"  rows {props['row_counts']}"
    return ""


def describe_chain(report: Dict[str, Any]) -> List[str]:
    """The components on the main line, newest first (for tests and JSON output)."""
    return [step["component"] for step in report["chain"]]
