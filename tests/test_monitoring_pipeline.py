"""The compiled monitoring pipeline: monitor, then the training pipeline under dsl.If; and its submission.

Like test_compile.py and test_submit.py: the KFP compiler for real, and a real kfp.Client talking to
the local stub of the KFP REST API (there is no Kubeflow Pipelines server here).
"""

import json

import pytest
import yaml
from kfp import components
from test_submit import StubKfpApi, kfp_env, stub  # noqa: F401 - fixtures shared with the submit tests

from prodml.pipelines import cli, submit
from prodml.pipelines.compile import compile_monitoring_pipeline

TRAINING_TASKS = {"ingest", "validate", "transform", "train", "evaluate", "infra-validate", "export", "push",
                  "deploy"}
REQUIRED = ["traffic_uri=gs://bucket/logs/", "model_name=chicago-taxi", "registry_uri=gs://bucket/registry",
            "label=big_tipper", "retrain_data_uri=gs://bucket/labelled/"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = compile_monitoring_pipeline(str(tmp_path_factory.mktemp("manifests")))
    with open(path, encoding="utf-8") as f:
        return path, yaml.safe_load(f)


def test_monitor_runs_first_and_retraining_only_when_it_says_so(spec):
    _, pipeline = spec
    tasks = pipeline["root"]["dag"]["tasks"]
    [condition] = [name for name in tasks if name != "monitor"]
    assert set(tasks) == {"monitor", condition}
    gate = tasks[condition]
    assert gate["dependentTasks"] == ["monitor"]
    assert gate["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--monitor-Output'] == true"
    # Inside the condition: the whole training pipeline, nested, on the retraining data.
    [nested] = pipeline["components"][gate["componentRef"]["name"]]["dag"]["tasks"].values()
    training = pipeline["components"][nested["componentRef"]["name"]]
    assert set(training["dag"]["tasks"]) == TRAINING_TASKS
    data = nested["inputs"]["parameters"]["data_uri"]
    assert data["componentInputParameter"] == "pipelinechannel--retrain_data_uri"


def test_the_monitor_gets_the_pipeline_parameters(spec):
    _, pipeline = spec
    monitor = pipeline["root"]["dag"]["tasks"]["monitor"]["inputs"]["parameters"]
    for name in ("traffic_uri", "registry_uri", "model_name", "labels_uri", "join_key", "version"):
        assert monitor[name]["componentInputParameter"] == name
    assert monitor["thresholds"]["componentInputParameter"] == "monitor_thresholds"
    assert monitor["pipeline_name"]["runtimeValue"]["constant"] == "prodml-monitoring"


def test_the_compiled_pipeline_loads_back_with_its_required_parameters(spec):
    path, _ = spec
    loaded = components.load_component_from_file(path)
    assert loaded.name == "prodml-monitoring"
    required = {name for name, p in loaded.component_spec.inputs.items() if not p.optional}
    assert required == {"traffic_uri", "model_name", "registry_uri", "label", "retrain_data_uri"}


def test_cli_submits_a_recurring_monitoring_run(stub, capsys):  # noqa: F811 - the imported fixture
    code = cli.main(["submit", "--host", stub.host, "--pipeline", "monitoring", "--recurring", "0 3 * * *",
                     "--json"] + [f"--param={p}" for p in REQUIRED + ["join_key=trip_id", "epochs=3"]])
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["kind"] == "recurring_run"
    [job] = stub.find("POST", "/apis/v2beta1/recurringruns")
    body = job["json"]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"  # KFP cron has seconds
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "prodml-monitoring"
    assert body["runtime_config"]["parameters"]["join_key"] == "trip_id"
    assert body["runtime_config"]["parameters"]["epochs"] == 3


def test_cli_checks_the_retraining_values_before_connecting(stub, capsys):  # noqa: F811
    code = cli.main(["submit", "--host", stub.host, "--pipeline", "monitoring"]
                    + [f"--param={p}" for p in REQUIRED + ["epochs=0"]])
    assert code == 2 and "epochs" in capsys.readouterr().err
    code = cli.main(["submit", "--host", stub.host, "--pipeline", "monitoring", "--param=model_name=x"])
    assert code == 2 and "retrain_data_uri" in capsys.readouterr().err
    assert stub.requests == []


def test_default_package_names_the_monitoring_pipeline(tmp_path):
    assert submit.default_package(str(tmp_path), "monitoring").endswith("monitoring_pipeline.yaml")


def test_retraining_defaults_are_the_training_pipelines(spec):
    from prodml.components.common import defaults

    _, pipeline = spec
    parameters = pipeline["root"]["inputDefinitions"]["parameters"]
    expected = {"epochs": defaults.EPOCHS, "batch_size": defaults.BATCH_SIZE, "seed": defaults.SEED,
                "tolerance": defaults.TOLERANCE}
    assert {name: parameters[name]["defaultValue"] for name in expected} == expected
