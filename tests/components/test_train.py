"""Train: the exported SavedModel and its two signatures, determinism, user trainer modules,
and multiclass and regression on small synthetic data."""

import pathlib

import numpy as np
import pytest

from prodml.components.common import dataio, keys
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.train.executor import run_train

USER_MODULES = pathlib.Path(__file__).parent.parent / "testdata" / "user_modules"
LABEL = "big_tipper"
SIGNATURE_DTYPES = {keys.INT: "float64", keys.FLOAT: "float32", keys.BYTES: "string"}


@pytest.fixture(scope="module")
def loaded(trained):
    import tensorflow as tf

    return tf.saved_model.load(str(trained))


@pytest.fixture(scope="module")
def eval_records(ingested):
    import tensorflow as tf

    files = dataio.split_files(str(ingested), keys.EVAL)
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(200)]


def raw_columns(records, kinds):
    """Signature inputs for serialized examples: NaN / "" where a feature is absent."""
    import tensorflow as tf

    columns = {name: [] for name in kinds}
    for record in records:
        features = tf.train.Example.FromString(record).features.feature
        for name, kind in kinds.items():
            if name not in features:
                columns[name].append("" if kind == keys.BYTES else float("nan"))
            elif kind == keys.BYTES:
                columns[name].append(features[name].bytes_list.value[0])
            elif kind == keys.INT:
                columns[name].append(float(features[name].int64_list.value[0]))
            else:
                columns[name].append(features[name].float_list.value[0])
    return {name: tf.constant(values, SIGNATURE_DTYPES[kinds[name]]) for name, values in columns.items()}


def predict_raw(model, columns):
    return model.signatures[keys.RAW_SIGNATURE](**columns)[keys.PREDICTIONS].numpy()


def predict_examples(model, records):
    import tensorflow as tf

    return model.signatures[keys.EXAMPLES_SIGNATURE](
        examples=tf.constant(records))[keys.PREDICTIONS].numpy()


def test_model_info_describes_the_model(trained, validated):
    from prodml.components.common import schemas

    info = dataio.read_json(str(trained / keys.MODEL_INFO_FILE))
    kinds = schemas.feature_kinds(schemas.load_schema(str(validated[1])))
    assert info["label"] == {"name": LABEL, "problem_type": keys.BINARY, "classes": ["0", "1"]}
    assert info["raw_features"] == {k: v for k, v in kinds.items() if k != LABEL}
    assert info["params"]["epochs"] == 3 and info["params"]["seed"] == 42
    assert len(info["history"]["loss"]) == len(info["history"]["val_loss"]) == 3
    assert set(info["signatures"]) == {keys.RAW_SIGNATURE, keys.EXAMPLES_SIGNATURE}
    assert (trained / "saved_model.pb").exists()
    assert not (trained / keys.LABEL_INFO_FILE).exists()   # the label is in prodml_model.json only


def test_signature_inputs_are_the_raw_features(loaded, trained):
    info = dataio.read_json(str(trained / keys.MODEL_INFO_FILE))
    _, inputs = loaded.signatures[keys.RAW_SIGNATURE].structured_input_signature
    assert {name: (spec.dtype.name, spec.shape.as_list()) for name, spec in inputs.items()} == {
        name: (SIGNATURE_DTYPES[kind], [None]) for name, kind in info["raw_features"].items()}
    _, inputs = loaded.signatures[keys.EXAMPLES_SIGNATURE].structured_input_signature
    assert list(inputs) == ["examples"]


def test_both_signatures_give_the_same_predictions(loaded, trained, eval_records):
    kinds = dataio.read_json(str(trained / keys.MODEL_INFO_FILE))["raw_features"]
    from_examples = predict_examples(loaded, eval_records)
    from_raw = predict_raw(loaded, raw_columns(eval_records, kinds))
    assert from_examples.shape == (len(eval_records),) and from_examples.dtype == np.float32
    assert ((from_examples > 0) & (from_examples < 1)).all()
    np.testing.assert_allclose(from_raw, from_examples, rtol=0, atol=1e-6)


@pytest.mark.parametrize("feature", ["payment_type", "fare", "trip_start_hour"])
def test_nan_or_empty_is_an_absent_feature(loaded, trained, eval_records, feature):
    import tensorflow as tf

    kinds = dataio.read_json(str(trained / keys.MODEL_INFO_FILE))["raw_features"]
    # A row the model is unsure about: on a saturated one (P ~ 1e-6) no change can show.
    unsure = [r for r, p in zip(eval_records, predict_examples(loaded, eval_records)) if 0.05 < p < 0.95]
    record = next(r for r in unsure if feature in tf.train.Example.FromString(r).features.feature)
    example = tf.train.Example.FromString(record)
    del example.features.feature[feature]
    columns = raw_columns([record], kinds)
    columns[feature] = tf.constant(["" if kinds[feature] == keys.BYTES else float("nan")],
                                   SIGNATURE_DTYPES[kinds[feature]])
    without = predict_examples(loaded, [example.SerializeToString()])
    assert predict_raw(loaded, columns) == pytest.approx(without, abs=1e-6)
    assert without != pytest.approx(predict_examples(loaded, [record]), abs=1e-6)


