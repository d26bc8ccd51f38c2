"""Transform: the default preprocessing on the session's taxi examples, user modules, errors."""

import pathlib

import numpy as np
import pytest

from prodml.components.common import dataio, keys
from prodml.components.common.errors import ConfigError
from prodml.components.transform.executor import run_transform

USER_MODULES = pathlib.Path(__file__).parent.parent / "testdata" / "user_modules"
LABEL = "big_tipper"


def read_split(folder, split, spec):
    """All examples of a split as ``{name: np.ndarray}`` (VarLen features as lists of values)."""
    import tensorflow as tf

    files = dataio.split_files(str(folder), split)
    columns = {name: [] for name in spec}
    for records in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024):
        parsed = tf.io.parse_example(records, spec)
        for name, value in parsed.items():
            if isinstance(value, tf.SparseTensor):
                columns[name] += _sparse_rows(value)
            else:
                columns[name] += list(value.numpy())
    return {name: values if isinstance(spec[name], tf.io.VarLenFeature) else np.array(values)
            for name, values in columns.items()}


def _sparse_rows(value):
    rows = [[] for _ in range(int(value.dense_shape[0]))]
    for (row, _), v in zip(value.indices.numpy(), value.values.numpy()):
        rows[row].append(v)
    return rows


@pytest.fixture(scope="module")
def tft_output(transformed):
    import tensorflow_transform as tft

    return tft.TFTransformOutput(str(transformed[0]))


def test_graph_has_the_default_features(tft_output, validated):
    import tensorflow as tf

    from prodml.components.common import schemas

    spec = tft_output.transformed_feature_spec()
    kinds = schemas.feature_kinds(schemas.load_schema(str(validated[1])))
    for name, kind in kinds.items():
        if name == LABEL:
            continue
        if kind == keys.BYTES:
            assert spec[name] == tf.io.FixedLenFeature([], tf.int64), name
            assert tft_output.num_buckets_for_transformed_feature(name) >= 2, name
        else:
            assert spec[name] == tf.io.FixedLenFeature([], tf.float32), name
            assert spec[f"{name}_missing"] == tf.io.FixedLenFeature([], tf.float32), name
    assert spec[LABEL] == tf.io.FixedLenFeature([], tf.int64)
    assert b"Cash" in tft_output.vocabulary_by_name("payment_type")
    assert tft_output.raw_feature_spec().keys() == kinds.keys()


def test_label_info_is_copied(transformed, ingested):
    label = dataio.read_json(str(ingested / keys.DATA_VERSION_FILE))["label"]
    assert dataio.read_json(str(transformed[0] / keys.LABEL_INFO_FILE)) == label


def test_transformed_examples_match_the_raw_ones(transformed, ingested, tft_output):
    raw_spec = tft_output.raw_feature_spec()
    spec = tft_output.transformed_feature_spec()
    row_counts = dataio.read_json(str(ingested / keys.DATA_VERSION_FILE))["row_counts"]
    for split in (keys.TRAIN, keys.EVAL):
        raw = read_split(ingested, split, raw_spec)
        out = read_split(transformed[1], split, spec)
        assert len(out[LABEL]) == len(raw[LABEL]) == row_counts[split]
        # Beam does not keep the order: compare distributions, and missing-ness per feature.
        assert sorted(out[LABEL]) == sorted(int(v[0]) for v in raw[LABEL])
        for name in ("dropoff_latitude", "trip_start_hour"):
            n_missing = sum(1 for v in raw[name] if not v)
            assert out[f"{name}_missing"].sum() == n_missing
        if split == keys.TRAIN:
            for name in ("fare", "trip_start_timestamp", "dropoff_latitude"):
                assert abs(out[name].mean()) < 1e-3 and abs(out[name].std() - 1) < 1e-2, name


def test_missing_numbers_get_the_mean_and_strings_a_vocabulary_index(transformed, tft_output):
    out = read_split(transformed[1], keys.TRAIN, tft_output.transformed_feature_spec())
    missing = out["dropoff_latitude_missing"] == 1.0
    assert missing.any() and (~missing).any()
    # The mean imputed before z-scoring is the z-score 0 (up to the variance change).
    assert np.unique(out["dropoff_latitude"][missing]).size == 1
    assert abs(out["dropoff_latitude"][missing][0]) < 1e-3
    assert out["payment_type"].min() >= 0
    assert out["payment_type"].max() < tft_output.num_buckets_for_transformed_feature("payment_type")


