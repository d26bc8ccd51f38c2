"""Every component and the training pipeline compile to KFP v2 YAML that kfp loads back as it was."""

import pytest
import yaml
from kfp import components

from prodml.components.common.images import INFRA_VALIDATE_IMAGE, RUNTIME_IMAGE
from prodml.pipelines.compile import COMPONENTS, compile_all

TASKS = {"ingest", "validate", "transform", "train", "evaluate", "infra-validate", "export", "push", "deploy"}
# infra_validate needs the serving environment beside the runtime one (Dockerfile.runtime, target infra-validate).
IMAGES = {"infra_validate": INFRA_VALIDATE_IMAGE}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    out = tmp_path_factory.mktemp("manifests")
    written = compile_all(str(out))
    assert len(written) == 3 + 3 * len(COMPONENTS)  # three pipelines, three files per component
    return out


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_loads_back_with_the_same_interface(manifests, name):
    loaded = components.load_component_from_file(str(manifests / "components" / name / "component.yaml"))
    original = COMPONENTS[name].component_spec
    assert loaded.name == name.replace("_", "-") or loaded.name == name  # kfp writes batch_predict as batch-predict
    assert set(loaded.component_spec.inputs) == set(original.inputs)
    assert set(loaded.component_spec.outputs or {}) == set(original.outputs or {})
    for input_name, spec in original.inputs.items():
        assert loaded.component_spec.inputs[input_name].optional == spec.optional, input_name
    # The version header prodml adds does not hide the description kfp reads back.
    assert loaded.component_spec.description.startswith(original.description.splitlines()[0])


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_runs_in_the_versioned_runtime_image(manifests, name):
    with open(manifests / "components" / name / "component.yaml", encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    [executor] = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == IMAGES.get(name, RUNTIME_IMAGE)
    assert not RUNTIME_IMAGE.endswith(":latest")


def test_pipeline_loads_back_with_every_step(manifests):
    path = manifests / "pipelines" / "training_pipeline.yaml"
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "prodml-training"
    assert {"data_uri", "label", "model_name", "registry_uri"} <= {
        name for name, spec in loaded.component_spec.inputs.items() if not spec.optional}
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    assert set(spec["root"]["dag"]["tasks"]) == TASKS


def test_loaded_components_compose_into_a_new_pipeline(manifests, tmp_path):
    from kfp import compiler, dsl

    ingest = components.load_component_from_file(str(manifests / "components" / "ingest" / "component.yaml"))
    validate = components.load_component_from_file(str(manifests / "components" / "validate" / "component.yaml"))

    @dsl.pipeline(name="another-team")
    def another_team(data_uri: str):
        examples = ingest(data_uri=data_uri, label="big_tipper").outputs["examples"]
        validate(examples=examples)

    compiler.Compiler().compile(another_team, str(tmp_path / "p.yaml"))
    with open(tmp_path / "p.yaml", encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    assert set(spec["root"]["dag"]["tasks"]) == {"ingest", "validate"}
