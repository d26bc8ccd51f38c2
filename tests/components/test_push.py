"""Push: a blessed model becomes the next complete registry version; nothing else is ever visible."""

import json
import logging
import os
import threading

import pytest
import yaml

from prodml.components.common import artifacts, dataio, keys, registry
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.push import executor, inferenceservice
from prodml.components.push.executor import run_push

NAME = "chicago-taxi"
LABEL = {"name": "big_tipper", "problem_type": keys.BINARY, "classes": ["0", "1"]}
METRICS = {"auc": 0.91, "accuracy": 0.85, "log_loss": 0.35, "precision": 0.8, "recall": 0.7, "example_count": 600}
REASONS = ["auc 0.91 > baseline 0.5 (majority class)", "auc 0.91 ≥ threshold 0.9", "no pushed model yet"]
DATA_VERSION = {"source_uri": "/data/taxi.csv", "sha256": "ab" * 32, "size_bytes": 12345,
                "row_counts": {keys.TRAIN: 2400, keys.EVAL: 600}, "split_ratios": keys.DEFAULT_SPLIT_RATIOS,
                "columns": {"fare": keys.FLOAT, "big_tipper": keys.INT}, "dropped_columns": ["tips"],
                "label": LABEL}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small real SavedModel with a serving_examples signature and its prodml_model.json."""
    import tensorflow as tf

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.bias = tf.Variable(0.25)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            fare = tf.io.parse_example(examples, {"fare": tf.io.FixedLenFeature([], tf.float32, 0.0)})["fare"]
            return {keys.PREDICTIONS: tf.sigmoid(fare + self.bias)}

    folder = tmp_path_factory.mktemp("model")
    module = Model()
    tf.saved_model.save(module, str(folder), signatures={keys.EXAMPLES_SIGNATURE: module.serve})
    dataio.write_json(str(folder / keys.MODEL_INFO_FILE), {
        "label": LABEL, "raw_features": {"fare": keys.FLOAT}, "signatures": {}, "params": {"epochs": 3}})
    return str(folder)


def _upstream(root, blessed=True, reasons=REASONS):
    """(blessing, evaluation, examples) folders as evaluate and ingest write them."""
    blessing, evaluation, examples = root / "blessing", root / "evaluation", root / "examples"
    dataio.write_json(str(blessing / keys.BLESSING_FILE), {"blessed": blessed, "reasons": reasons,
                                                           "compared_to": None})
    dataio.write_json(str(evaluation / keys.EVALUATION_FILE), {
        "metrics": METRICS, "key_metric": "auc", "baseline": {"name": "majority class", "metrics": {"auc": 0.5}},
        "slices": {"payment_type": {"Cash": {"example_count": 200, "auc": 0.6}}}, "candidate_vs_pushed": {}})
    dataio.write_json(str(examples / keys.DATA_VERSION_FILE), DATA_VERSION)
    return str(blessing), str(evaluation), str(examples)


def _push(model_dir, upstream, registry_uri, **kwargs):
    blessing, evaluation, examples = upstream
    return run_push(model_dir=model_dir, blessing_dir=blessing, evaluation_dir=evaluation, examples_dir=examples,
                    registry_uri=str(registry_uri), model_name=kwargs.pop("model_name", NAME), **kwargs)


def _visible(folder):
    """The names a server listing the model folder sees (the registry keeps its bookkeeping hidden)."""
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def _card(registry_uri, version):
    with open(os.path.join(registry.version_uri(str(registry_uri), NAME, version), keys.MODEL_CARD_JSON)) as f:
        return json.load(f)


def test_push_publishes_a_complete_version(model_dir, tmp_path):
    reg = tmp_path / "registry"
    result = _push(model_dir, _upstream(tmp_path), reg, run_id="run-7", parameters={"epochs": "3"},
                   namespace="ml", card_path=str(tmp_path / "model_card.md"))
    version_dir = reg / NAME / "1"
    assert result["pushed"] is True and result["version"] == 1 and result["uri"] == str(version_dir)
    assert result["reasons"] == REASONS and result["data_sha256"] == DATA_VERSION["sha256"]
    names = set(os.listdir(version_dir))
    assert {"saved_model.pb", "variables", keys.MODEL_INFO_FILE, keys.MODEL_CARD_MD, keys.MODEL_CARD_JSON,
            keys.ISVC_FILE} <= names
    assert _visible(reg / NAME) == ["1"]

    card = _card(reg, 1)
    assert (card["model_name"], card["version"], card["storage_uri"]) == (NAME, 1, str(version_dir))
    assert card["metrics"] == METRICS and card["blessing"]["reasons"] == REASONS
    assert card["data"]["sha256"] == DATA_VERSION["sha256"]
    assert card["data"]["row_counts"] == DATA_VERSION["row_counts"]
    assert card["data"]["source_uri"] == DATA_VERSION["source_uri"]
    assert card["label"] == LABEL and card["run_id"] == "run-7" and card["parameters"] == {"epochs": "3"}
    assert card["created"].endswith("+00:00")

    with open(version_dir / keys.MODEL_CARD_MD, encoding="utf-8") as f:
        markdown = f.read()
    assert result["model_card"] == markdown == (tmp_path / "model_card.md").read_text(encoding="utf-8")
    assert markdown.startswith(f"# Model card: {NAME} v1")
    for fact in ("auc 0.91 ≥ threshold 0.9", DATA_VERSION["sha256"], "| Rows (eval) | 600 |", "run-7",
                 "probability that it is `1`", "| Cash |"):
        assert fact in markdown

    with open(version_dir / keys.ISVC_FILE, encoding="utf-8") as f:
        isvc = yaml.safe_load(f)
    assert isvc["metadata"]["name"] == NAME and isvc["metadata"]["namespace"] == "ml"
    assert isvc["metadata"]["annotations"][inferenceservice.VERSION_ANNOTATION] == "1"
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == str(reg / NAME)
    assert artifacts.read_inferenceservice(str(version_dir)) == isvc   # what deploy applies


def test_push_renders_the_inferenceservice_for_the_runtime(model_dir, tmp_path):
    result = _push(model_dir, _upstream(tmp_path), tmp_path / "registry", runtime="tensorflow")
    isvc = artifacts.read_inferenceservice(result["uri"])
    assert isvc["spec"]["predictor"]["model"]["modelFormat"] == {"name": "tensorflow"}


def test_unknown_runtime_fails_before_anything_is_written(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="runtime 'triton' is not one of prodml, tensorflow"):
        _push(model_dir, _upstream(tmp_path), tmp_path / "registry", runtime="triton")
    assert not os.path.exists(tmp_path / "registry")


def test_pushed_version_is_a_loadable_saved_model(model_dir, tmp_path):
    import tensorflow as tf

    result = _push(model_dir, _upstream(tmp_path), tmp_path / "registry")
    loaded = tf.saved_model.load(result["uri"])
    example = tf.train.Example(features=tf.train.Features(feature={
        "fare": tf.train.Feature(float_list=tf.train.FloatList(value=[-0.25]))})).SerializeToString()
    predictions = loaded.signatures[keys.EXAMPLES_SIGNATURE](examples=tf.constant([example]))[keys.PREDICTIONS]
    assert predictions.numpy().tolist() == [0.5]


def test_second_push_is_version_two(model_dir, tmp_path):
    reg = tmp_path / "registry"
    upstream = _upstream(tmp_path)
    assert _push(model_dir, upstream, reg)["version"] == 1
    second = _push(model_dir, upstream, reg)
    assert second["version"] == 2 and second["uri"] == str(reg / NAME / "2")
    assert registry.list_versions(str(reg), NAME) == [1, 2]
    assert _card(reg, 2)["version"] == 2 and second["model_card"].startswith(f"# Model card: {NAME} v2")


def test_not_blessed_pushes_nothing(model_dir, tmp_path, caplog):
    reg = tmp_path / "registry"
    reasons = ["auc 0.81 vs pushed v3 0.9: behind by 0.09, more than tolerance 0.01"]
    logger = logging.getLogger("prodml")
    logger.addHandler(caplog.handler)  # the prodml logger does not propagate to the root
    try:
        result = _push(model_dir, _upstream(tmp_path, blessed=False, reasons=reasons), reg,
                       card_path=str(tmp_path / "model_card.md"))
    finally:
        logger.removeHandler(caplog.handler)
    assert result == {"pushed": False, "version": None, "uri": None, "reasons": reasons, "model_card": "",
                      "data_sha256": DATA_VERSION["sha256"]}
    assert not os.path.exists(reg)
    assert (tmp_path / "model_card.md").read_text(encoding="utf-8") == (
        f"# Not pushed: {NAME}\n\nThe candidate is not blessed, so the registry is unchanged:\n\n- {reasons[0]}\n")
    assert f"not pushed: {reasons[0]}" in caplog.text


def test_crash_mid_copy_leaves_no_version(model_dir, tmp_path, monkeypatch):
    reg = tmp_path / "registry"
    upstream = _upstream(tmp_path)
    _push(model_dir, upstream, reg)
    copied = []
    real_copy = executor.copy_file

    def copy_then_crash(src, dst):
        if len(copied) == 2:
            raise OSError("connection reset while copying")
        copied.append(dst)
        real_copy(src, dst)

    monkeypatch.setattr(executor, "copy_file", copy_then_crash)
    with pytest.raises(OSError, match="connection reset"):
        _push(model_dir, upstream, reg)
    assert len(copied) == 2 and all(registry.STAGING_PREFIX in p for p in copied)
    assert registry.list_versions(str(reg), NAME) == [1]
    assert _visible(reg / NAME) == ["1"]

    monkeypatch.setattr(executor, "copy_file", real_copy)
    assert _push(model_dir, upstream, reg)["version"] == 2


def test_concurrent_pushes_get_distinct_versions(model_dir, tmp_path):
    reg = tmp_path / "registry"
    upstream = _upstream(tmp_path)
    results, errors = [], []

    def push():
        try:
            results.append(_push(model_dir, upstream, reg))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=push) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r["version"] for r in results) == [1, 2, 3, 4]
    assert registry.list_versions(str(reg), NAME) == [1, 2, 3, 4]
    assert sorted(_visible(reg / NAME)) == ["1", "2", "3", "4"]
    for r in results:
        assert _card(reg, r["version"])["version"] == r["version"]
        assert _card(reg, r["version"])["storage_uri"] == r["uri"]


def test_push_to_an_object_store_uri(model_dir, tmp_path):
    """A gfile registry, on TensorFlow's in-memory file system."""
    import uuid

    reg = f"ram://registry-{uuid.uuid4().hex[:8]}"
    result = _push(model_dir, _upstream(tmp_path), reg)
    assert (result["version"], result["uri"]) == (1, f"{reg}/{NAME}/1")
    files = dataio.list_files(result["uri"])
    assert {"saved_model.pb", keys.MODEL_INFO_FILE, keys.MODEL_CARD_MD, keys.MODEL_CARD_JSON,
            keys.ISVC_FILE} <= set(files)
    assert any(f.startswith("variables/") for f in files)
    assert dataio.read_json(f"{result['uri']}/{keys.MODEL_CARD_JSON}")["storage_uri"] == result["uri"]
    assert registry.list_versions(reg, NAME) == [1]


