"""The one helper every ``component.py`` uses: run the executor call, then record its lineage.

A component body binds KFP types to its executor (paths in, results onto output artifacts) and
hands back a :class:`Recorded`: what it read, wrote and was given. ``run_and_record`` records
that as one ML Metadata execution and runs the whole under ``task.run_component`` (quiet logs,
one paragraph and a clean exit for user errors). Decisions, cards and summaries belong to the
executor, not to the wrapper.

Example::

    def body():
        result = run_train(...)
        model.metadata.update(result["metrics"])
        return Recorded(inputs={keys.TRANSFORM_GRAPH_KEY: transform_graph, ...},
                        outputs={keys.MODEL_KEY: model}, parameters={"epochs": epochs})

    run_and_record("train", metadata_connection, pipeline_name, run_id, body)
"""

import dataclasses
from typing import Any, Callable, Dict

from prodml.components.common import keys, lineage
from prodml.components.common.task import run_component

# The ML Metadata type of each artifact name, wherever it appears.
ARTIFACT_TYPES = {
    "data": lineage.DATASET,                     # ingest's source file(s)
    keys.EXAMPLES_KEY: lineage.DATASET,
    keys.STATISTICS_KEY: lineage.STATISTICS,
    "baseline_statistics": lineage.STATISTICS,   # validate's baseline_statistics_uri
    keys.SCHEMA_KEY: lineage.SCHEMA,
    "user_schema": lineage.SCHEMA,               # validate's user_schema_uri
    keys.ANOMALIES_KEY: lineage.MARKDOWN,
    keys.STATISTICS_VIEW_KEY: lineage.HTML,
    keys.TRANSFORM_GRAPH_KEY: lineage.TRANSFORM_GRAPH,
    keys.TRANSFORMED_EXAMPLES_KEY: lineage.DATASET,
    keys.MODEL_KEY: lineage.MODEL,
    keys.METRICS_KEY: lineage.METRICS,
    keys.CLASSIFICATION_METRICS_KEY: lineage.CLASSIFICATION_METRICS,
    keys.EVALUATION_KEY: lineage.EVALUATION,
    keys.BLESSING_KEY: lineage.BLESSING,
    keys.INFRA_BLESSING_KEY: lineage.INFRA_BLESSING,
    keys.EDGE_MODELS_KEY: lineage.MODEL,           # export's edge/ folder: TFLite, ONNX
    keys.REPORT_KEY: lineage.MARKDOWN,
    keys.PUSHED_MODEL_KEY: lineage.MODEL,
    keys.MODEL_CARD_KEY: lineage.MARKDOWN,
    keys.DEPLOYMENT_KEY: lineage.DEPLOYMENT,
    keys.DEPLOYMENT_CARD_KEY: lineage.MARKDOWN,
    keys.MONITORING_KEY: lineage.MONITORING,       # monitor: monitoring.json, report.html, summary.md
    keys.MONITORING_VIEW_KEY: lineage.HTML,
    keys.SUMMARY_KEY: lineage.MARKDOWN,
}


@dataclasses.dataclass
class Recorded:
    """What a component body hands back.

    ``inputs`` and ``outputs`` map artifact names to a KFP artifact (its URI; for outputs also
    its metadata), a URI string, or a ``lineage.ArtifactRecord`` when the recorded URI is not
    the KFP one (a registry version, a service URL). ``record=False`` records nothing: the step
    did nothing (deploy skipped).
    """

    inputs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    outputs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    parameters: Dict[str, Any] = dataclasses.field(default_factory=dict)
    value: Any = None
    record: bool = True


def run_and_record(component: str, metadata_connection: str, pipeline_name: str, run_id: str,
                   body: Callable[[], Recorded]) -> Any:
    """Runs ``body`` as component ``component``, records its lineage, and returns ``body().value``."""

    def run():
        done = body()
        if done.record:
            lineage.record_execution(
                metadata_connection, component, pipeline_name, run_id,
                inputs={name: _record(name, item, output=False) for name, item in done.inputs.items()},
                outputs={name: _record(name, item, output=True) for name, item in done.outputs.items()},
                parameters=done.parameters)
        return done.value

    return run_component(component, run)


def _record(name: str, item: Any, output: bool) -> lineage.ArtifactRecord:
    if isinstance(item, lineage.ArtifactRecord):
        return item
    if isinstance(item, str):
        return lineage.ArtifactRecord(item, ARTIFACT_TYPES[name])
    # A KFP artifact. An input is matched by URI to what its producer recorded, with its properties.
    return lineage.ArtifactRecord(item.uri, ARTIFACT_TYPES[name], dict(item.metadata) if output else {})