def test_encode_label_maps_values_to_class_indexes():
    import tensorflow as tf

    from prodml.components.transform.default_preprocessing import encode_label

    def sparse(values, dtype):  # None is a missing value
        rows = [[i, 0] for i, v in enumerate(values) if v is not None]
        return tf.SparseTensor(tf.constant(rows or tf.zeros([0, 2]), tf.int64),
                               tf.constant([v for v in values if v is not None], dtype),
                               [len(values), 1])

    binary = {"name": "y", "problem_type": keys.BINARY, "classes": ["0", "1"]}
    assert encode_label(sparse([1, 0, 7, None], tf.int64), binary).numpy().tolist() == [1, 0, -1, -1]
    colors = {"name": "y", "problem_type": keys.MULTICLASS, "classes": ["blue", "green", "red"]}
    assert encode_label(sparse([b"red", b"blue", None, b"pink"], tf.string),
                        colors).numpy().tolist() == [2, 0, -1, -1]
    floats = {"name": "y", "problem_type": keys.MULTICLASS, "classes": ["1.0", "2.0", "3.0"]}
    assert encode_label(sparse([3.0, 1.0, 2.5], tf.float32), floats).numpy().tolist() == [2, 0, -1]
    value = {"name": "y", "problem_type": keys.REGRESSION, "classes": None}
    encoded = encode_label(sparse([3, None], tf.int64), value)
    assert encoded.dtype == tf.float32 and encoded[0] == 3.0 and np.isnan(encoded[1])


def test_user_preprocessing_module_is_used(tmp_path, ingested, validated):
    import tensorflow as tf
    import tensorflow_transform as tft

    module = str(USER_MODULES / "preprocessing.py")
    result = run_transform(examples_dir=str(ingested), schema_dir=str(validated[1]),
                           transform_graph_dir=str(tmp_path / "graph"),
                           transformed_examples_dir=str(tmp_path / "examples"),
                           preprocessing_module=module)
    assert result["preprocessing"] == module
    assert result["features"] == sorted(["log_fare", "trip_miles", "payment_type", LABEL])
    row_counts = dataio.read_json(str(ingested / keys.DATA_VERSION_FILE))["row_counts"]
    assert result["rows"] == row_counts
    spec = tft.TFTransformOutput(str(tmp_path / "graph")).transformed_feature_spec()
    assert spec[LABEL] == tf.io.FixedLenFeature([], tf.int64)  # encoded by prodml
    out = read_split(tmp_path / "examples", keys.EVAL, spec)
    assert 0 <= out["trip_miles"].min() and set(np.unique(out[LABEL])) <= {0, 1}


@pytest.mark.parametrize("content, problem", [
    (None, "does not exist"),
    ("def transform(inputs):\n    return inputs\n", "does not define a function preprocessing_fn"),
    ("import not_a_module_anywhere\n", "failed to import"),
    ("def preprocessing_fn(inputs):\n    return {'big_tipper': inputs['payment_type']}\n",
     "outputs the label 'big_tipper' as"),
])
def test_bad_preprocessing_module_names_the_file(tmp_path, ingested, validated, content, problem):
    module = tmp_path / "my_preprocessing.py"
    if content is not None:
        module.write_text(content)
    with pytest.raises(ConfigError, match=problem) as error:
        run_transform(examples_dir=str(ingested), schema_dir=str(validated[1]),
                      transform_graph_dir=str(tmp_path / "graph"),
                      transformed_examples_dir=str(tmp_path / "examples"),
                      preprocessing_module=str(module))
    assert str(module) in str(error.value)


def test_beam_args_choose_the_runner(tmp_path, ingested, validated):
    with pytest.raises(ConfigError, match="NoSuchRunner"):
        run_transform(examples_dir=str(ingested), schema_dir=str(validated[1]),
                      transform_graph_dir=str(tmp_path / "graph"),
                      transformed_examples_dir=str(tmp_path / "examples"),
                      beam_args=["--runner=NoSuchRunner"])


@pytest.mark.slow
def test_fixed_read_batches_give_the_same_examples_as_tuned_ones_and_the_same_on_every_run(
        tmp_path, monkeypatch, ingested, validated, transformed, tft_output):
    """The default fixed-size read batches give the same values on every run, and the values
    the old timing-tuned batching gave (same rows, same order; the analysis sums are added in
    another grouping, so z-scores agree up to the float32 rounding of the statistics)."""
    from prodml.components.transform import executor

    def run(name):
        run_transform(examples_dir=str(ingested), schema_dir=str(validated[1]),
                      transform_graph_dir=str(tmp_path / name / "graph"),
                      transformed_examples_dir=str(tmp_path / name / "examples"))
        return tmp_path / name / "examples"

    again = run("again")
    monkeypatch.setattr(executor, "READ_BATCH_SIZE", None)  # tfx_bsl's tuned batching, as before
    tuned = run("tuned")
    spec = tft_output.transformed_feature_spec()
    for split in (keys.TRAIN, keys.EVAL):
        new = read_split(transformed[1], split, spec)
        repeated, old = read_split(again, split, spec), read_split(tuned, split, spec)
        assert list(new[LABEL]) == list(old[LABEL]), split  # same rows in the same order
        for name in spec:
            np.testing.assert_array_equal(repeated[name], new[name], err_msg=name)
            # TFT sums the statistics in float32: for census tracts (~1.7e10) the mean moves by
            # ~1e3 with the grouping, a few hundredths of a standard deviation; a constant's
            # z-score is rounding noise.
            if np.unique(old[name]).size > 1:
                np.testing.assert_allclose(new[name], old[name], rtol=0, atol=0.1, err_msg=name)


