"""KFP component: publish a blessed model as the next registry version, with its model card."""

from typing import Dict

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def push(
    model: Input[Model],
    blessing: Input[Artifact],
    infra_blessing: Input[Artifact],
    evaluation: Input[Artifact],
    examples: Input[Dataset],
    pushed_model: Output[Model],
    model_card: Output[Markdown],
    registry_uri: str,
    model_name: str,
    namespace: str = "default",
    runtime: str = "prodml",
    parameters: Dict[str, str] = {},
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
    edge_models: Input[Model] = None,
):
    """Copies a blessed and infra-blessed model to <registry_uri>/<model_name>/<version>/ atomically; pushes
    nothing otherwise.

    The version is the next integer (the layout TF Serving and KServe expect). Beside the
    SavedModel it writes model_card.md, model_card.json and the KServe InferenceService manifest
    that deploy applies.

    Args:
        model: The candidate model.
        blessing: The evaluator's decision.
        infra_blessing: infra_validate's decision (the model loads and answers in the serving runtime).
        evaluation: The evaluation, for the model card.
        examples: The ingested examples, whose data version goes into the model card.
        registry_uri: Registry root, a local path or a tf.io.gfile URI.
        model_name: Model name (a DNS-1123 label: it names the InferenceService too).
        namespace: Kubernetes namespace written into the InferenceService manifest.
        runtime: Serving runtime of the InferenceService manifest: prodml (our predictor) or tensorflow
            (KServe's TF Serving).
        parameters: Pipeline parameters to record in the model card.
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.
        edge_models: export's edge models (optional): those that passed parity go into the version as
            edge/model.tflite and edge/model.onnx, and the model card lists every format.

    Returns:
        pushed_model: Points at the published version (metadata: pushed, version, pushed_destination,
            model_name, run_id).
        model_card: The model card as Markdown (or why nothing was pushed).
    """
    from prodml.components.common import keys, lineage
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.push.executor import run_push

    def body() -> Recorded:
        result = run_push(model_dir=model.path, blessing_dir=blessing.path, evaluation_dir=evaluation.path,
                          examples_dir=examples.path, infra_blessing_dir=infra_blessing.path,
                          registry_uri=registry_uri, model_name=model_name,
                          run_id=run_id, parameters=parameters, namespace=namespace or "default",
                          runtime=runtime, card_path=model_card.path,
                          edge_models_dir=edge_models.path if edge_models else "")
        pushed_model.metadata.update({"pushed": result["pushed"], "version": result["version"] or 0,
                                      "pushed_destination": result["uri"] or "", "model_name": model_name,
                                      "run_id": run_id})
        outputs = {keys.MODEL_CARD_KEY: model_card}
        if result["pushed"]:
            outputs[keys.PUSHED_MODEL_KEY] = lineage.ArtifactRecord(
                result["uri"], lineage.MODEL,
                {"model_name": model_name, "version": result["version"], "registry_uri": registry_uri,
                 "data_sha256": result["data_sha256"], "run_id": run_id})
        return Recorded(
            inputs={keys.MODEL_KEY: model, keys.BLESSING_KEY: blessing, keys.INFRA_BLESSING_KEY: infra_blessing,
                    keys.EVALUATION_KEY: evaluation, keys.EXAMPLES_KEY: examples,
                    **({keys.EDGE_MODELS_KEY: edge_models} if edge_models else {})},
            outputs=outputs,
            parameters={"registry_uri": registry_uri, "model_name": model_name, "pushed": result["pushed"]})

    run_and_record("push", metadata_connection, pipeline_name, run_id, body)
