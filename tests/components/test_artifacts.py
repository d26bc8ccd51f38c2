"""The artifact contracts: typed JSON files, artifact names defined once, and components that keep apart."""

import ast
import json
import pathlib

import pytest

from prodml.components.common import artifacts, keys
from prodml.components.common.errors import InputDataError

REPO = pathlib.Path(__file__).parent.parent.parent
LABEL = artifacts.Label("big_tipper", keys.BINARY, ["0", "1"])
DATA_VERSION = artifacts.DataVersion(
    source_uri="/data/taxi.csv", sha256="ab" * 32, size_bytes=123, row_counts={keys.TRAIN: 8, keys.EVAL: 2},
    split_ratios={keys.TRAIN: 0.8, keys.EVAL: 0.2}, columns={"fare": keys.FLOAT, "big_tipper": keys.INT},
    dropped_columns=["tips"], label=LABEL)
SAMPLES = [
    LABEL,
    DATA_VERSION,
    artifacts.ModelInfo(label=LABEL, raw_features={"fare": keys.FLOAT}, params={"epochs": 3},
                        metrics={"eval_auc": 0.9}),
    artifacts.Evaluation(metrics={"auc": 0.9, "example_count": 2}, key_metric="auc",
                         baseline={"name": "majority class", "metrics": {"auc": 0.5}}),
    artifacts.Blessing(blessed=True, reasons=["auc 0.9 > baseline 0.5 (majority class)"], compared_to=3),
    artifacts.ModelCard({"model_name": "taxi", "version": 1, "data": {"sha256": "ab" * 32, "row_counts": {}}}),
]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_every_file_reads_back_what_was_written(tmp_path, sample):
    path = sample.write(str(tmp_path))
    assert path == str(tmp_path / sample.FILE)
    assert type(sample).read(str(tmp_path)) == sample
    assert json.loads((tmp_path / sample.FILE).read_text()) == sample.to_dict()


def test_the_data_version_keeps_the_documented_shape(tmp_path):
    DATA_VERSION.write(str(tmp_path))
    assert json.loads((tmp_path / keys.DATA_VERSION_FILE).read_text()) == {
        "source_uri": "/data/taxi.csv", "sha256": "ab" * 32, "size_bytes": 123, "row_counts": {"train": 8, "eval": 2},
        "split_ratios": {"train": 0.8, "eval": 0.2}, "columns": {"fare": "FLOAT", "big_tipper": "INT"},
        "dropped_columns": ["tips"], "label": {"name": "big_tipper", "problem_type": "binary", "classes": ["0", "1"]}}


def test_fields_a_newer_writer_adds_are_kept(tmp_path):
    content = {**DATA_VERSION.to_dict(), "na_values": ["NA"]}
    (tmp_path / keys.DATA_VERSION_FILE).write_text(json.dumps(content))
    read = artifacts.DataVersion.read(str(tmp_path))
    assert read.extra == {"na_values": ["NA"]} and read.to_dict() == content


def test_a_missing_file_names_the_folder_and_the_step_that_writes_it(tmp_path):
    with pytest.raises(InputDataError) as e:
        artifacts.ModelInfo.read(str(tmp_path))
    assert str(e.value) == (f"{tmp_path}/prodml_model.json is missing: {tmp_path} is not a model folder written "
                            "by prodml's train. Give the folder that train wrote, or re-run train.")


def test_a_truncated_file_is_one_paragraph_naming_it(tmp_path):
    (tmp_path / keys.BLESSING_FILE).write_text('{"blessed": true, "reas')
    with pytest.raises(InputDataError) as e:
        artifacts.Blessing.read(str(tmp_path))
    assert str(e.value).startswith(f"{tmp_path}/blessing.json is not valid JSON (line 1, column 19: ")
    assert str(e.value).endswith("evaluate writes it whole, so the file was changed or cut short. Re-run evaluate.")