@pytest.mark.slow
def test_several_example_files_are_read_in_file_order(tmp_path, ingested, validated, transformed, tft_output):
    """A split in several files (as ingest shards big data) gives the rows of the one-file split,
    in the same order: each file after the previous one, whatever the runner's bundling."""
    import shutil

    import tensorflow as tf

    sharded = tmp_path / "sharded"
    shutil.copytree(ingested, sharded)
    for split in (keys.TRAIN, keys.EVAL):
        files = dataio.split_files(str(sharded), split)
        records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
        for f in files:
            dataio.gfile().remove(f)
        bounds = [0, len(records) // 5, len(records) // 2, len(records)]
        for i in range(3):
            name = str(sharded / f"{keys.SPLIT_PREFIX}{split}" / f"data-{i:05d}-of-00003.tfrecord.gz")
            with tf.io.TFRecordWriter(name, options="GZIP") as writer:
                for record in records[bounds[i]:bounds[i + 1]]:
                    writer.write(record)
    run_transform(examples_dir=str(sharded), schema_dir=str(validated[1]),
                  transform_graph_dir=str(tmp_path / "graph"), transformed_examples_dir=str(tmp_path / "out"))
    spec = tft_output.transformed_feature_spec()
    for split in (keys.TRAIN, keys.EVAL):
        one, three = read_split(transformed[1], split, spec), read_split(tmp_path / "out", split, spec)
        for name in spec:
            np.testing.assert_array_equal(three[name], one[name], err_msg=f"{split} {name}")


def test_default_preprocessing_z_scores_the_imputed_column_in_float64(tmp_path):
    """One analysis pass gives the statistics of the mean-imputed column; float64 keeps a column
    of big equal integers (census tracts, ~1.7e10) at zero, where float32 sums drift."""
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from prodml.components.transform.default_preprocessing import make_preprocessing_fn

    kinds = {"x": keys.FLOAT, "tract": keys.INT, "y": keys.INT}
    label = {"name": "y", "problem_type": keys.BINARY, "classes": ["0", "1"]}
    rows = [{"x": [1.0], "tract": [17031839100], "y": [0]}, {"x": [], "tract": [17031839100], "y": [1]},
            {"x": [3.0], "tract": [], "y": [1]}, {"x": [8.0], "tract": [17031839100], "y": [0]}]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {"x": tf.io.VarLenFeature(tf.float32), "tract": tf.io.VarLenFeature(tf.int64),
         "y": tf.io.VarLenFeature(tf.int64)}))
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (out, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            make_preprocessing_fn(kinds, label))
    x = np.array([row["x"] for row in out])
    imputed = np.array([1.0, 4.0, 3.0, 8.0])  # the mean of the present values, 4, where missing
    np.testing.assert_allclose(x, (imputed - imputed.mean()) / imputed.std(), rtol=1e-6)
    assert [row["x_missing"] for row in out] == [0.0, 1.0, 0.0, 0.0]
    assert [row["tract"] for row in out] == [0.0, 0.0, 0.0, 0.0]


def test_progress_logs_long_stages_only():
    import logging

    import pyarrow as pa

    from prodml.components.transform import beam_progress

    batch = pa.RecordBatch.from_arrays([pa.array(range(100))], ["x"])

    class Lines(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    def lines(seconds, elements):
        stage = beam_progress.Progress("analyzing train: rows read", 300, seconds)
        stage.setup()
        handler = Lines()
        beam_progress.log.addHandler(handler)
        try:
            passed = [out for element in elements for out in stage.process(element)]
        finally:
            beam_progress.log.removeHandler(handler)
        assert passed == elements
        return handler.lines

    assert lines(3600.0, [batch] * 3) == []
    assert lines(0.0, [batch, (batch, {}), batch]) == [
        "transform: analyzing train: rows read: 200 of 300",
        "transform: analyzing train: rows read: 300 of 300"]
