"""The checked-in manifests: current with the code, versioned by interface, reusable from the YAML alone."""

import datetime
import difflib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata as importlib_metadata

import pytest
import yaml

from prodml.components.common.errors import ConfigError
from prodml.pipelines.compile import COMPONENTS
from prodml.pipelines.component_manifests import (
    interface_of,
    load_component,
    read_metadata,
    required_bump,
    verify_manifest,
    version_problem,
)
from prodml.pipelines.component_versions import VERSIONS

REPO = pathlib.Path(__file__).parent.parent
MANIFESTS = REPO / "manifests"
TAXI_SMALL = REPO / "tests" / "testdata" / "taxi_small.csv"
GENERATED = ["pipelines/training_pipeline.yaml", "pipelines/batch_prediction_pipeline.yaml",
             "pipelines/monitoring_pipeline.yaml"] + [
    f"components/{name}/{file}" for name in COMPONENTS
    for file in ("component.yaml", "metadata.yaml", "README.md")]


@pytest.fixture(scope="module")
def recompiled(tmp_path_factory):
    """What 'make compile' would write now, compiled in a fresh process over a copy of the checked-in files.

    The copy keeps each metadata.yaml's last_verified date, as in the repository; the fresh
    process compiles with the default image registry even if PRODML_IMAGE_REGISTRY is set here.
    """
    out = tmp_path_factory.mktemp("recompiled") / "manifests"
    for relative in GENERATED:
        if (MANIFESTS / relative).exists():
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(MANIFESTS / relative, out / relative)
    env = {k: v for k, v in os.environ.items() if k != "PRODML_IMAGE_REGISTRY"}
    subprocess.run([sys.executable, "-m", "prodml.pipelines.cli", "compile", "--output-dir", str(out)],
                   check=True, capture_output=True, env=env, timeout=300)
    return out


# (b) The checked-in YAML is what the code compiles to now.
@pytest.mark.parametrize("relative", GENERATED)
def test_checked_in_manifest_matches_the_code(recompiled, relative):
    checked_in = MANIFESTS / relative
    assert checked_in.exists(), f"manifests/{relative} is missing: run 'make compile' and commit the result."
    expected = (recompiled / relative).read_text(encoding="utf-8")
    actual = checked_in.read_text(encoding="utf-8")
    if actual != expected:
        diff = list(difflib.unified_diff(actual.splitlines(), expected.splitlines(), "checked in",
                                         "compiled now", lineterm="", n=1))
        pytest.fail(f"manifests/{relative} is out of date with the code: run 'make compile' and commit the "
                    "result.\n" + "\n".join(diff[:40]))


# (c) An interface change needs a version bump.
@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_interface_changes_come_with_a_version_bump(recompiled, name):
    recorded = read_metadata(str(MANIFESTS / "components" / name / "metadata.yaml"))
    with open(recompiled / "components" / name / "component.yaml", encoding="utf-8") as f:
        current = interface_of(yaml.safe_load(f))
    problem = version_problem(name, recorded, current, VERSIONS[name])
    assert problem is None, problem


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_metadata_records_version_stability_and_verified_libraries(name):
    meta = read_metadata(str(MANIFESTS / "components" / name / "metadata.yaml"))
    assert meta["name"] == name and meta["version"] == VERSIONS[name]
    assert meta["stability"] == "beta"
    assert meta["image"].rsplit(":", 1)[1] not in ("", "latest")
    assert meta["verified_with"]["kfp"] == importlib_metadata.version("kfp")
    datetime.date.fromisoformat(meta["last_verified"])
    assert set(meta["interface"]) == {"inputs", "outputs"}


SNAPSHOT = {"inputs": {"examples": {"type": "system.Dataset@0.0.1", "optional": False},
                       "label": {"type": "STRING", "optional": False},
                       "seed": {"type": "NUMBER_INTEGER", "optional": True}},
            "outputs": {"model": {"type": "system.Model@0.0.1"}}}


def _changed(**changes):
    interface = json.loads(json.dumps(SNAPSHOT))
    for path, value in changes.items():
        side, name = path.split("__")
        if value is None:
            del interface[side][name]
        else:
            interface[side][name] = value
    return interface


@pytest.mark.parametrize("change, needed", [
    ({"inputs__label": None}, "major"),
    ({"outputs__model": None}, "major"),
    ({"inputs__seed": {"type": "STRING", "optional": True}}, "major"),
    ({"inputs__seed": {"type": "NUMBER_INTEGER", "optional": False}}, "major"),
    ({"inputs__epochs": {"type": "NUMBER_INTEGER", "optional": False}}, "major"),
    ({"inputs__epochs": {"type": "NUMBER_INTEGER", "optional": True}}, "minor"),
    ({"inputs__label": {"type": "STRING", "optional": True}}, "minor"),
    ({"outputs__report": {"type": "system.Markdown@0.0.1"}}, "minor"),
    ({}, None),
])
def test_the_bump_an_interface_change_needs(change, needed):
    assert required_bump(SNAPSHOT, _changed(**change)) == needed