@pytest.mark.parametrize("change, field, problem", [
    ({"label": {"name": "y", "problem_type": "ranking", "classes": None}}, "label.problem_type",
     "is 'ranking', expected one of binary, multiclass, regression"),
    ({"label": {"name": "y", "problem_type": "binary", "classes": ["a", "b", "c"]}}, "label.classes",
     "has 3 entries; a binary label has exactly two"),
    ({"row_counts": {"train": "8"}}, "row_counts.train", "is a string ('8'), expected an integer"),
    ({"columns": {"fare": "DOUBLE", "big_tipper": "INT"}}, "columns.fare",
     "is a string ('DOUBLE'), expected one of INT, FLOAT, BYTES"),
    ({"columns": {"fare": "FLOAT"}}, "columns", "does not list the label 'big_tipper' (it lists fare)"),
    ({"size_bytes": True}, "size_bytes", "is a boolean (True), expected an integer"),
    ({"sha256": None}, "sha256", "is null, expected a string"),
])
def test_a_malformed_field_is_named(tmp_path, change, field, problem):
    content = {**DATA_VERSION.to_dict(), **change}
    (tmp_path / keys.DATA_VERSION_FILE).write_text(json.dumps(content))
    with pytest.raises(InputDataError) as e:
        artifacts.DataVersion.read(str(tmp_path))
    assert str(e.value) == (f"{tmp_path}/data_version.json is malformed: field '{field}' {problem}. This file is "
                            "written by ingest: re-run ingest, or give the artifact folder that it wrote.")


def test_the_inferenceservice_manifest_is_checked_before_it_is_applied(tmp_path):
    from prodml.components.push.inferenceservice import render_inferenceservice, to_yaml

    manifest = render_inferenceservice("taxi", str(tmp_path), 4, namespace="models")
    artifacts.write_inferenceservice(str(tmp_path), to_yaml(manifest))
    assert artifacts.read_inferenceservice(str(tmp_path)) == manifest
    del manifest["metadata"]["annotations"]
    artifacts.write_inferenceservice(str(tmp_path), to_yaml(manifest))
    with pytest.raises(InputDataError, match="field 'metadata.annotations' is missing. This file is written by push"):
        artifacts.read_inferenceservice(str(tmp_path))


# ---- names defined once -------------------------------------------------------------------------

def test_component_signatures_use_the_artifact_names():
    """KFP takes artifact names from parameter names: each signature must spell keys.COMPONENT_ARTIFACTS."""
    from prodml.pipelines.compile import COMPONENTS

    assert set(COMPONENTS) == set(keys.COMPONENT_ARTIFACTS)
    for name, component in COMPONENTS.items():
        spec = component.component_spec
        inputs = {n for n in spec.inputs if not _is_parameter(spec.inputs[n])}
        outputs = {n for n in spec.outputs or {} if not _is_parameter(spec.outputs[n])}
        declared = keys.COMPONENT_ARTIFACTS[name]
        assert (inputs, outputs) == (set(declared["inputs"]), set(declared["outputs"])), name


def _is_parameter(spec) -> bool:
    from kfp.dsl import types

    return types.type_utils.is_parameter_type(spec.type)


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_component_imports_another_component():
    for name in keys.COMPONENT_ARTIFACTS:
        for path in sorted((REPO / "components" / name).glob("*.py")):
            others = {m.split(".")[2] for m in _imports(path)
                      if m.startswith("prodml.components.") and len(m.split(".")) > 2}
            assert others <= {name, "common"}, f"{path.relative_to(REPO)} imports {sorted(others - {name, 'common'})}"


# Which modules may name an artifact file: its typed home, and the registry, which only checks that a
# version's model card exists (a version written before completion markers).
_FILE_NAMES = ("DATA_VERSION_FILE", "LABEL_INFO_FILE", "MODEL_INFO_FILE", "EVALUATION_FILE", "BLESSING_FILE",
               "MODEL_CARD_JSON", "ISVC_FILE")
_ALLOWED = {"components/common/artifacts.py": _FILE_NAMES, "components/common/keys.py": _FILE_NAMES,
            "components/common/registry.py": ("MODEL_CARD_JSON",)}


def test_artifact_files_are_read_and_written_only_through_artifacts():
    offenders = []
    for folder in ("components", "pipelines", "serving"):
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = str(path.relative_to(REPO))
            text = path.read_text(encoding="utf-8")
            offenders += [f"{relative}: {name}" for name in _FILE_NAMES
                          if f"keys.{name}" in text and name not in _ALLOWED.get(relative, ())]
            offenders += [f"{relative}: '{literal}'" for literal in ("data_version.json", "label_info.json",
                                                                    "prodml_model.json", "blessing.json",
                                                                    "evaluation.json")
                          if f'"{literal}"' in text and relative not in _ALLOWED]
    assert offenders == []


def test_wrappers_record_lineage_through_the_one_helper():
    for name in keys.COMPONENT_ARTIFACTS:
        text = (REPO / "components" / name / "component.py").read_text(encoding="utf-8")
        assert "run_and_record(" in text, name
        assert "record_execution" not in text and "open(" not in text, name
