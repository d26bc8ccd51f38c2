"""Compiling the pipeline and each component to KFP YAML under ``manifests/``."""

import os
from typing import Dict, List

from prodml.components.batch_predict.component import batch_predict
from prodml.components.deploy.component import deploy
from prodml.components.evaluate.component import evaluate
from prodml.components.export.component import export
from prodml.components.infra_validate.component import infra_validate
from prodml.components.ingest.component import ingest
from prodml.components.monitor.component import monitor
from prodml.components.push.component import push
from prodml.components.train.component import train
from prodml.components.transform.component import transform
from prodml.components.validate.component import validate

COMPONENTS = {"ingest": ingest, "validate": validate, "transform": transform, "train": train,
              "evaluate": evaluate, "infra_validate": infra_validate, "export": export, "push": push, "deploy": deploy,
              "batch_predict": batch_predict, "monitor": monitor}
REPO_MANIFESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "manifests")


def compile_pipeline(path: str) -> str:
    """Writes the training pipeline as KFP v2 YAML, ready for the Kubeflow Pipelines UI."""
    from kfp import compiler

    from prodml.pipelines.training import training_pipeline

    os.makedirs(os.path.dirname(path), exist_ok=True)
    compiler.Compiler().compile(training_pipeline, path)
    return path


def compile_component(name: str, path: str) -> str:
    """Writes one component as KFP YAML, loadable with kfp.components.load_component_from_file."""
    from kfp import compiler

    os.makedirs(os.path.dirname(path), exist_ok=True)
    compiler.Compiler().compile(COMPONENTS[name], path)
    return path


def compile_all(manifests_dir: str = REPO_MANIFESTS) -> List[str]:
    """Compiles the pipeline and every component under ``manifests_dir``; returns the files written.

    Beside each component YAML go its metadata.yaml (version, interface, verified libraries)
    and README.md; see :mod:`prodml.pipelines.component_manifests`.
    """
    from prodml.pipelines.component_manifests import write_manifest

    written = [compile_pipeline(os.path.join(manifests_dir, "pipelines", "training_pipeline.yaml")),
               compile_batch_prediction_pipeline(manifests_dir), compile_monitoring_pipeline(manifests_dir)]
    for name in COMPONENTS:
        path = compile_component(name, os.path.join(manifests_dir, "components", name, "component.yaml"))
        written += write_manifest(name, COMPONENTS[name], path)
    return written


def compile_batch_prediction_pipeline(manifests_dir: str = REPO_MANIFESTS) -> str:
    """Writes the batch prediction pipeline as KFP v2 YAML (schedule it with a recurring run)."""
    from kfp import compiler

    from prodml.pipelines.batch_prediction import batch_prediction_pipeline

    path = os.path.join(manifests_dir, "pipelines", "batch_prediction_pipeline.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    compiler.Compiler().compile(batch_prediction_pipeline, path)
    return path


def compile_monitoring_pipeline(manifests_dir: str = REPO_MANIFESTS) -> str:
    """Writes the monitoring pipeline (monitor, then retraining under dsl.If) as KFP v2 YAML."""
    from kfp import compiler

    from prodml.pipelines.monitoring import monitoring_pipeline

    path = os.path.join(manifests_dir, "pipelines", "monitoring_pipeline.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    compiler.Compiler().compile(monitoring_pipeline, path)
    return path


def component_paths(manifests_dir: str = REPO_MANIFESTS) -> Dict[str, str]:
    return {name: os.path.join(manifests_dir, "components", name, "component.yaml") for name in COMPONENTS}
