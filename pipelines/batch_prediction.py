"""The batch prediction pipeline: score a file with a pushed model version, with lineage.

One step, :func:`batch_predict`, so that a nightly schedule is one command::

    prodml submit --pipeline batch-prediction --recurring '0 2 * * *' \\
        --param data_uri=gs://bucket/trips/latest/ --param model_name=chicago-taxi \\
        --param registry_uri=gs://bucket/registry --param output_uri=gs://bucket/scored/nightly \\
        --param overwrite=true

Each run reads the latest pushed version (or ``version``) and publishes the predictions at
``output_uri`` (replacing the previous night's with ``overwrite``), or into the step's output
artifact when ``output_uri`` is empty.
"""

import datetime
import os
import uuid
from typing import Any, Dict, List, Optional

from kfp import dsl
from kfp.dsl import Dataset

from prodml.components.batch_predict.component import batch_predict
from prodml.components.batch_predict.executor import PIPELINE_NAME
from prodml.components.common import dataio
from prodml.pipelines.training import CLUSTER_METADATA


@dsl.pipeline(name=PIPELINE_NAME, description=(
    "Scores CSV, Parquet or tf.Example files with a model version from the registry on Apache Beam: one "
    "output row per input row with the model version, bad rows to a dead-letter folder, atomic publish, "
    "and lineage from the model version and the data's SHA-256 to the predictions in ML Metadata."))
def batch_prediction_pipeline(
    data_uri: str,
    model_name: str,
    registry_uri: str,
    version: str = "latest",
    output_uri: str = "",
    output_format: str = "parquet",
    id_columns: List[str] = [],
    beam_args: List[str] = [],
    max_error_rate: float = 0.0,
    overwrite: bool = False,
    metadata_connection: str = CLUSTER_METADATA,
) -> Dataset:
    """Batch prediction with a registry model version.

    Args:
        data_uri: CSV, Parquet or gzipped tf.Example files: a file, folder or glob (gfile URI).
        model_name: Registry model name.
        registry_uri: Registry root.
        version: A version number, or latest.
        output_uri: Where to publish the predictions; empty keeps them in the step's artifact.
        output_format: parquet, csv or jsonl.
        id_columns: Input columns to carry into the output; empty carries every column.
        beam_args: Beam options, e.g. ["--runner=DataflowRunner", "--project=P", "--region=R",
            "--temp_location=gs://B/tmp"]; default: DirectRunner on every core of the pod.
        max_error_rate: Share of rows allowed to fail scoring; 0 fails on any bad row.
        overwrite: Replace a non-empty output_uri (a nightly schedule writing one location).
        metadata_connection: ML Metadata connection.
    """
    step = batch_predict(
        data_uri=data_uri, registry_uri=registry_uri, model_name=model_name, version=version,
        output_uri=output_uri, output_format=output_format, id_columns=id_columns, beam_args=beam_args,
        max_error_rate=max_error_rate, overwrite=overwrite, metadata_connection=metadata_connection,
        pipeline_name=PIPELINE_NAME, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    step.set_display_name("batch-predict")
    return step.outputs["predictions"]


def run_batch_prediction(data_uri: str, model_name: str, root: Optional[str] = None, version: str = "latest",
                         output_uri: str = "", **options: Any) -> Dict[str, Any]:
    """Scores ``data_uri`` on this machine with a version from the local registry, and records its lineage.

    What ``prodml run batch-predict`` runs: the executor directly (no kfp.local: the Beam job is the
    parallel part), then one ML Metadata execution in ``<root>/metadata.sqlite`` linking the model
    version and the data (with its SHA-256) to the predictions, under the run context
    ``batch-<time>-<id>``. ``output_uri`` defaults to
    ``<root>/predictions/<model_name>/<UTC time>``. ``options`` go to ``run_batch_predict``.
    Returns its result with ``run_id`` and ``metadata_db`` added.
    """
    from prodml.components.batch_predict.executor import lineage_records, run_batch_predict
    from prodml.components.common import lineage
    from prodml.pipelines.local import prepare_root

    local_root = prepare_root(root)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"batch-{stamp}-{uuid.uuid4().hex[:6]}"
    output_uri = output_uri or os.path.join(local_root.path, "predictions", model_name, stamp)
    if dataio.is_local(output_uri):
        output_uri = os.path.abspath(output_uri)
    if dataio.is_local(data_uri) and not any(c in data_uri for c in "*?["):
        data_uri = os.path.abspath(data_uri)
    result = run_batch_predict(data_uri, output_uri, registry_uri=local_root.registry, model_name=model_name,
                               version=version, **options)
    inputs, outputs, parameters = lineage_records(result)
    lineage.record_execution(local_root.metadata_connection, "batch_predict", PIPELINE_NAME, run_id,
                             inputs=inputs, outputs=outputs, parameters=parameters)
    return {**result, "run_id": run_id, "metadata_db": local_root.metadata_db}
