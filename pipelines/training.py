"""The training pipeline: ingest → validate → transform → train → evaluate → infra_validate → push → deploy.

A plain KFP v2 pipeline function: run it through ``kfp.local`` (``prodml run training`` or
:func:`prodml.pipelines.local.run_training`), or compile it for the Kubeflow Pipelines UI
(``prodml compile``). Decisions such as "push only if blessed" live inside the components,
because ``kfp.local`` cannot run ``dsl.If``.
"""

import os
from typing import Dict, List

from kfp import dsl
from kfp.dsl import Model

from prodml.components.common import defaults, keys, lineage
from prodml.components.deploy.component import deploy
from prodml.components.evaluate.component import evaluate
from prodml.components.export.component import export
from prodml.components.infra_validate.component import infra_validate
from prodml.components.ingest.component import ingest
from prodml.components.push.component import push
from prodml.components.train.component import train
from prodml.components.transform.component import transform
from prodml.components.validate.component import validate

PIPELINE_NAME = defaults.PIPELINE_NAME
# A MySQL metadata password never goes into a parameter (KFP shows and records those): with
# PRODML_METADATA_SECRET=<name> set when compiling, every task gets the Kubernetes Secret's
# "password" key as $PRODML_METADATA_PASSWORD, which lineage uses when the URL has no password.
METADATA_SECRET_ENV = "PRODML_METADATA_SECRET"
METADATA_SECRET_KEY = "password"
# In a cluster, lineage goes to the Kubeflow metadata service unless the run says otherwise.
CLUSTER_METADATA = "grpc://metadata-grpc-service.kubeflow:8080"


def _password_from_secret(task: dsl.PipelineTask) -> None:
    secret = os.environ.get(METADATA_SECRET_ENV, "")
    if secret:
        from kfp import kubernetes

        kubernetes.use_secret_as_env(task, secret_name=secret,
                                     secret_key_to_env={METADATA_SECRET_KEY: lineage.PASSWORD_ENV})


@dsl.pipeline(name=PIPELINE_NAME, description=(
    "Trains a model from a CSV or Parquet file: ingest, validate (TFDV), transform (TFT), train (Keras), "
    "evaluate and bless, infra-validate in the serving runtime (KServe), push to a versioned registry, and "
    "optionally deploy as a KServe InferenceService. "
    "Every step records its lineage in ML Metadata."))
