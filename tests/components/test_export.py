"""Export: edge models (TFLite, ONNX) converted from the raw-feature signature predict what the SavedModel does.

Real converters and runtimes throughout: tf.lite.TFLiteConverter and tf.lite.Interpreter, tf2onnx and
onnxruntime. The trained taxi model carries the embedded tf.Transform graph (vocabularies, imputation,
z-scores), so parity on its eval rows, missing values included, proves the transform is inside the files.
"""

import ast
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from prodml.components.common import artifacts, dataio, defaults, keys
from prodml.components.common.errors import ConfigError
from prodml.components.export import parity, saved_model
from prodml.components.export import rows as r
from prodml.components.export.executor import check_formats, metric_values, run_export

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(REPO, "components", "export", "README.md")


# ---- fast: decisions without a model -------------------------------------------------------------

def test_unknown_format_is_a_usage_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="Unknown edge format 'coreml' in export_formats: choose from onnx, tflite"):
        run_export(str(tmp_path / "model"), str(tmp_path / "examples"), str(tmp_path / "out"), ["tflite", "coreml"])
    assert not (tmp_path / "out").exists()


def test_formats_are_kept_in_order_once():
    assert check_formats(["onnx", "tflite", "onnx"]) == ["onnx", "tflite"]
    assert check_formats([]) == []


