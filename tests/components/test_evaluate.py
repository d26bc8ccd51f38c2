"""Evaluate: metrics against scikit-learn and hand computations, slices, and the blessing checks.

Most tests use tiny "pass-through" SavedModels whose ``serving_examples`` signature returns a
feature of the example as its prediction, so the expected metrics follow from the data alone.
The last tests evaluate the real trained model of the session fixtures.
"""

import json
import math
import os
import shutil

import numpy as np
import pytest
from sklearn import metrics as skm

from prodml.components.common import dataio, keys, registry
from prodml.components.common import metrics as m
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.evaluate import slices
from prodml.components.evaluate.executor import run_evaluate

BINARY_LABEL = {"name": "y", "problem_type": keys.BINARY, "classes": ["0", "1"]}
COLUMNS = {"y": keys.INT, "good": keys.FLOAT, "noise": keys.FLOAT, "company": keys.BYTES, "hour": keys.INT}
RAW_FEATURES = {k: v for k, v in COLUMNS.items() if k != "y"}


# ---- small artifacts ---------------------------------------------------------------------------

def _feature(value):
    import tensorflow as tf

    if isinstance(value, str):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    if isinstance(value, (int, np.integer)):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def write_examples(folder, rows, columns, label):
    """An examples artifact with only an eval split; None values are absent features."""
    import tensorflow as tf

    split = dataio.split_dir(str(folder), keys.EVAL)
    os.makedirs(split, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(split, "data-00000-of-00001.tfrecord.gz"), options="GZIP") as w:
        for row in rows:
            features = {k: _feature(v) for k, v in row.items() if v is not None}
            w.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    dataio.write_json(os.path.join(folder, keys.DATA_VERSION_FILE), {
        "source_uri": "test", "sha256": "0" * 64, "size_bytes": 1, "row_counts": {keys.EVAL: len(rows)},
        "split_ratios": {keys.EVAL: 1.0}, "columns": columns, "dropped_columns": [], "label": label})
    return str(folder)


def export_passthrough(folder, features, label, raw_features=RAW_FEATURES):
    """A SavedModel whose prediction is the example's float feature (a column per feature if several)."""
    import tensorflow as tf

    class Passthrough(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(1.0)  # a variable, so the loaded model must stay alive while used

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            spec = {f: tf.io.FixedLenFeature([], tf.float32, default_value=0.0) for f in features}
            parsed = tf.io.parse_example(examples, spec)
            columns = [parsed[f] * self.scale for f in features]
            return {keys.PREDICTIONS: columns[0] if len(columns) == 1 else tf.stack(columns, axis=1)}

    module = Passthrough()
    tf.saved_model.save(module, str(folder), signatures={keys.EXAMPLES_SIGNATURE: module.serve})
    dataio.write_json(os.path.join(folder, keys.MODEL_INFO_FILE),
                      {"label": label, "raw_features": raw_features, "signatures": {}, "params": {}})
    return str(folder)


def publish_model(registry_uri, name, model_dir) -> int:
    return registry.publish(str(registry_uri), name, lambda staging: shutil.copytree(model_dir, staging))


@pytest.fixture(scope="module")
def binary_case(tmp_path_factory):
    """Eval examples with an informative score ``good``, a useless one ``noise``, and slice features."""
    root = tmp_path_factory.mktemp("binary")
    rng = np.random.default_rng(0)
    n = 300
    y = (rng.random(n) < 0.3).astype(int)
    good = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, n), 0, 1).astype(np.float32)
    noise = rng.random(n).astype(np.float32)
    companies = [f"c{i:02d}" for i in range(25)]
    company = [None if i % 17 == 0 else companies[min(int(rng.exponential(6)), 24)] for i in range(n)]
    hour = rng.integers(0, 4, n)
    rows = [{"y": int(y[i]), "good": float(good[i]), "noise": float(noise[i]), "company": company[i],
             "hour": int(hour[i])} for i in range(n)]
    return {
        "examples": write_examples(root / "examples", rows, COLUMNS, BINARY_LABEL),
        "good": export_passthrough(root / "good", ["good"], BINARY_LABEL),
        "noise": export_passthrough(root / "noise", ["noise"], BINARY_LABEL),
        "constant": export_passthrough(root / "constant", ["absent"], BINARY_LABEL),
        "y": y, "good_scores": good, "noise_scores": noise, "company": company, "hour": hour,
    }


