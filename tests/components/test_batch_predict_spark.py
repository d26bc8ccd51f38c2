"""Batch prediction on Spark for real: local[2], the same core, the same numbers as the other engines."""

import csv
import os
import pathlib

import numpy as np
import pytest

from prodml.components.batch_predict import dead_letters, outputs, spark_job
from prodml.components.batch_predict.executor import run_batch_predict

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed in this environment")

TAXI_SMALL = pathlib.Path(__file__).parent.parent / "testdata" / "taxi_small.csv"
ROWS = 200
BAD_ROW = 7  # fare 'abc'

pytestmark = pytest.mark.slow  # a JVM and Python workers start: about 30 s


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    with open(TAXI_SMALL, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[: ROWS + 1]
    rows[BAD_ROW][rows[0].index("fare")] = "abc"
    path = tmp_path_factory.mktemp("spark") / "trips.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


@pytest.fixture(scope="module")
def spark():
    session = spark_job.session("local[2]")  # Python workers run this interpreter
    yield session
    session.stop()


@pytest.fixture(scope="module")
def reference(data, trained, tmp_path_factory):
    """The in-process engine's predictions of the same file."""
    out = tmp_path_factory.mktemp("reference") / "out"
    run_batch_predict(str(data), str(out), model_dir=str(trained), engine="local", max_error_rate=0.01)
    return outputs.read_predictions(str(out))


def test_spark_job_equals_the_other_engines(spark, data, trained, reference, tmp_path):
    out = tmp_path / "out"
    result = run_batch_predict(str(data), str(out), model_dir=str(trained), engine="spark", max_error_rate=0.01,
                               rows_per_task=50)
    assert (result["rows"], result["scored"], result["errors"]) == (ROWS, ROWS - 1, 1)
    assert result["worker_processes"] >= 1
    got = outputs.read_predictions(str(out))
    assert sorted(os.listdir(out)) == ["_SUCCESS"] + [f"part-{i:05d}.parquet" for i in range(4)]
    np.testing.assert_allclose(got["probability_1"], reference["probability_1"], rtol=0, atol=1e-6)
    assert list(got["request_id"]) == list(reference["request_id"])  # stable across engines
    letters = dead_letters.read(result["dead_letter_uri"])
    assert [(d["row"], d["line"]) for d in letters] == [(BAD_ROW, BAD_ROW + 1)]


def test_map_in_pandas_on_a_users_dataframe(spark, data, trained, reference):
    frame = spark.read.csv(str(data), header=True)  # every column as text, empty cells null
    fn = spark_job.predict_frames(str(trained), id_columns=["trip_start_timestamp"])
    schema = spark_job.output_schema(str(trained), ["trip_start_timestamp"])
    rows = frame.mapInPandas(fn, schema).toPandas()
    assert len(rows) == ROWS, "one output row per input row"
    bad = rows[rows["error"].notna()]
    assert list(bad.index) == [BAD_ROW - 1] and "'fare' 'abc' is not a number" in bad["error"].iloc[0]
    assert bad["probability_1"].isna().all()
    good = rows[rows["error"].isna()]
    np.testing.assert_allclose(good["probability_1"].to_numpy(), reference["probability_1"].to_numpy(),
                               rtol=0, atol=1e-6)
    assert list(good["trip_start_timestamp"]) == list(reference["trip_start_timestamp"])