def test_no_format_writes_an_empty_export_without_loading_tensorflow(tmp_path):
    """The pipeline's default (export_formats=[]) must stay cheap: no TensorFlow import, no model read."""
    code = ("import sys, json\n"
            "from prodml.components.export.executor import run_export\n"
            f"result = run_export('/nonexistent/model', '/nonexistent/examples', {str(tmp_path)!r}, [])\n"
            "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'formats': result['formats']}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == {"tf": False, "formats": {}}
    assert artifacts.EdgeExport.read(str(tmp_path)).formats == {}


def test_parity_is_the_largest_absolute_difference():
    assert parity.max_difference(np.array([0.5, 0.25]), np.array([0.5, 0.2500002])) == pytest.approx(2e-7)
    assert parity.max_difference(np.array([0.5, 0.25]), np.array([0.5])) == float("inf")
    assert parity.max_difference(np.array([0.5]), np.array([np.nan])) == float("inf")
    assert parity.parity("onnx", 2e-7, 1e-4, 10).passed
    failed = parity.parity("tflite", 0.01, 1e-4, 10)
    assert not failed.passed and "largest difference 0.01 > 0.0001, so it is not written" in failed.reason


def test_the_component_default_is_the_one_in_defaults():
    from prodml.components.export.component import export

    assert export.component_spec.inputs["max_difference"].default == defaults.EXPORT_MAX_DIFFERENCE
    assert export.component_spec.inputs["export_formats"].default == []


# ---- a small hand-made model: the refusal paths --------------------------------------------------

@pytest.fixture(scope="module")
def hashing_model(tmp_path_factory):
    """A raw-signature SavedModel hashing `company` into 10 buckets, which no ONNX operator can do."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[{"company": tf.TensorSpec([None], tf.string, name="company"),
                                       "fare": tf.TensorSpec([None], tf.float32, name="fare")}])
        def serve(self, inputs):
            bucket = tf.cast(tf.strings.to_hash_bucket_fast(inputs["company"], 10), tf.float32)
            fare = tf.where(tf.math.is_nan(inputs["fare"]), 0.0, inputs["fare"])
            return {keys.PREDICTIONS: tf.sigmoid(0.03 * fare + 0.1 * bucket - 0.5)}

    folder = tmp_path_factory.mktemp("hashing_model")
    module = Model()
    tf.saved_model.save(module, str(folder), signatures={keys.RAW_SIGNATURE: module.serve.get_concrete_function()})
    artifacts.ModelInfo(label=artifacts.Label("big_tipper", keys.BINARY, ["0", "1"]),
                        raw_features={"company": keys.BYTES, "fare": keys.FLOAT}).write(str(folder))
    return str(folder)


@pytest.mark.slow
def test_a_format_the_converter_refuses_is_not_written_and_says_why(hashing_model, ingested, tmp_path):
    result = run_export(hashing_model, str(ingested), str(tmp_path), ["tflite", "onnx"], parity_rows=32,
                        latency_rows=5)
    onnx, tflite = result["formats"]["onnx"], result["formats"]["tflite"]
    assert not onnx["written"] and onnx["file"] is None
    assert onnx["reason"].startswith("onnx conversion failed: ")
    assert "StringToHashBucketFast with 10 buckets" in onnx["reason"] and "Fingerprint64" in onnx["reason"]
    assert not (tmp_path / keys.EDGE_DIR / keys.EDGE_FILES[keys.ONNX]).exists()
    # TFLite runs the same hash as a Select TF op, so it matches and is written.
    assert tflite["written"] and tflite["max_difference"] <= defaults.EXPORT_MAX_DIFFERENCE
    assert (tmp_path / tflite["file"]).is_file()
    assert artifacts.EdgeExport.read(str(tmp_path)).written() == {keys.TFLITE: "edge/model.tflite"}
    assert metric_values(result)["onnx_written"] == 0.0 and metric_values(result)["tflite_written"] == 1.0


@pytest.mark.slow
def test_a_format_outside_the_tolerance_is_not_written(hashing_model, ingested, tmp_path):
    """A bound below what TFLite's float32 sigmoid reaches: the file is dropped, the difference recorded."""
    result = run_export(hashing_model, str(ingested), str(tmp_path), ["tflite"], max_difference=1e-30,
                        parity_rows=64, latency_rows=0)
    tflite = result["formats"]["tflite"]
    assert tflite["max_difference"] > 1e-30, "the runtimes agree to the last bit: pick a bound they miss"
    assert not tflite["written"] and not (tmp_path / keys.EDGE_DIR).exists()
    assert "differs from the SavedModel on 64 eval rows" in tflite["reason"]


# ---- the trained taxi model: the transform travels inside each file ------------------------------

@pytest.fixture(scope="module")
def exported(trained, ingested, tmp_path_factory):
    """Both formats of the trained default model (the fixture of every other executor test)."""
    folder = tmp_path_factory.mktemp("edge_models")
    result = run_export(str(trained), str(ingested), str(folder), [keys.TFLITE, keys.ONNX], parity_rows=128,
                        latency_rows=20, report_path=str(folder / "report.md"))
    return folder, result


@pytest.mark.slow
def test_both_formats_match_the_saved_model_from_raw_features(exported, trained, ingested):
    folder, result = exported
    for name in (keys.TFLITE, keys.ONNX):
        entry = result["formats"][name]
        assert entry["written"], entry["reason"]
        assert entry["file"] == f"edge/{keys.EDGE_FILES[name]}" and (folder / entry["file"]).is_file()
        assert entry["size_bytes"] == (folder / entry["file"]).stat().st_size
        assert entry["max_difference"] <= defaults.EXPORT_MAX_DIFFERENCE
        assert entry["p50_ms"] > 0 and entry["saved_model_p50_ms"] > 0 and entry["latency_rows"] == 20
    # Checked again here, independently of the executor, on rows with missing strings and numbers.
    from prodml.components.export import onnx_format, tflite_format

    info = artifacts.ModelInfo.read(str(trained))
    rows = r.read_eval_rows(str(ingested), info.raw_features, 200)
    assert (rows["company"] == b"").any() and np.isnan(rows["dropoff_census_tract"]).any()
    expected = saved_model.load(str(trained))(rows)
    for module, name in ((tflite_format, keys.TFLITE), (onnx_format, keys.ONNX)):
        got = module.load(str(folder / keys.EDGE_DIR / keys.EDGE_FILES[name]))(rows)
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4, name
    assert len(set(np.round(expected, 3))) > 20  # real predictions, not a constant
    report = (folder / "report.md").read_text()
    assert "| onnx | yes |" in report and "| tflite | yes |" in report


def _snippets():
    """The ```python blocks under the "### TFLite" and "### ONNX" headings of components/export/README.md."""
    text = open(README, encoding="utf-8").read()
    found = {}
    for title in ("TFLite", "ONNX"):
        section = text.split(f"### {title}\n", 1)[1]
        found[title] = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("title", ["TFLite", "ONNX"])
def test_the_readme_snippet_runs_as_written(title, exported, trained, tmp_path):
    """Run from a folder laid out as a pushed version (edge/...), with nothing of prodml imported."""
    folder, _ = exported
    snippet = _snippets()[title]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['prodml'] = None\n" + snippet],
                         cwd=folder, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    printed = float(re.findall(r"\[([0-9.e+-]+)\]", out.stdout)[-1])
    # The same row through the SavedModel: the features the snippet gives, every other one missing.
    row = re.search(r"row = (\{.*?\})\n", snippet, re.S).group(1)
    given = ast.literal_eval(row)
    info = artifacts.ModelInfo.read(str(trained))
    rows = {name: np.array([given.get(name, "" if kind == keys.BYTES else np.nan)], r.NUMPY_DTYPES[kind])
            for name, kind in info.raw_features.items()}
    rows = {name: (np.array([v.encode() for v in values], object) if values.dtype == object else values)
            for name, values in rows.items()}
    assert printed == pytest.approx(float(saved_model.load(str(trained))(rows)[0]), abs=1e-4)


@pytest.mark.slow
def test_push_puts_the_edge_models_beside_the_saved_model(exported, trained, ingested, tmp_path):
    from prodml.components.push.executor import run_push

    folder, result = exported
    blessing, evaluation = tmp_path / "blessing", tmp_path / "evaluation"
    artifacts.Blessing(blessed=True, reasons=["auc 0.9 > baseline 0.5 (majority class)"]).write(str(blessing))
    artifacts.Evaluation(metrics={"auc": 0.9}, key_metric="auc",
                         baseline={"name": "majority class", "metrics": {"auc": 0.5}}).write(str(evaluation))
    pushed = run_push(model_dir=str(trained), blessing_dir=str(blessing), evaluation_dir=str(evaluation),
                      examples_dir=str(ingested), registry_uri=str(tmp_path / "registry"), model_name="taxi",
                      edge_models_dir=str(folder))
    version = pushed["uri"]
    for name in (keys.TFLITE, keys.ONNX):
        pushed_file = os.path.join(version, keys.EDGE_DIR, keys.EDGE_FILES[name])
        assert open(pushed_file, "rb").read() == (folder / keys.EDGE_DIR / keys.EDGE_FILES[name]).read_bytes()
    assert os.path.isfile(os.path.join(version, "saved_model.pb"))
    card = artifacts.ModelCard.read(version).content
    assert card["edge_formats"] == json.loads(json.dumps(result["formats"]))
    markdown = dataio.read_text(os.path.join(version, keys.MODEL_CARD_MD))
    assert "## Edge formats" in markdown
    assert re.search(r"\| onnx \| `edge/model.onnx` \| 0\.\d\d MB \| [0-9.e-]+ \| [0-9.]+ ms \| [0-9.]+ ms \|",
                     markdown)
