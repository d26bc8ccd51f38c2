"""infra_validate's compiled command runs inside its image and serves the candidate there.

Runs in the runtime environment (``make test-images``). The image is Dockerfile.runtime's infra-validate
target: the runtime image (kfp's executor, TF 2.16, ML Metadata) plus the serving environment as a second venv,
/opt/serving, built from requirements/serving.lock. The component's command and image come from the
published manifests/components/infra_validate/component.yaml; its inputs are a model trained by the
real executors (and published to a registry) and the ingested examples; lineage goes to a SQLite ML
Metadata store. Checked: the image's own interpreter has no kserve, yet the candidate is blessed on
V1 REST, V2 REST and V2 gRPC answers (so the predictor ran in /opt/serving); the blessing, Markdown
and lineage are written; push accepts the blessing; and /opt/serving holds exactly the serving
image's packages.
"""

import json
import pathlib
import subprocess

import image_support
import pytest
from image_support import REPO, image, podman, require_image

pytestmark = pytest.mark.images
pytest.importorskip("kfp", reason="runs in the runtime environment (.venv/runtime)")

COMPONENT_YAML = REPO / "manifests" / "components" / "infra_validate" / "component.yaml"
BUILD_MODEL = REPO / "tests" / "serving" / "build_model.py"
TAXI_SMALL = REPO / "tests" / "testdata" / "taxi_small.csv"
MODEL_NAME = "chicago-taxi"
EPOCHS = 2
SERVING_VENV_PYTHON = "/opt/serving/bin/python"


@pytest.fixture(scope="module")
def infra_image() -> str:
    tag = image("infra_validate")
    *_, container = image_support.compiled_component(COMPONENT_YAML)
    # The tag under test is the component's base_image (plus the stand-in suffix).
    assert tag.startswith(container.image), (tag, container.image)
    require_image(tag)
    return tag


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> pathlib.Path:
    """A trained model (work/model), its ingested examples (work/examples) and its registry version."""
    work = tmp_path_factory.mktemp("infra")
    runtime_python = REPO / ".venv" / "runtime" / "bin" / "python"
    done = subprocess.run([str(runtime_python), str(BUILD_MODEL), str(TAXI_SMALL), str(work),
                           str(work / "registry"), MODEL_NAME, str(EPOCHS)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"training the test model failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert (work / "model" / "saved_model.pb").is_file() and (work / "examples").is_dir()
    return work


def _pip_list(tag: str, python: str) -> dict:
    done = podman("run", "--rm", "--entrypoint", python, tag, "-m", "pip", "list", "--format=json")
    return {p["name"].lower(): p["version"] for p in json.loads(done.stdout)}


def test_the_image_interpreter_cannot_serve_on_its_own(infra_image):
    """The component's own interpreter is the runtime one (kfp, MLMD, protobuf 4) without kserve."""
    done = podman("run", "--rm", "--entrypoint", "python", infra_image, "-c",
                  "import kfp, ml_metadata, google.protobuf as p, importlib.util as u, os; print("
                  "p.__version__.split('.')[0], u.find_spec('kserve') is None, os.environ['PRODML_SERVING_PYTHON'])")
    major, no_kserve, serving_python = done.stdout.split()
    assert (int(major), no_kserve, serving_python) == (4, "True", SERVING_VENV_PYTHON)


def test_the_serving_venv_is_the_serving_image_environment(infra_image):
    """Same lock, same prodml: /opt/serving holds exactly the serving image's distributions and versions."""
    in_infra = _pip_list(infra_image, SERVING_VENV_PYTHON)
    in_serving = _pip_list(image("serving"), "python")
    assert in_infra == in_serving
    assert in_infra["kserve"] == "0.21.0" and in_infra["prodml"]


def test_infra_validate_component_serves_and_blesses_in_its_image(infra_image, work, tmp_path):
    from kfp import dsl

    from prodml.components.common import artifacts, keys, lineage
    from prodml.components.push.executor import run_push

    pipeline_root = tmp_path / "pipeline_root"
    pipeline_root.mkdir()
    connection = f"sqlite://{pipeline_root / 'metadata.sqlite'}"
    arguments = {"model": dsl.Model(name="model", uri=str(work / "model")),
                 "examples": dsl.Dataset(name="examples", uri=str(work / "examples")),
                 "metadata_connection": connection, "run_id": "images-run"}
    done, task_root = image_support.run_component_in_image(infra_image, COMPONENT_YAML, pipeline_root, arguments,
                                                           volumes=[work])
    assert done.returncode == 0, f"infra_validate failed in the image:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"

    output = json.loads((task_root / "executor_output.json").read_text())
    assert output["parameterValues"]["Output"] is True
    blessing = artifacts.InfraBlessing.read(str(task_root / keys.INFRA_BLESSING_KEY))
    assert blessing.blessed, blessing.reasons
    gaps = blessing.figures["max_difference"]
    assert set(gaps) == {"v1", "v2", "grpc"} and all(gap <= 1e-5 for gap in gaps.values()), gaps
    assert blessing.figures["missing_rows"] > 0 and blessing.figures["p99_ms"] > 0
    assert "**Infra-blessed**" in (task_root / keys.REPORT_KEY).read_text()

    # Lineage, written from inside the image to the mounted SQLite store.
    store = lineage.connect(connection)
    [execution] = store.get_executions()
    assert lineage.properties_of(execution)["component"] == "infra_validate"
    events = store.get_events_by_execution_ids([execution.id])
    assert {e.path.steps[0].key for e in events if e.type == e.INPUT} == {keys.MODEL_KEY, keys.EXAMPLES_KEY}
    assert keys.INFRA_BLESSING_KEY in {e.path.steps[0].key for e in events if e.type == e.OUTPUT}

    # Push (on the host, the runtime environment) takes the blessing the image wrote.
    blessed, evaluation = tmp_path / "blessing", tmp_path / "evaluation"
    artifacts.Blessing(blessed=True, reasons=["granted by the test"]).write(str(blessed))
    artifacts.Evaluation(metrics={"auc": 0.9}, key_metric="auc").write(str(evaluation))
    registry = tmp_path / "registry"
    result = run_push(model_dir=str(work / "model"), blessing_dir=str(blessed), evaluation_dir=str(evaluation),
                      examples_dir=str(work / "examples"), registry_uri=str(registry), model_name=MODEL_NAME,
                      infra_blessing_dir=str(task_root / keys.INFRA_BLESSING_KEY),
                      card_path=str(tmp_path / "card.md"))
    assert result["pushed"] and (registry / MODEL_NAME / str(result["version"]) / "saved_model.pb").is_file()
