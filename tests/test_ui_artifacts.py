"""What the Kubeflow Pipelines UI will show for a run, as fixed by the compiled pipeline spec.

The UI renders system.HTML and system.Markdown artifacts in the run's Visualizations tab,
system.Metrics as scalar metrics and system.ClassificationMetrics as a confusion matrix and
ROC curve; it labels each step with its display name and shows the descriptions of the
pipeline, its parameters and each component's inputs.
"""

import pytest
import yaml

from prodml.pipelines.compile import compile_pipeline

DISPLAY_NAMES = {"ingest": "Ingest data", "validate": "Validate data (TFDV)",
                 "transform": "Transform features (TFT)", "train": "Train model (Keras)",
                 "evaluate": "Evaluate and bless", "infra-validate": "Infra-validate (KServe)",
                 "export": "Export edge models", "push": "Push to registry", "deploy": "Deploy to KServe"}
# (component, output) -> the artifact type the UI renders it by.
VISUALIZED_OUTPUTS = {
    ("validate", "statistics_view"): "system.HTML",
    ("validate", "anomalies"): "system.Markdown",
    ("evaluate", "report"): "system.Markdown",
    ("evaluate", "metrics"): "system.Metrics",
    ("evaluate", "classification_metrics"): "system.ClassificationMetrics",
    ("infra-validate", "report"): "system.Markdown",
    ("infra-validate", "metrics"): "system.Metrics",
    ("export", "report"): "system.Markdown",
    ("export", "metrics"): "system.Metrics",
    ("push", "model_card"): "system.Markdown",
    ("deploy", "deployment_card"): "system.Markdown",
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = compile_pipeline(str(tmp_path_factory.mktemp("ui") / "training_pipeline.yaml"))
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _outputs(spec, component):
    return spec["components"][f"comp-{component}"]["outputDefinitions"]["artifacts"]


@pytest.mark.parametrize("component, output", sorted(VISUALIZED_OUTPUTS))
def test_visualized_outputs_have_the_types_the_ui_renders(spec, component, output):
    artifact_type = _outputs(spec, component)[output]["artifactType"]
    assert artifact_type["schemaTitle"] == VISUALIZED_OUTPUTS[(component, output)]


def test_every_task_has_its_display_name(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert {name: task["taskInfo"]["name"] for name, task in tasks.items()} == DISPLAY_NAMES


def test_pipeline_and_its_parameters_are_described(spec):
    assert "ingest, validate (TFDV), transform (TFT)" in spec["pipelineInfo"]["description"]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    undocumented = [name for name, p in parameters.items() if not p.get("description")]
    assert not undocumented, f"pipeline parameters without an Args: entry in the docstring: {undocumented}"


def test_every_component_input_is_described(spec):
    undocumented = []
    for component, definition in spec["components"].items():
        inputs = definition.get("inputDefinitions", {})
        for kind in ("parameters", "artifacts"):
            undocumented += [f"{component}.{name}" for name, p in inputs.get(kind, {}).items()
                             if not p.get("description")]
    assert not undocumented, f"component inputs without an Args: entry in the docstring: {undocumented}"


def test_every_component_output_is_described(spec):
    # KFP takes output descriptions from the docstring's Returns: section (inputs from Args:).
    undocumented = []
    for component, definition in spec["components"].items():
        outputs = definition.get("outputDefinitions", {})
        for kind in ("parameters", "artifacts"):
            undocumented += [f"{component}.{name}" for name, p in outputs.get(kind, {}).items()
                             if not p.get("description")]
    assert not undocumented, f"component outputs without a Returns: entry in the docstring: {undocumented}"


def test_the_steps_are_wired_from_data_to_deployment(spec):
    tasks = spec["root"]["dag"]["tasks"]

    def producer(task, artifact):
        return tasks[task]["inputs"]["artifacts"][artifact]["taskOutputArtifact"]["producerTask"]

    assert producer("validate", "examples") == "ingest"
    assert producer("transform", "schema") == "validate"
    assert producer("train", "transformed_examples") == "transform"
    assert producer("evaluate", "model") == "train"
    assert producer("push", "blessing") == "evaluate"
    assert producer("deploy", "pushed_model") == "push"


def test_local_run_outputs_are_found_in_the_latest_run(tmp_path):
    from prodml.components.common.errors import ConfigError
    from prodml.pipelines.local_outputs import output_path, run_folders

    with pytest.raises(ConfigError, match="No local run of prodml-training"):
        output_path("validate", "statistics_view", root=str(tmp_path))
    runs = tmp_path / "pipeline_root"
    for stamp in ("2026-01-02-09-00-00-000001", "2026-01-01-23-59-59-999999"):
        (runs / f"prodml-training-{stamp}" / "validate").mkdir(parents=True)
        (runs / f"prodml-training-{stamp}" / "validate" / "statistics_view").write_text(stamp)
    (runs / "another-team-data-check-2026-01-03-00-00-00-000000").mkdir()
    assert [p.split("/")[-1] for p in run_folders(str(tmp_path))] == [
        "prodml-training-2026-01-01-23-59-59-999999", "prodml-training-2026-01-02-09-00-00-000001"]
    latest = output_path("validate", "statistics_view", root=str(tmp_path))
    assert open(latest).read() == "2026-01-02-09-00-00-000001"
    with pytest.raises(ConfigError, match="has no output 'report' of task 'evaluate'"):
        output_path("evaluate", "report", root=str(tmp_path))
