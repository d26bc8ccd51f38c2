"""KFP component: score a file with a pushed model version (or a training run's model)."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def batch_predict(
    data_uri: str,
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    summary: Output[Markdown],
    model: Input[Model] = None,
    registry_uri: str = "",
    model_name: str = "",
    version: str = "latest",
    output_uri: str = "",
    output_format: str = "parquet",
    id_columns: List[str] = [],
    beam_args: List[str] = [],
    max_error_rate: float = 0.0,
    overwrite: bool = False,
    metadata_connection: str = "",
    pipeline_name: str = "prodml-batch-prediction",
    run_id: str = "",
) -> int:
    """Scores every row of CSV, Parquet or gzipped tf.Example files with a model, on Apache Beam.

    One output row per scorable input row: the carried columns, the prediction columns
    (probability_<class> and predicted_<label>, or predicted_<label> for regression),
    model_version and request_id (<input SHA-256, 16 hex>-<file index>-<row>: the same in every
    run over the same input, for joining labels). Rows that cannot be scored go to
    <output>-dead-letters with their row, raw text and reason; more than max_error_rate of them
    fail the step after they are written.
    The predictions are published atomically (a _SUCCESS file last).

    Args:
        data_uri: CSV, Parquet or gzipped tf.Example files: a file, folder or glob (path or gfile URI).
        model: A model from a training run; or leave it out and name a registry version instead.
        registry_uri: Registry root holding <model_name>/<version>/.
        model_name: Registry model name.
        version: A version number, or latest.
        output_uri: Where to publish the predictions; empty writes them into the predictions artifact.
        output_format: parquet, csv or jsonl.
        id_columns: Input columns to carry into the output; empty carries every column.
        beam_args: Beam pipeline options (default: DirectRunner on every core of the pod).
        max_error_rate: Share of rows allowed to fail scoring (0 to 1); 0 fails on any bad row.
        overwrite: Replace a non-empty output_uri.
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        predictions: The prediction set (metadata: rows, scored, errors, output_uri, model_version, data_sha256).
        metrics: rows, scored, errors, error_rate, rows_per_second.
        summary: The run as Markdown.
        Output: The number of rows scored.
    """
    from prodml.components.batch_predict.executor import lineage_records, run_batch_predict
    from prodml.components.common.wrapper import Recorded, run_and_record

    def body() -> Recorded:
        result = run_batch_predict(
            data_uri=data_uri, output_uri=output_uri or predictions.path,
            model_dir=model.path if model is not None else "", registry_uri=registry_uri, model_name=model_name,
            version=version, output_format=output_format, id_columns=id_columns, beam_args=beam_args,
            max_error_rate=max_error_rate, overwrite=overwrite, summary_path=summary.path)
        for name in ("rows", "scored", "errors", "error_rate", "rows_per_second"):
            metrics.log_metric(name, result[name])
        inputs, outputs, parameters = lineage_records(result)
        if model is not None:
            inputs["model"] = model  # matched by its KFP URI to the training run's record
        if not output_uri:
            outputs["predictions"].uri = predictions.uri
        predictions.metadata.update(outputs["predictions"].properties)
        return Recorded(inputs=inputs, outputs=outputs, parameters=parameters, value=int(result["scored"]))

    return run_and_record("batch_predict", metadata_connection, pipeline_name, run_id, body)
