"""KFP component: evaluate the candidate on the eval split and decide whether it is blessed."""

from typing import Dict

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    examples: Input[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    evaluation: Output[Artifact],
    blessing: Output[Artifact],
    report: Output[Markdown],
    registry_uri: str = "",
    model_name: str = "",
    slice_feature: str = "",
    thresholds: Dict[str, float] = {},
    tolerance: float = 0.01,
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
) -> bool:
    """Computes eval-split metrics through the exported serving path and blesses the candidate.

    Blessed means: it beats the trivial baseline (majority class or mean), meets every absolute
    threshold, and is no worse than the currently pushed model by more than the tolerance.

    Args:
        model: The candidate model.
        examples: The ingested (raw) examples; the eval split is used.
        registry_uri: Registry holding the currently pushed model; empty skips that comparison.
        model_name: Model name in the registry.
        slice_feature: A raw feature to compute metrics per value of.
        thresholds: Absolute bounds, e.g. {"auc": 0.9} (minimum) or {"rmse": 3.0} (maximum).
        tolerance: How far the candidate may fall behind the pushed model on the key metric.
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        metrics: Scalar metrics (auc, accuracy, log_loss, precision, recall; or rmse, mae).
        classification_metrics: Confusion matrix and ROC curve (classification only).
        evaluation: evaluation.json with overall metrics, slices and the comparison with the pushed model.
        blessing: blessing.json with the decision and its reasons.
        report: The evaluation as Markdown, with metrics per slice.
        Output: Whether the candidate is blessed.
    """
    from prodml.components.common import keys
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.evaluate.executor import run_evaluate

    def body() -> Recorded:
        result = run_evaluate(model_dir=model.path, examples_dir=examples.path,
                              evaluation_dir=evaluation.path, blessing_dir=blessing.path,
                              registry_uri=registry_uri, model_name=model_name,
                              slice_feature=slice_feature, thresholds=thresholds, tolerance=tolerance,
                              report_path=report.path)
        for name, value in result["metrics"].items():
            metrics.log_metric(name, value)
        if result.get("confusion_matrix"):
            cm = result["confusion_matrix"]
            classification_metrics.log_confusion_matrix(cm["labels"], cm["matrix"])
        if result.get("roc"):
            roc = result["roc"]
            classification_metrics.log_roc_curve([p["fpr"] for p in roc], [p["tpr"] for p in roc],
                                                 [p["threshold"] for p in roc])
        blessing.metadata.update(blessed=result["blessed"], reasons=result["reasons"])
        return Recorded(
            inputs={keys.MODEL_KEY: model, keys.EXAMPLES_KEY: examples},
            outputs={keys.METRICS_KEY: metrics, keys.EVALUATION_KEY: evaluation, keys.BLESSING_KEY: blessing},
            parameters={"slice_feature": slice_feature, "thresholds": thresholds, "tolerance": tolerance},
            value=bool(result["blessed"]))

    return run_and_record("evaluate", metadata_connection, pipeline_name, run_id, body)