def test_same_seed_gives_the_same_model(tmp_path, trained, transformed):
    """The session model was trained with the defaults and epochs=3; train it once more."""
    first = dataio.read_json(str(trained / keys.MODEL_INFO_FILE))
    again = run_train(transform_graph_dir=str(transformed[0]),
                      transformed_examples_dir=str(transformed[1]),
                      model_dir=str(tmp_path / "model"), epochs=3)
    assert again["metrics"] == first["metrics"]
    assert again["epochs_run"] == 3
    assert again["metrics"]["eval_loss"] < 0.69  # learnt something


def test_user_trainer_module_is_used(tmp_path, transformed, eval_records):
    import tensorflow as tf

    module = str(USER_MODULES / "trainer.py")
    result = run_train(transform_graph_dir=str(transformed[0]),
                       transformed_examples_dir=str(transformed[1]), model_dir=str(tmp_path),
                       trainer_module=module, epochs=1, hyperparameters={"learning_rate": 0.05})
    assert result["trainer"] == module and result["epochs_run"] == 1
    info = dataio.read_json(str(tmp_path / keys.MODEL_INFO_FILE))
    assert info["params"]["trainer_module"] == module
    assert info["params"]["hyperparameters"] == {"learning_rate": 0.05}
    predictions = predict_examples(tf.saved_model.load(str(tmp_path)), eval_records[:5])
    assert predictions.shape == (5,)


def test_bad_trainer_module_names_the_file(tmp_path, transformed):
    module = tmp_path / "my_trainer.py"
    module.write_text("def run_fn(fn_args):\n    return 'not a model'\n")
    with pytest.raises(ConfigError, match="must return the trained tf_keras.Model") as error:
        run_train(transform_graph_dir=str(transformed[0]),
                  transformed_examples_dir=str(transformed[1]), model_dir=str(tmp_path / "model"),
                  trainer_module=str(module))
    assert str(module) in str(error.value)


def test_unknown_hyperparameter_is_a_config_error(tmp_path, transformed):
    with pytest.raises(ConfigError, match="learning_rat"):
        run_train(transform_graph_dir=str(transformed[0]),
                  transformed_examples_dir=str(transformed[1]), model_dir=str(tmp_path),
                  hyperparameters={"learning_rat": 0.1})


def test_unknown_label_fails_training_loudly(tmp_path, transformed):
    """A label that transform could not encode (-1) must never be learnt from silently."""
    import shutil

    import tensorflow as tf

    examples = tmp_path / "examples"
    shutil.copytree(transformed[1], examples)
    train = dataio.split_files(str(examples), keys.TRAIN)[0]
    records = [tf.train.Example.FromString(r.numpy())
               for r in tf.data.TFRecordDataset(train, compression_type="GZIP")]
    records[7].features.feature[LABEL].int64_list.value[:] = [-1]
    with tf.io.TFRecordWriter(train, options="GZIP") as writer:
        for record in records:
            writer.write(record.SerializeToString())
    with pytest.raises(InputDataError, match=f"label '{LABEL}'"):
        run_train(transform_graph_dir=str(transformed[0]), transformed_examples_dir=str(examples),
                  model_dir=str(tmp_path / "model"), epochs=1)


# ---- multiclass and regression on synthetic data ---------------------------------------------

