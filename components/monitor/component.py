"""KFP component: monitor a window of served traffic against the served version's training and evaluation."""

from typing import Dict

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Metrics, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def monitor(
    traffic_uri: str,
    registry_uri: str,
    model_name: str,
    monitoring: Output[Artifact],
    metrics: Output[Metrics],
    monitoring_view: Output[HTML],
    summary: Output[Markdown],
    version: str = "latest",
    metadata_connection: str = "",
    labels_uri: str = "",
    join_key: str = "",
    business_module: str = "",
    window_start: str = "",
    window_end: str = "",
    thresholds: Dict[str, float] = {},
    pipeline_name: str = "prodml-monitoring",
    run_id: str = "",
) -> bool:
    """Measures drift, skew, live quality and business metrics of served traffic; decides whether to retrain.

    The served version's training statistics, schema and evaluation are found through the registry
    and ML Metadata. Writes monitoring.json (every score and the decision), a self-contained HTML
    report and a Markdown summary; records the run in ML Metadata linked to the model version.

    Args:
        traffic_uri: Request-log file (rotated files read too), folder, glob, CloudEvents file, or
            batch-prediction output (path or gfile URI).
        registry_uri: Registry root holding <model_name>/<version>/.
        model_name: The served model.
        version: The served version, or latest.
        metadata_connection: ML Metadata, where the version's training statistics, schema and
            evaluation are found through lineage, and this run is recorded.
        labels_uri: CSV/Parquet labels with the join key and the label column (optional).
        join_key: Column joining labels to traffic: a pass-through key or request_id.
        business_module: Python file defining business_metrics(features, predictions, labels) -> dict.
        window_start: ISO time; rows before it are left out.
        window_end: ISO time; rows at or after it are left out.
        thresholds: Overrides of the retraining bounds (js, linf, psi, quality_tolerance,
            min_labelled_rows, min_label_match_rate, null_rate_change).
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        monitoring: monitoring.json (every score and the decision), report.html, summary.md.
        metrics: Every drift score (<feature>.js|linf|psi), rows, label match rate, live quality.
        monitoring_view: The report as self-contained HTML.
        summary: The run as Markdown.
        Output: Whether to retrain.
    """
    from prodml.components.common import keys
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.monitor.executor import flat_metrics, lineage_records, run_monitor

    def body() -> Recorded:
        result = run_monitor(traffic_uri, registry_uri, model_name, monitoring.path, version=version or "latest",
                             metadata_connection=metadata_connection, labels_uri=labels_uri, join_key=join_key,
                             business_module=business_module, window_start=window_start, window_end=window_end,
                             thresholds=dict(thresholds), run_id=run_id, record_lineage=False,
                             report_path=monitoring_view.path, summary_path=summary.path)
        for name, value in flat_metrics(result).items():
            metrics.log_metric(name, value)
        inputs, outputs, parameters = lineage_records(result, monitoring.uri, traffic_uri, labels_uri)
        outputs[keys.MONITORING_KEY].uri = monitoring.uri
        monitoring.metadata.update(outputs[keys.MONITORING_KEY].properties)
        outputs.update({keys.METRICS_KEY: metrics, keys.MONITORING_VIEW_KEY: monitoring_view,
                        keys.SUMMARY_KEY: summary})
        return Recorded(inputs=inputs, outputs=outputs, parameters=parameters, value=bool(result["retrain"]))

    return run_and_record("monitor", metadata_connection, pipeline_name, run_id, body)