def training_pipeline(
    data_uri: str,
    label: str,
    model_name: str,
    registry_uri: str,
    problem_type: str = keys.AUTO,
    drop_columns: List[str] = [],
    split_ratios: Dict[str, float] = defaults.SPLIT_RATIOS,
    na_values: List[str] = defaults.NA_VALUES,
    split_column: str = "",
    user_schema_uri: str = "",
    baseline_statistics_uri: str = "",
    fail_on_drift: bool = False,
    preprocessing_module: str = "",
    beam_args: List[str] = [],
    trainer_module: str = "",
    epochs: int = defaults.EPOCHS,
    batch_size: int = defaults.BATCH_SIZE,
    seed: int = defaults.SEED,
    hyperparameters: Dict[str, float] = {},
    slice_feature: str = "",
    thresholds: Dict[str, float] = {},
    tolerance: float = defaults.TOLERANCE,
    infra_max_load_seconds: float = defaults.INFRA_MAX_LOAD_SECONDS,
    infra_max_p99_ms: float = defaults.INFRA_MAX_P99_MS,
    export_formats: List[str] = [],
    deploy_namespace: str = "",
    canary_traffic_percent: int = 100,
    serving_protocol: str = "rest",
    deployment_mode: str = "",
    metadata_connection: str = CLUSTER_METADATA,
) -> Model:
    """Training pipeline from tabular data to a blessed, versioned model.

    Its output is the push step's pushed_model: the registry version (metadata: pushed, version,
    pushed_destination, model_name, run_id).

    Args:
        data_uri: CSV or Parquet file, folder or glob (local path or tf.io.gfile URI).
        label: Label column.
        model_name: Name of the model in the registry and of its InferenceService.
        registry_uri: Registry root; versions go to <registry_uri>/<model_name>/<version>/.
        problem_type: auto, binary, multiclass or regression.
        drop_columns: Columns to leave out, e.g. the one the label is derived from.
        split_ratios: Relative train/eval split sizes.
        na_values: CSV cells read as missing besides empty ones (default: pandas' markers); [] leaves only
            empty cells missing.
        split_column: A column naming each row's split (train or eval); rows where it is empty are split by
            hash. It is not a feature. Retraining (prodml monitor) uses it to evaluate on new data only.
        user_schema_uri: A schema.pbtxt to validate against; empty infers one.
        baseline_statistics_uri: A previous run's statistics artifact, for drift detection.
        fail_on_drift: Stop the run when drift exceeds the threshold.
        preprocessing_module: A file defining preprocessing_fn; empty generates one from the schema.
        beam_args: Beam options for transform (another runner for large data).
        trainer_module: A file defining run_fn; empty uses the default Keras model.
        epochs: Maximum training epochs.
        batch_size: Training batch size.
        seed: Random seed.
        hyperparameters: Numbers passed to the trainer.
        slice_feature: Raw feature to slice eval metrics by.
        thresholds: Absolute metric bounds for blessing, e.g. {"auc": 0.9}.
        tolerance: How far the candidate may fall behind the pushed model.
        infra_max_load_seconds: Most seconds from the predictor's start to ready (load and warm-up) when the
            candidate is served in the serving runtime before push.
        infra_max_p99_ms: Most p99 latency, in ms, of single-row requests at concurrency 8 to the served candidate.
        export_formats: Edge formats to push beside the SavedModel as edge/model.tflite and edge/model.onnx:
            tflite, onnx, or both; each only if it matches the SavedModel on eval rows. [] exports nothing.
        deploy_namespace: Kubernetes namespace to deploy to; empty skips deployment.
        canary_traffic_percent: Traffic share for a newly deployed version.
        serving_protocol: rest or grpc: the protocol the deployed InferenceService exposes.
        deployment_mode: KServe's mode (Serverless/Knative, RawDeployment/Standard); empty uses the cluster's.
        metadata_connection: ML Metadata connection string.
    """
    run = {"metadata_connection": metadata_connection, "pipeline_name": PIPELINE_NAME,
           "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}

    ingest_task = ingest(data_uri=data_uri, label=label, problem_type=problem_type,
                         drop_columns=drop_columns, split_ratios=split_ratios, na_values=na_values,
                         split_column=split_column, **run)
    ingest_task.set_display_name("Ingest data")

    examples = ingest_task.outputs[keys.EXAMPLES_KEY]
    validate_task = validate(examples=examples, user_schema_uri=user_schema_uri,
                             baseline_statistics_uri=baseline_statistics_uri,
                             fail_on_drift=fail_on_drift, **run)
    validate_task.set_display_name("Validate data (TFDV)")

    transform_task = transform(examples=examples, schema=validate_task.outputs[keys.SCHEMA_KEY],
                               preprocessing_module=preprocessing_module, beam_args=beam_args, **run)
    transform_task.set_display_name("Transform features (TFT)")

    train_task = train(transform_graph=transform_task.outputs[keys.TRANSFORM_GRAPH_KEY],
                       transformed_examples=transform_task.outputs[keys.TRANSFORMED_EXAMPLES_KEY],
                       trainer_module=trainer_module, epochs=epochs, batch_size=batch_size, seed=seed,
                       hyperparameters=hyperparameters, **run)
    train_task.set_display_name("Train model (Keras)")

    model = train_task.outputs[keys.MODEL_KEY]
    evaluate_task = evaluate(model=model, examples=examples,
                             registry_uri=registry_uri, model_name=model_name,
                             slice_feature=slice_feature, thresholds=thresholds, tolerance=tolerance, **run)
    evaluate_task.set_display_name("Evaluate and bless")

    infra_task = infra_validate(model=model, examples=examples, infra_max_load_seconds=infra_max_load_seconds,
                                infra_max_p99_ms=infra_max_p99_ms, **run)
    infra_task.set_display_name("Infra-validate (KServe)")
    infra_task.after(evaluate_task)  # evaluate's numbers first: the served candidate must reproduce them

    export_task = export(model=model, examples=examples, export_formats=export_formats, **run)
    export_task.set_display_name("Export edge models")

    push_task = push(model=model, blessing=evaluate_task.outputs[keys.BLESSING_KEY],
                     infra_blessing=infra_task.outputs[keys.INFRA_BLESSING_KEY],
                     edge_models=export_task.outputs[keys.EDGE_MODELS_KEY],
                     evaluation=evaluate_task.outputs[keys.EVALUATION_KEY], examples=examples,
                     registry_uri=registry_uri, model_name=model_name,
                     namespace=deploy_namespace, **run)
    push_task.set_display_name("Push to registry")

    pushed_model = push_task.outputs[keys.PUSHED_MODEL_KEY]
    deploy_task = deploy(pushed_model=pushed_model, namespace=deploy_namespace,
                         canary_traffic_percent=canary_traffic_percent, protocol=serving_protocol,
                         deployment_mode=deployment_mode, **run)
    deploy_task.set_display_name("Deploy to KServe")

    for task in (ingest_task, validate_task, transform_task, train_task, evaluate_task, infra_task, export_task,
                 push_task, deploy_task):
        _password_from_secret(task)
    return pushed_model
