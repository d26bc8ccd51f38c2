"""A pipeline component's compiled command runs inside the runtime image.

Runs in the runtime environment (``make test-images``). The command, args and image come from the
published component YAML (manifests/components/ingest/component.yaml). The executor input is built and
its placeholders resolved by kfp.local's own helpers, as kfp.local's DockerRunner does, and the task
folder is mounted at the same path inside the container. The test checks what the component wrote:
KFP's executor output (the data's SHA-256), the examples artifact, and a refused input's exit code and
one-paragraph message.
"""

import hashlib
import json
import pathlib
import shutil
import uuid

import pytest
import yaml
from image_support import REPO, image, podman, require_image

pytestmark = pytest.mark.images
# kfp.local builds the executor input (make test-images runs this file with .venv/runtime).
pytest.importorskip("kfp", reason="runs in the runtime environment (.venv/runtime)")

COMPONENT_YAML = REPO / "manifests" / "components" / "ingest" / "component.yaml"
TAXI_SMALL = REPO / "tests" / "testdata" / "taxi_small.csv"
LABEL = "big_tipper"


def compiled_component():
    """(PipelineSpec, component name, ComponentSpec, container spec) of the published component."""
    from google.protobuf import json_format
    from kfp.local import utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(yaml.safe_load(COMPONENT_YAML.read_text()), pipeline_spec_pb2.PipelineSpec())
    [(component_name, component_spec)] = spec.components.items()
    executor = utils.struct_to_executor_spec(spec.deployment_spec["executors"][component_spec.executor_label])
    return spec, component_name, component_spec, executor.container


def run_in_image(tag: str, pipeline_root: pathlib.Path, arguments: dict):
    """Runs the component's resolved command in ``tag``; returns (podman result, task folder)."""
    from kfp.local import executor_input_utils, placeholder_utils

    spec, component_name, component_spec, container = compiled_component()
    pipeline_resource_name = executor_input_utils.get_local_pipeline_resource_name(spec.pipeline_info.name)
    task_resource_name = executor_input_utils.get_local_task_resource_name(component_name)
    task_root = executor_input_utils.construct_local_task_root(str(pipeline_root), pipeline_resource_name,
                                                               task_resource_name)
    executor_input = executor_input_utils.construct_executor_input(component_spec, arguments, task_root,
                                                                   block_input_artifact=True)
    command = placeholder_utils.replace_placeholders(
        full_command=list(container.command) + list(container.args),
        executor_input_dict=executor_input_utils.executor_input_to_dict(executor_input, component_spec),
        pipeline_resource_name=pipeline_resource_name, task_resource_name=task_resource_name,
        pipeline_root=str(pipeline_root), unique_pipeline_id=placeholder_utils.make_random_id())
    name = f"prodml-runtime-test-{uuid.uuid4().hex[:8]}"
    done = podman("run", "--rm", "--name", name, "--volume", f"{pipeline_root}:{pipeline_root}",
                  "--entrypoint", command[0], tag, *command[1:], check=False, timeout=900)
    return done, pathlib.Path(task_root)


@pytest.fixture(scope="module")
def runtime_image() -> str:
    tag = image("runtime")
    *_, container = compiled_component()
    # The tag under test is the component's base_image (plus the stand-in suffix).
    assert tag.startswith(container.image), (tag, container.image)
    require_image(tag)
    return tag


@pytest.fixture()
def pipeline_root(tmp_path) -> pathlib.Path:
    root = tmp_path / "pipeline_root"
    root.mkdir()
    shutil.copy(TAXI_SMALL, root / "data.csv")
    return root


def test_ingest_component_runs_in_the_runtime_image(runtime_image, pipeline_root):
    csv_path = pipeline_root / "data.csv"
    done, task_root = run_in_image(runtime_image, pipeline_root,
                                   {"data_uri": str(csv_path), "label": LABEL, "drop_columns": ["tips"]})
    assert done.returncode == 0, f"the component failed in the image:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"

    output = json.loads((task_root / "executor_output.json").read_text())
    assert output["parameterValues"]["Output"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    examples = task_root / "examples"
    version = json.loads((examples / "data_version.json").read_text())
    rows = sum(1 for line in csv_path.read_text().splitlines()[1:] if line.strip())
    assert sum(version["row_counts"].values()) == rows
    assert "tips" not in version["columns"] and version["label"]["name"] == LABEL
    for split in version["row_counts"]:
        assert list((examples / f"Split-{split}").glob("data-*.tfrecord.gz")), split


def test_refused_input_exits_with_its_code_and_one_paragraph(runtime_image, pipeline_root):
    done, _ = run_in_image(runtime_image, pipeline_root,
                           {"data_uri": str(pipeline_root / "data.csv"), "label": "no_such_column"})
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "'no_such_column' is not a column of the data" in done.stderr
    assert "Traceback" not in done.stderr
