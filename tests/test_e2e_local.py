"""End to end: the whole training pipeline through kfp.local on a subsample, twice.

Checks the registry layout, the raw-feature signature, the MLMD records of all seven steps,
and that a second run that is not better leaves the registry unchanged.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import LABEL, TAXI_SMALL

pytestmark = pytest.mark.e2e
STEPS = ("ingest", "validate", "transform", "train", "evaluate", "infra_validate", "push")


def _prodml(*args, env=None):
    return subprocess.run([sys.executable, "-m", "prodml.pipelines.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=1200)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("home")
    result = _prodml("run", "training", "--data", str(TAXI_SMALL), "--label", LABEL, "--model-name", "taxi",
                     "--drop-columns", "tips", "--epochs", "3", "--slice-feature", "payment_type",
                     "--root", str(root), "--json")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return root, json.loads(result.stdout.strip().splitlines()[-1]), result


def test_summary_json(first_run):
    root, summary, _ = first_run
    assert set(summary) >= {"run_id", "metrics", "blessed", "pushed", "metadata_db"}
    assert summary["blessed"] is True
    assert summary["pushed"]["version"] == 1
    assert summary["pushed"]["uri"] == str(root / "registry" / "taxi" / "1")
    assert 0.8 < summary["metrics"]["auc"] <= 1.0
    assert 0.5 < summary["metrics"]["accuracy"] <= 1.0
    assert summary["metadata_db"] == str(root / "metadata.sqlite")


def test_progress_is_shown_per_component_without_tensorflow_noise(first_run):
    _, _, result = first_run
    for task in (step.replace("_", "-") for step in STEPS):  # kfp.local names tasks with hyphens
        assert f"▶ {task}" in result.stderr and f"✔ {task} success" in result.stderr
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()


def test_registry_layout(first_run):
    root, _, _ = first_run
    version = root / "registry" / "taxi" / "1"
    assert sorted(os.listdir(root / "registry" / "taxi")) == ["1"]
    for name in ("saved_model.pb", "variables", "model_card.md", "model_card.json", "inferenceservice.yaml"):
        assert (version / name).exists(), name
    card = json.loads((version / "model_card.json").read_text())
    assert card["version"] == 1


def test_raw_feature_signature_predicts(first_run):
    import numpy as np
    import tensorflow as tf

    root, _, _ = first_run
    model = tf.saved_model.load(str(root / "registry" / "taxi" / "1"))
    serve = model.signatures["serving_default"]
    specs = serve.structured_input_signature[1]
    assert LABEL not in specs and "tips" not in specs and "fare" in specs
    batch = {}
    for name, spec in specs.items():
        if spec.dtype == tf.string:
            batch[name] = tf.constant(["Cash", ""] if name == "payment_type" else ["", ""])
        else:
            batch[name] = tf.constant([10.0, float("nan")], dtype=spec.dtype)
    predictions = serve(**batch)["predictions"].numpy()
    assert predictions.shape == (2,)
    assert np.all((predictions >= 0) & (predictions <= 1))


def test_mlmd_records_every_step(first_run):
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    from prodml.components.common import lineage

    root, summary, _ = first_run
    store = lineage.connect(f"sqlite://{root / 'metadata.sqlite'}")
    executions = store.get_executions()
    by_component = {lineage.properties_of(e)["component"]: e for e in executions}
    assert set(STEPS) <= set(by_component)
    for step in STEPS:
        events = store.get_events_by_execution_ids([by_component[step].id])
        kinds = {e.type for e in events}
        assert mlmd.Event.OUTPUT in kinds, step
        if step != "ingest":
            assert mlmd.Event.INPUT in kinds, step
        contexts = store.get_contexts_by_execution(by_component[step].id)
        assert {c.name for c in contexts} == {"prodml-training", summary["run_id"]}
    types = {t.name for t in store.get_artifact_types()}
    assert {"system.Dataset", "system.Model", "system.Metrics", "system.HTML"} <= types
    run = store.get_context_by_type_and_name("system.PipelineRun", summary["run_id"])
    assert [p.name for p in store.get_parent_contexts_by_context(run.id)] == ["prodml-training"]


def test_lineage_goes_from_version_to_data_fingerprint(first_run):
    root, summary, _ = first_run
    result = _prodml("lineage", "--model-name", "taxi", "--root", str(root), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["component"] for s in report["chain"]] == ["push", "train", "transform", "ingest"]
    assert report["source"]["uri"] == str(TAXI_SMALL)
    assert report["source"]["properties"]["sha256"] == summary["data_version"]["sha256"]


def test_second_run_that_is_not_better_leaves_registry_unchanged(first_run):
    root, _, _ = first_run
    before = sorted(os.listdir(root / "registry" / "taxi"))
    result = _prodml("run", "training", "--data", str(TAXI_SMALL), "--label", LABEL, "--model-name", "taxi",
                     "--drop-columns", "tips", "--epochs", "3", "--root", str(root), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["blessed"] is False and summary["pushed"] is None
    assert any("pushed" in reason for reason in summary["reasons"])
    assert sorted(os.listdir(root / "registry" / "taxi")) == before == ["1"]


def test_any_tabular_csv_without_user_code(tmp_path):
    """A regression on a made-up CSV: no taxi columns, a string feature with holes, no user code."""
    import numpy as np

    rng = np.random.default_rng(7)
    n = 800
    size = rng.uniform(20, 200, n)
    rooms = rng.integers(1, 6, n)
    district = rng.choice(["north", "south", "east", "west"], n)
    price = 3 * size + 10 * rooms + np.select([district == "north", district == "south"], [50, -30], 0) \
        + rng.normal(0, 5, n)
    lines = ["Floor Area (m2),rooms,district,price"]
    for i in range(n):
        lines.append(f"{size[i]:.1f},{rooms[i]},{'' if i % 13 == 0 else district[i]},{price[i]:.2f}")
    data = tmp_path / "houses.csv"
    data.write_text("\n".join(lines) + "\n")

    # Default settings: a user does not tune epochs for a label in the hundreds.
    result = _prodml("run", "training", "--data", str(data), "--label", "price", "--model-name", "houses",
                     "--root", str(tmp_path / "home"), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary["metrics"]) >= {"rmse", "mae"}
    assert summary["blessed"] and summary["pushed"]["version"] == 1
    card = json.loads((tmp_path / "home" / "registry" / "houses" / "1" / "model_card.json").read_text())
    assert card["label"]["problem_type"] == "regression"
    assert "Floor_Area__m2_" in card["raw_features"]  # sanitised to a valid signature name
    assert summary["metrics"]["rmse"] < float(np.std(price))  # beats predicting the mean
