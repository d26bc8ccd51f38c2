"""KFP component: TFDV statistics, schema, anomalies and drift."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def validate(
    examples: Input[Dataset],
    statistics: Output[Artifact],
    schema: Output[Artifact],
    anomalies: Output[Markdown],
    statistics_view: Output[HTML],
    user_schema_uri: str = "",
    baseline_statistics_uri: str = "",
    fail_on_drift: bool = False,
    drift_threshold: float = 0.1,
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
):
    """Computes TFDV statistics per split, infers or applies a schema, and stops on blocking anomalies.

    Args:
        examples: The ingested examples.
        user_schema_uri: A schema.pbtxt to validate against instead of inferring one.
        baseline_statistics_uri: A previous run's statistics artifact; train drift is checked against it.
        fail_on_drift: Treat drift beyond drift_threshold as blocking.
        drift_threshold: L-infinity (categorical) / Jensen-Shannon (numeric) drift threshold.
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        statistics: DatasetFeatureStatisticsList per split (Split-<name>/FeatureStats.pb) and anomalies.pbtxt.
        schema: The schema used (schema.pbtxt): the user's, or one inferred from every split (types from train).
        anomalies: Anomalies and drift per split and feature, as Markdown.
        statistics_view: The TFDV statistics view (train vs eval) as HTML.
    """
    from prodml.components.common import keys
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.validate.executor import run_validate

    def body() -> Recorded:
        result = run_validate(examples_dir=examples.path, statistics_dir=statistics.path,
                              schema_dir=schema.path, anomalies_md_path=anomalies.path,
                              statistics_html_path=statistics_view.path,
                              user_schema_uri=user_schema_uri,
                              baseline_statistics_dir=baseline_statistics_uri,
                              fail_on_drift=fail_on_drift, drift_threshold=drift_threshold)
        schema.metadata["inferred"] = result["schema_inferred"]
        statistics.metadata["anomaly_count"] = sum(len(v) for v in result["anomalies"].values())
        inputs = {keys.EXAMPLES_KEY: examples}
        if baseline_statistics_uri:
            inputs["baseline_statistics"] = baseline_statistics_uri
        if user_schema_uri:
            inputs["user_schema"] = user_schema_uri
        return Recorded(
            inputs=inputs,
            outputs={keys.STATISTICS_KEY: statistics, keys.SCHEMA_KEY: schema, keys.ANOMALIES_KEY: anomalies,
                     keys.STATISTICS_VIEW_KEY: statistics_view},
            parameters={"fail_on_drift": fail_on_drift, "drift_threshold": drift_threshold})

    run_and_record("validate", metadata_connection, pipeline_name, run_id, body)
