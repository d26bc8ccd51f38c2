"""The monitoring pipeline for a cluster: monitor the served traffic, then retrain only if the monitor says so.

Compiled by ``prodml compile`` (``manifests/pipelines/monitoring_pipeline.yaml``) and scheduled with::

    prodml submit --pipeline monitoring --recurring '0 3 * * *' \\
        --param traffic_uri=gs://bucket/logs/chicago-taxi/ --param model_name=chicago-taxi \\
        --param registry_uri=gs://bucket/registry --param labels_uri=gs://bucket/labels/ \\
        --param join_key=trip_id --param label=big_tipper --param retrain_data_uri=gs://bucket/labelled/

The monitor step writes its report and decision; ``dsl.If`` on its ``retrain`` output runs the whole
training pipeline (ingest ... push, deploy) on ``retrain_data_uri`` as a nested pipeline, so a
retrained version is blessed against the pushed one on the new data's eval split and pushed only
then. To train on old and new data while evaluating on the new only, point ``retrain_data_uri`` at
files holding both and mark the old rows ``train`` in a ``split_column`` (what ``prodml monitor
--with-old-data`` does locally).

``kfp.local`` cannot run ``dsl.If``: locally, ``prodml monitor`` runs the same two stages
(:func:`prodml.pipelines.retrain.monitor_and_retrain`).
"""

from typing import Dict, List

from kfp import dsl

from prodml.components.common import defaults, keys
from prodml.components.monitor.component import monitor
from prodml.pipelines.training import CLUSTER_METADATA, _password_from_secret, training_pipeline

PIPELINE_NAME = defaults.MONITOR_PIPELINE_NAME


@dsl.pipeline(name=PIPELINE_NAME, description=(
    "Monitors a window of a served model's traffic (drift and skew against its training statistics, "
    "prediction drift, live quality from late labels, business metrics) and, when the monitor decides to "
    "retrain, runs the training pipeline on the new labelled data: the candidate is blessed against the "
    "pushed version on the new data and pushed only then."))
def monitoring_pipeline(
    traffic_uri: str,
    model_name: str,
    registry_uri: str,
    label: str,
    retrain_data_uri: str,
    version: str = "latest",
    labels_uri: str = "",
    join_key: str = "",
    business_module: str = "",
    window_start: str = "",
    window_end: str = "",
    monitor_thresholds: Dict[str, float] = {},
    problem_type: str = keys.AUTO,
    drop_columns: List[str] = [],
    split_column: str = "",
    preprocessing_module: str = "",
    trainer_module: str = "",
    epochs: int = defaults.EPOCHS,
    batch_size: int = defaults.BATCH_SIZE,
    seed: int = defaults.SEED,
    thresholds: Dict[str, float] = {},
    tolerance: float = defaults.TOLERANCE,
    deploy_namespace: str = "",
    canary_traffic_percent: int = 100,
    metadata_connection: str = CLUSTER_METADATA,
):
    """Monitor, then retrain if needed.

    Args:
        traffic_uri: Request-log files (folder, glob, rotated files), CloudEvents files or batch-prediction outputs.
        model_name: The served model's registry name.
        registry_uri: Registry root.
        label: The label column of the retraining data.
        retrain_data_uri: New labelled data (CSV or Parquet file, folder or glob) to retrain on.
        version: The served version, or latest.
        labels_uri: Late labels (CSV/Parquet with the join key and the label) for live quality.
        join_key: Column joining labels to traffic (a logged pass-through key, or request_id).
        business_module: Python file defining business_metrics(features, predictions, labels) -> dict.
        window_start: ISO time; traffic before it is left out.
        window_end: ISO time; traffic at or after it is left out.
        monitor_thresholds: Overrides of the monitor's retraining bounds (js, linf, psi, quality_tolerance, ...).
        problem_type: auto, binary, multiclass or regression.
        drop_columns: Columns of the retraining data to leave out.
        split_column: A column naming each row's split (old rows: train); empty rows are split by hash.
        preprocessing_module: A file defining preprocessing_fn; empty generates one.
        trainer_module: A file defining run_fn; empty uses the default model.
        epochs: Maximum training epochs.
        batch_size: Training batch size.
        seed: Random seed.
        thresholds: Absolute metric bounds for blessing, e.g. {"auc": 0.9}.
        tolerance: How far the candidate may fall behind the pushed model.
        deploy_namespace: Kubernetes namespace to deploy to; empty skips deployment.
        canary_traffic_percent: Traffic share for a newly deployed version.
        metadata_connection: ML Metadata connection string.
    """
    monitor_task = monitor(
        traffic_uri=traffic_uri, registry_uri=registry_uri, model_name=model_name, version=version,
        labels_uri=labels_uri, join_key=join_key, business_module=business_module, window_start=window_start,
        window_end=window_end, thresholds=monitor_thresholds, metadata_connection=metadata_connection,
        pipeline_name=PIPELINE_NAME, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    monitor_task.set_display_name("Monitor traffic")
    _password_from_secret(monitor_task)

    with dsl.If(monitor_task.outputs["Output"] == True, name="retrain"):  # noqa: E712 - KFP builds the condition
        retrain_task = training_pipeline(
            data_uri=retrain_data_uri, label=label, model_name=model_name, registry_uri=registry_uri,
            problem_type=problem_type, drop_columns=drop_columns, split_column=split_column,
            preprocessing_module=preprocessing_module, trainer_module=trainer_module, epochs=epochs,
            batch_size=batch_size, seed=seed, thresholds=thresholds, tolerance=tolerance,
            deploy_namespace=deploy_namespace, canary_traffic_percent=canary_traffic_percent,
            metadata_connection=metadata_connection)
        retrain_task.set_display_name("Retrain, bless on new data, push")