def _evaluate(case, model, tmp_path, **kwargs):
    return run_evaluate(model_dir=case[model], examples_dir=case["examples"],
                        evaluation_dir=str(tmp_path / "evaluation"), blessing_dir=str(tmp_path / "blessing"),
                        **kwargs)


def _json(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


# ---- metrics -----------------------------------------------------------------------------------

def test_binary_metrics_hand_computed():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    got = m.compute(keys.BINARY, y, p)
    # Of the 4 (positive, negative) pairs only (0.35, 0.4) is ranked wrong; at 0.5 only 0.8 is positive.
    assert got["auc"] == pytest.approx(0.75)
    assert got["accuracy"] == pytest.approx(0.75)
    assert got["precision"] == pytest.approx(1.0)
    assert got["recall"] == pytest.approx(0.5)
    assert got["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)
    assert got["example_count"] == 4
    assert m.confusion_matrix(keys.BINARY, y, p, ["0", "1"]) == {"labels": ["0", "1"], "matrix": [[2, 0], [1, 1]]}
    fpr, tpr, _ = skm.roc_curve(y, p)
    roc = m.roc_curve(y, p)
    assert [(r["fpr"], r["tpr"]) for r in roc] == list(zip(fpr, tpr))
    assert roc[0]["threshold"] == 1.0  # scikit-learn's infinite first threshold, kept JSON-safe


def test_multiclass_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[y]
    p = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    got = m.compute(keys.MULTICLASS, y, p, 3)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, p.astype(np.float64), multi_class="ovr"))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(axis=1)))
    p64 = p.astype(np.float64) / p.astype(np.float64).sum(axis=1, keepdims=True)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p64))
    assert got["precision"] == pytest.approx(skm.precision_score(y, p.argmax(axis=1), average="macro"))
    assert got["recall"] == pytest.approx(skm.recall_score(y, p.argmax(axis=1), average="macro"))
    matrix = m.confusion_matrix(keys.MULTICLASS, y, p, ["a", "b", "c"])["matrix"]
    assert matrix == skm.confusion_matrix(y, p.argmax(axis=1)).tolist()


def test_regression_metrics_hand_computed():
    got = m.compute(keys.REGRESSION, np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0]))
    assert got == {"example_count": 4, "rmse": pytest.approx(1.0), "mae": pytest.approx(0.5),
                   "r2": pytest.approx(1 - 4 / 5)}


def test_baseline_is_the_prior_or_the_mean():
    y = np.array([0, 0, 0, 1])
    base = m.compute(keys.BINARY, y, m.baseline_predictions(keys.BINARY, y))
    assert base["auc"] == pytest.approx(0.5)
    assert base["accuracy"] == pytest.approx(0.75)
    assert base["log_loss"] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    y3 = np.array([0, 1, 1, 2, 1])
    assert m.compute(keys.MULTICLASS, y3, m.baseline_predictions(keys.MULTICLASS, y3, 3), 3)["accuracy"] == 0.6
    values = np.array([1.0, 2.0, 3.0, 6.0])
    base = m.compute(keys.REGRESSION, values, m.baseline_predictions(keys.REGRESSION, values))
    assert base["rmse"] == pytest.approx(np.std(values))


def test_undefined_metrics_are_left_out():
    got = m.compute(keys.BINARY, np.array([1, 1]), np.array([0.2, 0.9]))
    assert "auc" not in got and got["accuracy"] == 0.5
    assert m.roc_curve(np.array([1, 1]), np.array([0.2, 0.9])) is None
    assert "r2" not in m.compute(keys.REGRESSION, np.array([2.0]), np.array([1.0]))


def test_roc_curve_is_thinned_to_200_points():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 5000)
    roc = m.roc_curve(y, rng.random(5000) + 0.3 * y)
    assert 100 < len(roc) <= m.MAX_ROC_POINTS
    assert (roc[0]["fpr"], roc[0]["tpr"]) == (0.0, 0.0) and (roc[-1]["fpr"], roc[-1]["tpr"]) == (1.0, 1.0)
    assert all(a["fpr"] <= b["fpr"] and a["tpr"] <= b["tpr"] for a, b in zip(roc, roc[1:]))


