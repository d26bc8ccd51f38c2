"""KFP component: export the candidate as edge models (TFLite, ONNX) that predict the same numbers."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def export(
    model: Input[Model],
    examples: Input[Dataset],
    edge_models: Output[Model],
    metrics: Output[Metrics],
    report: Output[Markdown],
    export_formats: List[str] = [],
    max_difference: float = 1e-4,
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
):
    """Exports the candidate as edge models (TFLite, ONNX) that predict what the SavedModel predicts.

    Each format is converted from the raw-feature signature, transform included, and kept only when
    it predicts the eval rows within max_difference of the SavedModel. With no format requested it
    writes an empty edge_export.json and records nothing.

    Args:
        model: The candidate model.
        examples: The ingested (raw) examples; eval rows are the parity and latency rows.
        export_formats: Edge formats to write: tflite, onnx, or both; [] exports nothing.
        max_difference: Largest absolute difference from the SavedModel a written format may have.
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        edge_models: edge/model.tflite and edge/model.onnx (those that passed parity) and edge_export.json.
        metrics: Per format: written (1 or 0), size_bytes, max_difference, p50_ms; and saved_model_p50_ms.
        report: The export as Markdown: one row per format, with the reason it was written or not.
    """
    from prodml.components.common import keys
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.export.executor import metric_values, run_export

    def body() -> Recorded:
        result = run_export(model_dir=model.path, examples_dir=examples.path, output_dir=edge_models.path,
                            formats=export_formats, max_difference=max_difference, report_path=report.path)
        for name, value in metric_values(result).items():
            metrics.log_metric(name, value)
        edge_models.metadata.update(formats=sorted(result["written"]))
        return Recorded(
            inputs={keys.MODEL_KEY: model, keys.EXAMPLES_KEY: examples},
            outputs={keys.EDGE_MODELS_KEY: edge_models, keys.METRICS_KEY: metrics},
            parameters={"export_formats": list(export_formats), "max_difference": max_difference},
            record=bool(export_formats))

    run_and_record("export", metadata_connection, pipeline_name, run_id, body)