@pytest.mark.parametrize("name", ["Chicago-Taxi", "chicago_taxi", "-taxi", "taxi-", "", "t" * 64, "taxi.v2"])
def test_invalid_model_name_is_a_config_error(model_dir, tmp_path, name):
    with pytest.raises(ConfigError, match=f"Model name '{name}' is not a valid DNS-1123 label"):
        _push(model_dir, _upstream(tmp_path), tmp_path / "registry", model_name=name)
    assert not os.path.exists(tmp_path / "registry")


def test_missing_blessing_is_an_input_error(model_dir, tmp_path):
    _, evaluation, examples = _upstream(tmp_path)
    with pytest.raises(InputDataError, match="blessing.json is missing"):
        _push(model_dir, (str(tmp_path / "nothing"), evaluation, examples), tmp_path / "registry")


def test_malformed_blessing_names_the_file_and_field(model_dir, tmp_path):
    blessing, evaluation, examples = _upstream(tmp_path)
    dataio.write_json(os.path.join(blessing, keys.BLESSING_FILE), {"blessed": "yes", "reasons": []})
    with pytest.raises(InputDataError) as e:
        _push(model_dir, (blessing, evaluation, examples), tmp_path / "registry")
    assert str(e.value) == (f"{blessing}/blessing.json is malformed: field 'blessed' is a string ('yes'), "
                            "expected true or false. This file is written by evaluate: re-run evaluate, or give "
                            "the artifact folder that it wrote.")
    assert not os.path.exists(tmp_path / "registry")


