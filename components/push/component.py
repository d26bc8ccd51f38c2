"""KFP component: publish a blessed model as the next registry version, with its model card."""

from typing import Dict

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def push(
    model: Input[Model],
    blessing: Input[Artifact],
    evaluation: Input[Artifact],
    examples: Input[Dataset],
    pushed_model: Output[Model],
    model_card: Output[Markdown],
    registry_uri: str,
    model_name: str,
    namespace: str = "default",
    parameters: Dict[str, str] = {},
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
) -> dict:
    """Copies a blessed model to <registry_uri>/<model_name>/<version>/ atomically; pushes nothing otherwise.

    The version is the next integer (the layout TF Serving and KServe expect). Beside the
    SavedModel it writes model_card.md, model_card.json and the KServe InferenceService manifest.

    Args:
        model: The candidate model.
        blessing: The evaluator's decision.
        evaluation: The evaluation, for the model card.
        examples: The ingested examples, whose data version goes into the model card.
        registry_uri: Registry root, a local path or a tf.io.gfile URI.
        model_name: Model name (a DNS-1123 label: it names the InferenceService too).
        namespace: Kubernetes namespace written into the InferenceService manifest.
        parameters: Pipeline parameters to record in the model card.
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        pushed_model: Points at the published version (metadata: pushed, version, pushed_destination).
        model_card: The model card as Markdown.
        Output: Run summary: run_id, metrics, blessed, reasons, pushed (version and uri, or null),
            data_version.
    """
    from prodml.components.common import lineage
    from prodml.components.common.task import run_component
    from prodml.components.push.executor import run_push

    def body() -> dict:
        result = run_push(model_dir=model.path, blessing_dir=blessing.path, evaluation_dir=evaluation.path,
                          examples_dir=examples.path, registry_uri=registry_uri, model_name=model_name,
                          run_id=run_id, parameters=parameters, namespace=namespace or "default")
        with open(model_card.path, "w", encoding="utf-8") as f:
            f.write(result["model_card"])
        pushed_model.metadata.update({"pushed": result["pushed"], "version": result["version"] or 0,
                                      "pushed_destination": result["uri"] or "", "model_name": model_name})
        data_version = result["data_version"]
        outputs = {"model_card": lineage.ArtifactRecord(model_card.uri, lineage.MARKDOWN)}
        if result["pushed"]:
            outputs["pushed_model"] = lineage.ArtifactRecord(
                result["uri"], lineage.MODEL,
                {"model_name": model_name, "version": result["version"], "registry_uri": registry_uri,
                 "data_sha256": data_version["sha256"], "run_id": run_id})
        lineage.record_execution(
            metadata_connection, "push", pipeline_name, run_id,
            inputs={"model": lineage.ArtifactRecord(model.uri, lineage.MODEL),
                    "blessing": lineage.ArtifactRecord(blessing.uri, lineage.BLESSING),
                    "evaluation": lineage.ArtifactRecord(evaluation.uri, lineage.EVALUATION),
                    "examples": lineage.ArtifactRecord(examples.uri, lineage.DATASET)},
            outputs=outputs,
            parameters={"registry_uri": registry_uri, "model_name": model_name, "pushed": result["pushed"]})
        return {"run_id": run_id, "metrics": result["metrics"], "blessed": result["blessed"],
                "reasons": result["reasons"],
                "pushed": {"version": result["version"], "uri": result["uri"]} if result["pushed"] else None,
                "data_version": {"sha256": data_version["sha256"], "source_uri": data_version["source_uri"],
                                 "row_counts": data_version["row_counts"]}}

    return run_component("push", body)