def synthetic_csv(path, rows=300, seed=0):
    """x decides both labels; color is noise with missing values; n has missing values."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    n = rng.integers(0, 10, size=rows).astype(float)
    n[rng.random(rows) < 0.1] = np.nan
    color = rng.choice(["red", "green", "blue", ""], size=rows)
    species = np.where(x < -0.5, "setosa", np.where(x < 0.5, "versicolor", "virginica"))
    pd.DataFrame({"x": x, "n": pd.array(n, dtype="Int64"), "color": color, "species": species,
                  # Far from 0 and wide, like prices: the default model must find the scale itself.
                  "y": 500 + 300 * x + rng.normal(scale=10, size=rows)}).to_csv(path, index=False)
    return str(path)


def train_synthetic(folder, label, drop):
    from prodml.components.ingest.executor import run_ingest
    from prodml.components.transform.executor import run_transform
    from prodml.components.validate.executor import run_validate

    data = synthetic_csv(folder / "data.csv")
    run_ingest(data_uri=data, output_dir=str(folder / "examples"), label=label, drop_columns=[drop])
    run_validate(examples_dir=str(folder / "examples"), statistics_dir=str(folder / "statistics"),
                 schema_dir=str(folder / "schema"), anomalies_md_path=str(folder / "anomalies.md"),
                 statistics_html_path=str(folder / "statistics.html"))
    run_transform(examples_dir=str(folder / "examples"), schema_dir=str(folder / "schema"),
                  transform_graph_dir=str(folder / "graph"),
                  transformed_examples_dir=str(folder / "transformed"))
    # The defaults, as a user runs them: no epochs, batch size or learning rate to tune.
    result = run_train(transform_graph_dir=str(folder / "graph"),
                       transformed_examples_dir=str(folder / "transformed"),
                       model_dir=str(folder / "model"))
    return result, folder / "model"


def test_multiclass(tmp_path):
    import tensorflow as tf

    result, model_dir = train_synthetic(tmp_path, "species", drop="y")
    info = dataio.read_json(str(model_dir / keys.MODEL_INFO_FILE))
    assert info["label"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert info["signatures"][keys.RAW_SIGNATURE]["outputs"][keys.PREDICTIONS]["shape"] == [None, 3]
    assert result["metrics"]["eval_accuracy"] > 0.8
    model = tf.saved_model.load(str(model_dir))
    predictions = predict_raw(model, {"x": tf.constant([-2.0, 0.0, 2.0], tf.float32),
                                      "n": tf.constant([1.0, float("nan"), 3.0], tf.float64),
                                      "color": tf.constant(["red", "", "pink"])})
    assert predictions.shape == (3, 3)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    assert predictions.argmax(axis=1).tolist() == [0, 1, 2]


def test_regression(tmp_path):
    import tensorflow as tf

    result, model_dir = train_synthetic(tmp_path, "y", drop="species")
    assert dataio.read_json(str(model_dir / keys.MODEL_INFO_FILE))["label"]["problem_type"] == keys.REGRESSION
    assert result["metrics"]["eval_rmse"] < 60  # the label's standard deviation is 300
    model = tf.saved_model.load(str(model_dir))
    predictions = predict_raw(model, {"x": tf.constant([-1.0, 1.0], tf.float32),
                                      "n": tf.constant([float("nan"), 5.0], tf.float64),
                                      "color": tf.constant(["", "blue"])})
    assert predictions.shape == (2,) and predictions.dtype == np.float32
    # Served in the label's units, not standardised.
    assert predictions[0] == pytest.approx(200.0, abs=60.0)
    assert predictions[1] == pytest.approx(800.0, abs=60.0)


# ---- the final metrics ------------------------------------------------------------------------

def eager_metrics(model, args, train_rows=None):
    """The definition of the final metrics, computed plainly: batch by batch, eagerly, reading the
    files with tf.data alone (the first ``train_rows`` train records)."""
    import tensorflow as tf
    import tf_keras

    from prodml.components.train.export import predictions

    spec = dict(args.transformed_feature_spec)
    result = {}
    for split, files in (("train", args.train_files), ("eval", args.eval_files)):
        metrics = {f"{split}_loss": tf_keras.metrics.BinaryCrossentropy()}
        if split == "eval":
            metrics["eval_auc"] = tf_keras.metrics.AUC(num_thresholds=1000)
        records = tf.data.TFRecordDataset(files, compression_type="GZIP")
        if split == "train" and train_rows:
            records = records.take(train_rows)
        for batch in records.batch(1000):  # few eager calls: each is slow
            features = tf.io.parse_example(batch, spec)
            label = features.pop(LABEL)
            predicted = predictions(model, features, keys.BINARY)
            for metric in metrics.values():
                metric.update_state(label[:, None], predicted[:, None])
        result.update({name: float(metric.result()) for name, metric in metrics.items()})
    return result


@pytest.mark.slow  # builds and fits a model a little, then reads the splits 4 times
def test_compiled_final_metrics_are_the_plain_definition(transformed):
    import tensorflow_transform as tft

    from prodml.components.train import default_model, executor, export
    from prodml.components.train.fn_args import FnArgs

    graph, examples = transformed
    args = FnArgs(train_files=dataio.split_files(str(examples), keys.TRAIN),
                  eval_files=dataio.split_files(str(examples), keys.EVAL), transform_output=str(graph),
                  transformed_feature_spec=tft.TFTransformOutput(str(graph)).transformed_feature_spec(),
                  label=LABEL, problem_type=keys.BINARY, classes=["0", "1"], epochs=1,
                  batch_size=256, seed=42)
    stats = default_model.train_stats(args, bins=16)
    model = default_model.build_model(args, default_model.HYPERPARAMETERS, stats)
    model.fit(args.dataset(args.train_files, shuffle=True).take(20), verbose=0)  # not the initial state
    compiled = executor._final_metrics(model, args, export.predictions)
    assert compiled == pytest.approx(eager_metrics(model, args), abs=1e-5)
    # A train split bigger than the bound: the train loss is over its first rows only.
    first = executor._final_metrics(model, args, export.predictions, train_rows=1000)
    assert first == pytest.approx(eager_metrics(model, args, train_rows=1000), abs=1e-5)
    assert first["train_loss"] != pytest.approx(compiled["train_loss"], abs=1e-4)
    assert first["eval_auc"] == compiled["eval_auc"] and 0.5 < compiled["eval_auc"] <= 1