def test_evaluate_then_push_the_trained_model(trained, ingested, tmp_path):
    import tensorflow as tf

    from prodml.components.evaluate.executor import run_evaluate

    evaluation, blessing, reg = tmp_path / "evaluation", tmp_path / "blessing", tmp_path / "registry"
    evaluated = run_evaluate(str(trained), str(ingested), str(evaluation), str(blessing),
                             registry_uri=str(reg), model_name=NAME)
    assert evaluated["blessed"], evaluated["reasons"]
    result = run_push(str(trained), str(blessing), str(evaluation), str(ingested), str(reg), NAME, run_id="e2e")
    assert result["version"] == 1
    card = _card(reg, 1)
    assert card["metrics"] == pytest.approx(evaluated["metrics"])
    assert card["data"]["sha256"] == dataio.read_json(str(ingested / keys.DATA_VERSION_FILE))["sha256"]

    loaded = tf.saved_model.load(result["uri"])
    eval_file = dataio.split_files(str(ingested), keys.EVAL)[0]
    records = next(iter(tf.data.TFRecordDataset(eval_file, compression_type="GZIP").batch(8)))
    predictions = loaded.signatures[keys.EXAMPLES_SIGNATURE](examples=records)[keys.PREDICTIONS].numpy()
    assert predictions.shape == (8,) and ((predictions >= 0) & (predictions <= 1)).all()

    again = run_evaluate(str(trained), str(ingested), str(evaluation), str(blessing), registry_uri=str(reg),
                         model_name=NAME)
    assert again["reasons"][-2].endswith("vs pushed v1 " + f"{evaluated['metrics']['auc']:.4g}: as good or better")
    assert not again["blessed"] and again["reasons"][-1].startswith("re-run of pushed v1")
