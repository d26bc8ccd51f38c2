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

import image_support
import pytest
from image_support import REPO, image, require_image

pytestmark = pytest.mark.images
# kfp.local builds the executor input (make test-images runs this file with .venv/runtime).
pytest.importorskip("kfp", reason="runs in the runtime environment (.venv/runtime)")

COMPONENT_YAML = REPO / "manifests" / "components" / "ingest" / "component.yaml"
TAXI_SMALL = REPO / "tests" / "testdata" / "taxi_small.csv"
LABEL = "big_tipper"


def compiled_component():
    return image_support.compiled_component(COMPONENT_YAML)


def run_in_image(tag: str, pipeline_root: pathlib.Path, arguments: dict):
    """Runs the component's resolved command in ``tag``; returns (podman result, task folder)."""
    return image_support.run_component_in_image(tag, COMPONENT_YAML, pipeline_root, arguments)


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