def test_an_unversioned_interface_change_fails_with_what_to_do():
    recorded = {"version": "1.0.0", "interface": SNAPSHOT}
    problem = version_problem("train", recorded, _changed(inputs__label=None), "1.0.0")
    assert "component 'train'" in problem and "input label removed" in problem
    assert "major version bump" in problem
    assert "Bump 'train' in pipelines/component_versions.py and run 'make compile'" in problem
    assert version_problem("train", recorded, _changed(inputs__label=None), "1.1.0") is not None
    assert version_problem("train", recorded, _changed(inputs__label=None), "2.0.0") is None
    added = _changed(inputs__epochs={"type": "NUMBER_INTEGER", "optional": True})
    assert version_problem("train", recorded, added, "1.0.1") is not None
    assert version_problem("train", recorded, added, "1.1.0") is None


# (d) A component YAML whose version does not match its code is refused, naming the component.
def test_the_checked_in_yaml_is_the_version_the_code_declares():
    for name in COMPONENTS:
        assert verify_manifest(name, str(MANIFESTS / "components" / name / "component.yaml")) == VERSIONS[name]
    assert load_component("validate").name == "validate"


def test_a_yaml_of_another_version_is_refused(tmp_path):
    stale = tmp_path / "component.yaml"
    text = (MANIFESTS / "components" / "validate" / "component.yaml").read_text(encoding="utf-8")
    stale.write_text(text.replace(f"# prodml component: validate {VERSIONS['validate']}",
                                  "# prodml component: validate 0.9.0"), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        verify_manifest("validate", str(stale))
    message = str(error.value)
    assert "component 'validate'" in message and "0.9.0" in message and VERSIONS["validate"] in message
    assert "make compile" in message and str(stale) in message


def test_a_yaml_of_another_component_or_without_header_is_refused(tmp_path):
    other = tmp_path / "component.yaml"
    shutil.copy(MANIFESTS / "components" / "ingest" / "component.yaml", other)
    with pytest.raises(ConfigError, match="holds component 'ingest', not 'validate'"):
        verify_manifest("validate", str(other))
    bare = tmp_path / "bare.yaml"
    bare.write_text("\n".join(line for line in other.read_text(encoding="utf-8").splitlines()
                              if not line.startswith("# prodml component:")), encoding="utf-8")
    with pytest.raises(ConfigError, match="not written by 'make compile'"):
        verify_manifest("ingest", str(bare))
    with pytest.raises(ConfigError, match="no prodml component 'validator'.*validate"):
        load_component("validator")
    with pytest.raises(ConfigError, match="Component 'push' has no compiled YAML"):
        load_component("push", manifests_dir=str(tmp_path))


# (e) Another team's pipeline, built only from the YAML files and run locally.
REUSE_SCRIPT = textwrap.dedent('''
    import json, sys
    from kfp import components, dsl, local
    from kfp.dsl import HTML, Markdown

    manifests, data, root = sys.argv[1:4]
    ingest = components.load_component_from_file(manifests + "/components/ingest/component.yaml")
    validate = components.load_component_from_file(manifests + "/components/validate/component.yaml")

    @dsl.pipeline(name="another-team-data-check")
    def data_check(data_uri: str, label: str) -> HTML:
        examples = ingest(data_uri=data_uri, label=label, drop_columns=["tips"]).outputs["examples"]
        return validate(examples=examples).outputs["statistics_view"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True)
    view = data_check(data_uri=data, label="big_tipper").output
    assert not any(m == "prodml" or m.startswith("prodml.") for m in sys.modules), "the pipeline imported prodml"
    print("RESULT " + json.dumps({"statistics_view": view.path}))
''')


def test_a_new_pipeline_from_the_yaml_files_alone_runs_locally(tmp_path):
    script = tmp_path / "another_team.py"
    script.write_text(REUSE_SCRIPT, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), str(MANIFESTS), str(TAXI_SMALL), str(tmp_path / "root")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [result] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    view = pathlib.Path(json.loads(result[len("RESULT "):])["statistics_view"])
    assert "<" in view.read_text(encoding="utf-8")[:200]
    run_dir = view.parent.parent
    data_version = json.loads((run_dir / "ingest" / "examples" / "data_version.json").read_text())
    assert sum(data_version["row_counts"].values()) == 3000
    assert (run_dir / "validate" / "anomalies").stat().st_size > 0