def test_slice_names_keep_the_most_frequent_values():
    values = [f"v{i:02d}" for i in range(25) for _ in range(30 - i)] + [None] * 3
    names = slices.slice_names(values)
    assert set(names) == {f"v{i:02d}" for i in range(20)} | {slices.OTHER, slices.MISSING}
    assert np.sum(names == slices.OTHER) == sum(30 - i for i in range(20, 25))
    assert np.sum(names == slices.MISSING) == 3
    assert slices.format_value(3, keys.INT) == "3"
    assert slices.format_value(np.float32(0.1), keys.FLOAT) == "0.1"
    assert slices.format_value(b"Cash", keys.BYTES) == "Cash"


# ---- run_evaluate on pass-through models --------------------------------------------------------

def test_evaluate_streams_the_serving_path_and_matches_sklearn(binary_case, tmp_path):
    result = _evaluate(binary_case, "good", tmp_path, slice_feature="company", batch_size=16)
    y, p = binary_case["y"], binary_case["good_scores"]
    assert result["metrics"]["example_count"] == len(y)
    assert result["metrics"]["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert result["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
    assert result["metrics"]["log_loss"] == pytest.approx(skm.log_loss(y, p.astype(np.float64)), rel=1e-5)
    assert result["confusion_matrix"] == {"labels": ["0", "1"],
                                          "matrix": skm.confusion_matrix(y, p >= 0.5).tolist()}
    assert 2 < len(result["roc"]) <= m.MAX_ROC_POINTS
    assert result["blessed"] is True
    assert result["reasons"][0].startswith("auc ") and "> baseline 0.5 (majority class)" in result["reasons"][0]
    assert result["reasons"][-1] == "no pushed model yet"

    company_slices = result["slices"]["company"]
    assert sum(s["example_count"] for s in company_slices.values()) == len(y)
    assert company_slices[slices.MISSING]["example_count"] == sum(c is None for c in binary_case["company"])
    assert len(company_slices) <= slices.MAX_SLICES + 2
    c00 = np.array([c == "c00" for c in binary_case["company"]])
    assert company_slices["c00"]["accuracy"] == pytest.approx(skm.accuracy_score(y[c00], p[c00] >= 0.5))

    evaluation = _json(tmp_path / "evaluation", keys.EVALUATION_FILE)
    assert evaluation["metrics"] == pytest.approx(result["metrics"])
    assert evaluation["slices"]["company"].keys() == company_slices.keys()
    assert evaluation["baseline"]["metrics"]["auc"] == pytest.approx(0.5)
    assert evaluation["baseline"]["metrics"]["accuracy"] == pytest.approx(1 - y.mean())
    assert evaluation["candidate_vs_pushed"] == {"version": None}
    assert _json(tmp_path / "blessing", keys.BLESSING_FILE) == {
        "blessed": True, "reasons": result["reasons"], "compared_to": None}


def test_numeric_slice_feature(binary_case, tmp_path):
    result = _evaluate(binary_case, "good", tmp_path, slice_feature="hour")
    counts = {str(h): int(np.sum(binary_case["hour"] == h)) for h in range(4)}
    assert {k: v["example_count"] for k, v in result["slices"]["hour"].items()} == counts


def test_unknown_slice_feature_lists_the_features(binary_case, tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown slice feature 'colour'.*company, good, hour, noise"):
        _evaluate(binary_case, "good", tmp_path, slice_feature="colour")


def test_constant_model_does_not_beat_the_baseline(binary_case, tmp_path):
    result = _evaluate(binary_case, "constant", tmp_path)
    assert result["blessed"] is False
    assert result["reasons"][0] == "auc 0.5 does not beat baseline 0.5 (majority class)"


def test_thresholds_are_minimums_or_maximums(binary_case, tmp_path):
    auc = _evaluate(binary_case, "good", tmp_path)["metrics"]["auc"]
    result = _evaluate(binary_case, "good", tmp_path, thresholds={"auc": 0.999, "log_loss": 5, "example_count": 300})
    assert result["blessed"] is False
    assert f"auc {auc:.4g} < threshold 0.999" in result["reasons"]
    assert any(r.startswith("log_loss ") and r.endswith("≤ threshold 5") for r in result["reasons"])
    assert "example_count 300 ≥ threshold 300" in result["reasons"]
    assert _json(tmp_path / "blessing", keys.BLESSING_FILE)["blessed"] is False


@pytest.mark.parametrize("thresholds, match", [({"f1": 0.5}, "Unknown metric 'f1'.*auc, accuracy"),
                                               ({"rmse": 1.0}, "Unknown metric 'rmse'"),
                                               ({"auc": "high"}, "must be a number")])
def test_bad_thresholds_are_config_errors(binary_case, tmp_path, thresholds, match):
    with pytest.raises(ConfigError, match=match):
        _evaluate(binary_case, "good", tmp_path, thresholds=thresholds)
    assert not os.path.exists(tmp_path / "blessing")


def test_candidate_behind_the_pushed_model_is_not_blessed(binary_case, tmp_path):
    reg = tmp_path / "registry"
    publish_model(reg, "taxi", binary_case["good"])
    result = _evaluate(binary_case, "noise", tmp_path, registry_uri=str(reg), model_name="taxi")
    good_auc = skm.roc_auc_score(binary_case["y"], binary_case["good_scores"])
    noise_auc = skm.roc_auc_score(binary_case["y"], binary_case["noise_scores"])
    assert result["blessed"] is False
    assert result["reasons"][-1] == (f"auc {noise_auc:.4g} vs pushed v1 {good_auc:.4g}: behind by "
                                     f"{good_auc - noise_auc:.4g}, more than tolerance 0.01")
    evaluation = _json(tmp_path / "evaluation", keys.EVALUATION_FILE)
    assert evaluation["candidate_vs_pushed"]["pushed"] == pytest.approx(good_auc)
    assert evaluation["candidate_vs_pushed"]["within_tolerance"] is False
    assert _json(tmp_path / "blessing", keys.BLESSING_FILE)["compared_to"] == 1

    lenient = _evaluate(binary_case, "noise", tmp_path, registry_uri=str(reg), model_name="taxi", tolerance=1.0)
    assert lenient["reasons"][-1].endswith("within tolerance 1")


def test_candidate_compared_with_the_latest_pushed_version(binary_case, tmp_path):
    reg = tmp_path / "registry"
    publish_model(reg, "taxi", binary_case["good"])
    publish_model(reg, "taxi", binary_case["noise"])
    result = _evaluate(binary_case, "good", tmp_path, registry_uri=str(reg), model_name="taxi")
    assert result["blessed"] is True
    assert " vs pushed v2 " in result["reasons"][-1] and result["reasons"][-1].endswith("as good or better")


def _publish_with_card(reg, model_dir, sha256):
    def fill(staging):
        shutil.copytree(model_dir, staging)
        with open(os.path.join(staging, keys.MODEL_CARD_JSON), "w", encoding="utf-8") as f:
            json.dump({"data": {"sha256": sha256}}, f)
    return registry.publish(str(reg), "taxi", fill)


def test_rerun_on_the_same_data_and_configuration_is_not_blessed(binary_case, tmp_path):
    reg = tmp_path / "registry"
    sha256 = _json(binary_case["examples"], keys.DATA_VERSION_FILE)["sha256"]
    _publish_with_card(reg, binary_case["good"], sha256)
    result = _evaluate(binary_case, "good", tmp_path, registry_uri=str(reg), model_name="taxi")
    assert result["blessed"] is False
    assert result["reasons"][-1].startswith("re-run of pushed v1: same data (sha256 ")
    assert "does not improve" in result["reasons"][-1]


def test_rerun_that_improves_beyond_tolerance_is_blessed(binary_case, tmp_path):
    reg = tmp_path / "registry"
    sha256 = _json(binary_case["examples"], keys.DATA_VERSION_FILE)["sha256"]
    _publish_with_card(reg, binary_case["noise"], sha256)
    result = _evaluate(binary_case, "good", tmp_path, registry_uri=str(reg), model_name="taxi")
    assert result["blessed"] is True
    assert not any(reason.startswith("re-run") for reason in result["reasons"])


def test_same_model_on_new_data_is_not_a_rerun(binary_case, tmp_path):
    reg = tmp_path / "registry"
    sha256 = _json(binary_case["examples"], keys.DATA_VERSION_FILE)["sha256"]
    _publish_with_card(reg, binary_case["good"], "f" * 64 if sha256 != "f" * 64 else "e" * 64)
    result = _evaluate(binary_case, "good", tmp_path, registry_uri=str(reg), model_name="taxi")
    assert result["blessed"] is True
    assert not any(reason.startswith("re-run") for reason in result["reasons"])


def test_empty_registry_means_no_pushed_model_yet(binary_case, tmp_path):
    result = _evaluate(binary_case, "good", tmp_path, registry_uri=str(tmp_path / "registry"), model_name="taxi")
    assert result["blessed"] is True and result["reasons"][-1] == "no pushed model yet"


def test_pushed_model_with_another_label_is_not_compared(binary_case, tmp_path):
    reg = tmp_path / "registry"
    other = {"name": "tips", "problem_type": keys.REGRESSION, "classes": None}
    publish_model(reg, "taxi", export_passthrough(tmp_path / "other", ["good"], other))
    result = _evaluate(binary_case, "good", tmp_path, registry_uri=str(reg), model_name="taxi")
    assert result["blessed"] is True
    assert result["reasons"][-1].startswith("pushed v1 not compared: it predicts 'tips' (regression)")


def test_registry_without_model_name_is_a_config_error(binary_case, tmp_path):
    with pytest.raises(ConfigError, match="both registry_uri and model_name"):
        _evaluate(binary_case, "good", tmp_path, registry_uri=str(tmp_path))


def test_multiclass_with_string_labels(tmp_path):
    label = {"name": "kind", "problem_type": keys.MULTICLASS, "classes": ["a", "b", "c"]}
    columns = {"kind": keys.BYTES, "p0": keys.FLOAT, "p1": keys.FLOAT, "p2": keys.FLOAT}
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    p = rng.dirichlet([1, 1, 1], 90) * 0.5 + 0.5 * np.eye(3)[y]
    rows = [{"kind": "abc"[y[i]], "p0": p[i, 0], "p1": p[i, 1], "p2": p[i, 2]} for i in range(90)]
    rows.append({"p0": 1.0, "p1": 0.0, "p2": 0.0})  # no label: not evaluated
    examples = write_examples(tmp_path / "examples", rows, columns, label)
    model = export_passthrough(tmp_path / "model", ["p0", "p1", "p2"], label,
                               {k: v for k, v in columns.items() if k != "kind"})
    result = run_evaluate(model, examples, str(tmp_path / "e"), str(tmp_path / "b"), thresholds={"accuracy": 0.5})
    p32 = p.astype(np.float32).astype(np.float64)
    assert result["metrics"]["example_count"] == 90
    assert result["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, p32.argmax(axis=1)))
    assert result["metrics"]["auc"] == pytest.approx(skm.roc_auc_score(y, p32, multi_class="ovr"))
    assert result["confusion_matrix"]["labels"] == ["a", "b", "c"]
    assert result["roc"] is None
    assert result["reasons"][0].endswith("(majority class)") and result["reasons"][0].startswith("accuracy ")


def test_regression_against_the_mean(tmp_path):
    label = {"name": "fare", "problem_type": keys.REGRESSION, "classes": None}
    columns = {"fare": keys.FLOAT, "guess": keys.FLOAT}
    rows = [{"fare": v, "guess": v + d} for v, d in zip([1.0, 2.0, 3.0, 4.0, 10.0], [0.5, -0.5, 0.5, -0.5, 1.0])]
    examples = write_examples(tmp_path / "examples", rows, columns, label)
    model = export_passthrough(tmp_path / "model", ["guess"], label, {"guess": keys.FLOAT})
    result = run_evaluate(model, examples, str(tmp_path / "e"), str(tmp_path / "b"), thresholds={"rmse": 0.5})
    rmse = math.sqrt((4 * 0.25 + 1) / 5)
    assert result["metrics"]["rmse"] == pytest.approx(rmse)
    assert result["metrics"]["mae"] == pytest.approx(0.6)
    assert result["reasons"][0] == f"rmse {rmse:.4g} < baseline {np.std([1, 2, 3, 4, 10]):.4g} (mean)"
    assert result["reasons"][1] == f"rmse {rmse:.4g} > threshold 0.5"
    assert result["blessed"] is False
    assert result["confusion_matrix"] is None and result["roc"] is None


def test_label_outside_the_classes_is_an_input_error(tmp_path):
    rows = [{"y": 0, "good": 0.1}, {"y": 2, "good": 0.9}]
    examples = write_examples(tmp_path / "examples", rows, COLUMNS, BINARY_LABEL)
    model = export_passthrough(tmp_path / "model", ["good"], BINARY_LABEL)
    with pytest.raises(InputDataError, match=r"Eval label 'y' has values \[2.0\].*classes \['0', '1'\]"):
        run_evaluate(model, examples, str(tmp_path / "e"), str(tmp_path / "b"))


def test_examples_the_model_cannot_read_are_an_input_error(tmp_path):
    columns = {"y": keys.INT, "good": keys.BYTES}  # the model parses 'good' as a float
    examples = write_examples(tmp_path / "examples", [{"y": 1, "good": "high"}], columns, BINARY_LABEL)
    model = export_passthrough(tmp_path / "model", ["good"], BINARY_LABEL)
    with pytest.raises(InputDataError, match="'serving_examples' signature cannot read the eval examples"):
        run_evaluate(model, examples, str(tmp_path / "e"), str(tmp_path / "b"))


def test_model_without_examples_signature_is_a_config_error(tmp_path, binary_case):
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda x: {"predictions": x}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"serving_default": module.f})
    dataio.write_json(str(tmp_path / "model" / keys.MODEL_INFO_FILE), {"label": BINARY_LABEL, "raw_features": {}})
    with pytest.raises(ConfigError, match="no 'serving_examples' signature"):
        run_evaluate(str(tmp_path / "model"), binary_case["examples"], str(tmp_path / "e"), str(tmp_path / "b"))


# ---- the real trained model ----------------------------------------------------------------------

UNTRAINED_TRAINER = '''
from prodml.components.train import default_model


def run_fn(fn_args):
    """The default model's architecture, never fitted: a deliberately bad candidate."""
    return default_model.build_model(fn_args, default_model.hyperparameters({}))
'''


def test_trained_model_beats_the_baseline(trained, ingested, tmp_path):
    result = run_evaluate(str(trained), str(ingested), str(tmp_path / "e"), str(tmp_path / "b"),
                          slice_feature="payment_type")
    data_version = dataio.read_json(str(ingested / keys.DATA_VERSION_FILE))
    assert result["metrics"]["example_count"] == data_version["row_counts"][keys.EVAL]
    assert result["metrics"]["auc"] > 0.6
    assert result["blessed"] is True, result["reasons"]
    assert "Cash" in result["slices"]["payment_type"]


def test_untrained_candidate_falls_behind_the_pushed_model(trained, transformed, ingested, tmp_path):
    from prodml.components.train.executor import run_train

    trainer = tmp_path / "untrained.py"
    trainer.write_text(UNTRAINED_TRAINER)
    candidate = tmp_path / "candidate"
    run_train(transform_graph_dir=str(transformed[0]), transformed_examples_dir=str(transformed[1]),
              model_dir=str(candidate), trainer_module=str(trainer), epochs=1)
    reg = tmp_path / "registry"
    publish_model(reg, "chicago-taxi", str(trained))

    result = run_evaluate(str(candidate), str(ingested), str(tmp_path / "e"), str(tmp_path / "b"),
                          registry_uri=str(reg), model_name="chicago-taxi")
    assert result["blessed"] is False
    assert "vs pushed v1" in result["reasons"][-1] and "more than tolerance 0.01" in result["reasons"][-1]
    pushed = _json(tmp_path / "e", keys.EVALUATION_FILE)["candidate_vs_pushed"]
    assert pushed["pushed"] > pushed["candidate"] + 0.01
