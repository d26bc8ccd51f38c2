"""Batch prediction: the real model of the session fixtures, scored on Beam and in process.

The Beam tests run the DirectRunner with two worker processes once (module fixture) on a copy of
the taxi sample with bad rows put in; the other tests use the in-process engine, which runs the
same task code (``worker.run_task``) on one core. Expected predictions come from the SavedModel's
own ``serving_default`` signature on rows parsed here independently of the batch code.
"""

import csv
import gzip
import json
import math
import os
import pathlib
import shutil

import numpy as np
import pytest

from prodml.components.batch_predict import core, dead_letters, outputs, sources
from prodml.components.batch_predict.executor import run_batch_predict
from prodml.components.common import dataio, defaults, keys, registry
from prodml.components.common.errors import ConfigError, InputDataError

TAXI_SMALL = pathlib.Path(__file__).parent.parent / "testdata" / "taxi_small.csv"
LABEL = "big_tipper"

MODEL = "taxi"
ROWS = 300
# (data row, column, bad value, words of the reason)
BAD_CELLS = [(10, "fare", "abc", "'fare' 'abc' is not a number"),
             (20, "trip_start_hour", "3.5", "is not a whole number"),
             (60, "fare", "1e39", "beyond float32")]
SHORT_ROW = 30       # a row with three fields too few
NA_ROW = 40          # fare 'NA': a missing value, as in training
QUOTED_ROW = 50      # company with a quoted newline: one row on two lines


def _lines():
    with open(TAXI_SMALL, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def header():
    return _lines()[0]


@pytest.fixture(scope="module")
def bad_csv(tmp_path_factory, header):
    """The first 300 taxi rows with three bad cells, one short row, an NA marker and a quoted newline."""
    rows = [list(r) for r in _lines()[1:ROWS + 1]]
    for row, column, value, _ in BAD_CELLS:
        rows[row - 1][header.index(column)] = value
    rows[SHORT_ROW - 1] = rows[SHORT_ROW - 1][:-3]
    rows[NA_ROW - 1][header.index("fare")] = "NA"
    rows[QUOTED_ROW - 1][header.index("company")] = "Two\nLines Cab"
    path = tmp_path_factory.mktemp("bad") / "trips.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def model_registry(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    assert registry.publish(str(root), MODEL, lambda staging: shutil.copytree(trained, staging)) == 1
    return root


@pytest.fixture(scope="module")
def signature(trained):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(trained))
    return loaded, loaded.signatures[keys.RAW_SIGNATURE]


@pytest.fixture(scope="module")
def features(trained):
    return json.loads((trained / keys.MODEL_INFO_FILE).read_text())["raw_features"]


def expected_predictions(signature, features, records):
    """The signature on rows parsed here: NA markers and empty cells are NaN / ""."""
    import tensorflow as tf

    na = set(defaults.NA_VALUES)
    columns = {}
    for name, kind in features.items():
        values = [r[name] for r in records]
        if kind == keys.BYTES:
            columns[name] = tf.constant(["" if v in na else v for v in values])
        else:
            dtype = np.float64 if kind == keys.INT else np.float32
            columns[name] = tf.constant(np.array([math.nan if v in na else float(v) for v in values],
                                                 dtype=dtype))
    return signature[1](**columns)[keys.PREDICTIONS].numpy()


def good_records(path, bad_rows):
    with open(path, newline="", encoding="utf-8") as f:
        return [r for i, r in enumerate(csv.DictReader(f), start=1) if i not in bad_rows]


BAD_ROWS = {r for r, *_ in BAD_CELLS} | {SHORT_ROW}


def position(row):
    """Where data row ``row`` of the bad file lands in the output (bad rows are left out)."""
    return row - 1 - sum(bad < row for bad in BAD_ROWS)


@pytest.fixture(scope="module")
def beam_run(bad_csv, model_registry, tmp_path_factory):
    out = tmp_path_factory.mktemp("beam") / "predictions"
    result = run_batch_predict(str(bad_csv), str(out), registry_uri=str(model_registry), model_name=MODEL,
                               engine="beam", max_error_rate=0.05, rows_per_task=60,
                               beam_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
                               summary_path=str(out.parent / "summary.md"))
    return result, out


@pytest.mark.slow  # a second Beam job, with the default options (worker threads in this process)
def test_default_beam_options_use_a_thread_per_core_and_give_the_same_output(beam_run, bad_csv, model_registry,
                                                                             tmp_path):
    from prodml.components.batch_predict import beam_job

    args = beam_job.beam_args_with_defaults([])
    assert "--direct_running_mode=multi_threading" in args
    assert f"--direct_num_workers={len(os.sched_getaffinity(0))}" in args
    assert beam_job.beam_args_with_defaults(["--runner=DataflowRunner", "--project=p"]) == [
        "--runner=DataflowRunner", "--project=p"]
    out = tmp_path / "predictions"
    result = run_batch_predict(str(bad_csv), str(out), registry_uri=str(model_registry), model_name=MODEL,
                               engine="beam", max_error_rate=0.05, rows_per_task=60)
    assert result["worker_processes"] == 1
    assert (result["scored"], result["errors"]) == (beam_run[0]["scored"], beam_run[0]["errors"])
    threads, processes = outputs.read_predictions(str(out)), outputs.read_predictions(str(beam_run[1]))
    assert threads.equals(processes)


# ---- Beam, two worker processes ------------------------------------------------------------------

@pytest.mark.slow  # the Beam job: two worker processes load TensorFlow (about 30 s, once)
def test_beam_scores_every_good_row_on_two_processes(beam_run):
    result, out = beam_run
    assert (result["rows"], result["scored"], result["errors"]) == (ROWS, ROWS - len(BAD_ROWS), len(BAD_ROWS))
    assert result["worker_processes"] == 2, "the DirectRunner should spread the tasks over both processes"
    assert result["model_version"] == 1
    assert json.loads((out / outputs.SUCCESS_FILE).read_text())["scored"] == ROWS - len(BAD_ROWS)
    assert sorted(os.listdir(out)) == [outputs.SUCCESS_FILE] + [f"part-{i:05d}.parquet" for i in range(5)]
    leftovers = [n for n in os.listdir(out.parent) if outputs.STAGING_INFIX in n]
    assert not leftovers


@pytest.mark.slow  # the Beam job: two worker processes load TensorFlow (about 30 s, once)
def test_beam_predictions_equal_the_signature_on_the_same_raw_rows(beam_run, bad_csv, signature, features):
    result, out = beam_run
    frame = outputs.read_predictions(str(out))
    expected = expected_predictions(signature, features, good_records(bad_csv, BAD_ROWS))
    np.testing.assert_allclose(frame["probability_1"].to_numpy(), expected, rtol=0, atol=1e-6)
    assert list(frame["predicted_big_tipper"]) == ["1" if p >= 0.5 else "0" for p in expected]
    assert set(frame["model_version"]) == {1}


@pytest.mark.slow  # the Beam job: two worker processes load TensorFlow (about 30 s, once)
def test_every_input_column_is_carried_label_included(beam_run, bad_csv, header):
    result, out = beam_run
    frame = outputs.read_predictions(str(out))
    assert list(frame.columns) == header + ["probability_1", "predicted_big_tipper", "model_version", "request_id"]
    records = good_records(bad_csv, BAD_ROWS)
    assert list(frame[LABEL]) == [r[LABEL] for r in records]
    assert frame["company"].iloc[position(QUOTED_ROW)] == "Two\nLines Cab"


@pytest.mark.slow  # the Beam job: two worker processes load TensorFlow (about 30 s, once)
def test_na_marker_scores_like_an_empty_cell(beam_run, bad_csv, signature, features):
    result, out = beam_run
    frame = outputs.read_predictions(str(out))
    record = good_records(bad_csv, BAD_ROWS)[position(NA_ROW)]
    assert record["fare"] == "NA"
    empty = expected_predictions(signature, features, [{**record, "fare": ""}])
    assert abs(frame["probability_1"].iloc[position(NA_ROW)] - empty[0]) <= 1e-6


@pytest.mark.slow  # the Beam job: two worker processes load TensorFlow (about 30 s, once)
def test_dead_letters_name_row_line_raw_text_and_reason(beam_run, bad_csv):
    result, out = beam_run
    letters = dead_letters.read(result["dead_letter_uri"])
    assert result["dead_letter_uri"] == str(out) + "-dead-letters"
    assert [d["row"] for d in letters] == sorted(BAD_ROWS)
    raw_lines = bad_csv.read_text().split("\n")
    by_row = {d["row"]: d for d in letters}
    for row, _column, _value, words in BAD_CELLS:
        letter = by_row[row]
        assert words in letter["reason"]
        # Line numbers count the header and the quoted newline of row 50.
        assert letter["line"] == row + 1 + (row > QUOTED_ROW)
        assert letter["raw"] == raw_lines[letter["line"] - 1]
        assert letter["file"] == str(bad_csv)
    assert "16 fields, the header 19" in by_row[SHORT_ROW]["reason"]


@pytest.mark.slow  # the Beam job: two worker processes load TensorFlow (about 30 s, once)
def test_summary_card_and_progress_facts(beam_run):
    result, out = beam_run
    card = (out.parent / "summary.md").read_text()
    assert f"{ROWS:,} read, {ROWS - len(BAD_ROWS):,} scored, {len(BAD_ROWS)} dead letters" in card
    assert result["data_sha256"] in card
    assert "'fare' 'abc' is not a number" in card


# ---- failures and parameters (in process) --------------------------------------------------------

def test_any_bad_row_fails_by_default_after_writing_dead_letters(bad_csv, model_registry, tmp_path):
    out = tmp_path / "predictions"
    with pytest.raises(InputDataError) as e:
        run_batch_predict(str(bad_csv), str(out), registry_uri=str(model_registry), model_name=MODEL,
                          engine="local")
    message = str(e.value)
    assert f"4 of {ROWS} rows (1.33%) could not be scored, and any bad row fails the run" in message
    assert f"row 10 (line 11) of {bad_csv}: 'fare' 'abc' is not a number" in message
    assert "Nothing was published" in message
    assert not out.exists(), "a failed run publishes no prediction set"
    assert len(dead_letters.read(str(out) + "-dead-letters")) == 4
    assert not [n for n in os.listdir(tmp_path) if outputs.STAGING_INFIX in n]


def test_non_empty_output_is_refused_unless_overwrite(bad_csv, model_registry, tmp_path):
    out = tmp_path / "predictions"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    args = {"registry_uri": str(model_registry), "model_name": MODEL, "engine": "local", "max_error_rate": 1}
    with pytest.raises(ConfigError, match="exists and is not empty. Choose a new location, or pass --overwrite"):
        run_batch_predict(str(bad_csv), str(out), **args)
    assert (out / "old.txt").exists()
    result = run_batch_predict(str(bad_csv), str(out), overwrite=True, id_columns=["trip_start_timestamp"],
                               output_format="csv", **args)
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000.csv"]
    frame = outputs.read_predictions(str(out), ["trip_start_timestamp"])
    assert list(frame.columns) == ["trip_start_timestamp", "probability_1", "predicted_big_tipper",
                                   "model_version", "request_id"]
    assert len(frame) == result["scored"] == ROWS - len(BAD_ROWS)


def test_request_ids_are_stable_across_runs_and_name_the_input_row(bad_csv, model_registry, tmp_path):
    """Contract 2: every row has model_version and a request_id from the input's fingerprint and row."""
    import hashlib

    args = {"registry_uri": str(model_registry), "model_name": MODEL, "engine": "local", "max_error_rate": 1,
            "id_columns": ["trip_start_timestamp"]}
    first = run_batch_predict(str(bad_csv), str(tmp_path / "first"), rows_per_task=1000, **args)
    run_batch_predict(str(bad_csv), str(tmp_path / "second"), rows_per_task=70, output_format="jsonl", **args)
    one, two = (outputs.read_predictions(str(tmp_path / name)) for name in ("first", "second"))
    assert list(one["request_id"]) == list(two["request_id"])  # other run, task split and format
    assert set(one["model_version"]) == {1}
    sha = hashlib.sha256(bad_csv.read_bytes()).hexdigest()
    assert first["data_sha256"] == sha
    good_rows = [row for row in range(1, ROWS + 1) if row not in BAD_ROWS]
    assert list(one["request_id"]) == [f"{sha[:16]}-0-{row}" for row in good_rows]


def test_unknown_model_and_version_list_what_exists(bad_csv, model_registry, tmp_path):
    with pytest.raises(ConfigError, match=r"Model 'nope' has no pushed version in the registry .* It holds: taxi\."):
        run_batch_predict(str(bad_csv), str(tmp_path / "o"), registry_uri=str(model_registry), model_name="nope")
    with pytest.raises(ConfigError, match=r"Model 'taxi' has no version 7 in .*; its versions are 1\. Give one"):
        run_batch_predict(str(bad_csv), str(tmp_path / "o"), registry_uri=str(model_registry), model_name=MODEL,
                          version=7)
    with pytest.raises(ConfigError, match="--version 0 is not a model version"):
        run_batch_predict(str(bad_csv), str(tmp_path / "o"), registry_uri=str(model_registry), model_name=MODEL,
                          version="0")
    assert not (tmp_path / "o").exists()


def test_missing_feature_is_named(model_registry, tmp_path, header):
    data = tmp_path / "no_fare.csv"
    rows = _lines()[: 5]
    i = header.index("fare")
    data.write_text("\n".join(",".join(r[:i] + r[i + 1:]) for r in rows) + "\n")
    with pytest.raises(InputDataError, match=f"{data} has no column 'fare', which the model needs"):
        run_batch_predict(str(data), str(tmp_path / "o"), registry_uri=str(model_registry), model_name=MODEL,
                          engine="local")


def test_unwritable_output_is_named(bad_csv, model_registry, tmp_path):
    # A folder under a regular file cannot be created, whoever runs the test (root ignores permissions).
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=f"Cannot write beside the output location {blocker}/out .*Choose a "
                                          "location this process can write to"):
        run_batch_predict(str(bad_csv), str(blocker / "out"), registry_uri=str(model_registry), model_name=MODEL,
                          engine="local")


def test_output_on_a_file_path_is_named(bad_csv, model_registry, tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="is a file; batch prediction writes a folder"):
        run_batch_predict(str(bad_csv), str(target), registry_uri=str(model_registry), model_name=MODEL)


def test_bad_parameters_fail_before_any_work(bad_csv, model_registry, tmp_path):
    args = {"registry_uri": str(model_registry), "model_name": MODEL}
    with pytest.raises(ConfigError, match="Output format 'xlsx' is not supported: use parquet, csv, jsonl"):
        run_batch_predict(str(bad_csv), str(tmp_path / "o"), output_format="xlsx", **args)
    with pytest.raises(ConfigError, match="max_error_rate must be a number from 0 to 1"):
        run_batch_predict(str(bad_csv), str(tmp_path / "o"), max_error_rate=5, **args)
    with pytest.raises(ConfigError, match="ID column 'trip_id' is not a column of"):
        run_batch_predict(str(bad_csv), str(tmp_path / "o"), id_columns="trip_id", **args)
    with pytest.raises(ConfigError, match="Engine 'flink' is not known"):
        run_batch_predict(str(bad_csv), str(tmp_path / "o"), engine="flink", **args)


# ---- input and output formats (in process) --------------------------------------------------------

def test_parquet_and_gzipped_csv_give_the_csv_predictions(bad_csv, model_registry, tmp_path, signature, features):
    import pandas as pd

    reference = {"probability_1": expected_predictions(signature, features, good_records(bad_csv, BAD_ROWS))}
    clean = tmp_path / "clean.csv"
    frame = pd.read_csv(bad_csv, dtype=str, keep_default_na=False)
    frame = frame.drop(index=[r - 1 for r in BAD_ROWS])
    frame.to_csv(clean, index=False)
    with open(clean, "rb") as f, gzip.open(tmp_path / "clean.csv.gz", "wb") as g:
        g.write(f.read())
    typed = pd.read_csv(clean)  # numbers as numbers, empty cells as nulls
    typed.to_parquet(tmp_path / "clean.parquet", row_group_size=100)
    for name, fmt in (("clean.csv.gz", "jsonl"), ("clean.parquet", "parquet")):
        out = tmp_path / f"out-{name}"
        run_batch_predict(str(tmp_path / name), str(out), registry_uri=str(model_registry), model_name=MODEL,
                          engine="local", id_columns=[LABEL], output_format=fmt, rows_per_task=100)
        got = outputs.read_predictions(str(out))
        assert len(got) == len(reference["probability_1"])
        np.testing.assert_allclose(got["probability_1"], reference["probability_1"], rtol=0, atol=1e-6,
                                   err_msg=name)


@pytest.mark.slow  # reads and scores ingest's eval split (about 6 s)
def test_tf_examples_score_like_the_examples_signature(ingested, trained, tmp_path, signature):
    """Ingest's gzipped tf.Example files: the raw-feature path agrees with training's parsing path."""
    import tensorflow as tf

    split = dataio.split_dir(str(ingested), keys.EVAL)
    out = tmp_path / "from-examples"
    result = run_batch_predict(split, str(out), model_dir=str(trained), engine="local")
    got = outputs.read_predictions(str(out))
    files = dataio.split_files(str(ingested), keys.EVAL)
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    expected = signature[0].signatures[keys.EXAMPLES_SIGNATURE](examples=tf.constant(records))
    assert result["errors"] == 0 and len(got) == len(records)
    np.testing.assert_allclose(got["probability_1"], expected[keys.PREDICTIONS].numpy(), rtol=0, atol=1e-6)
    assert got["model_version"].isna().all(), "a training output folder is no registry version"


def test_cells_to_columns_follow_the_training_rules():
    # Markers match exactly, as in ingest: " NA " is not missing (a bad number, a category).
    cells = {"n": np.array(["1", " 2 ", "NA", "", None, "2.5", "x", "inf", " NA "], dtype=object),
             "f": np.array(["1.5", "nan", "1e39", "-3", "null", "0", "1", "2", "3"], dtype=object),
             "s": np.array(["a", "NA", "", " b ", None, "c", "d", "e", " NA "], dtype=object)}
    columns, problems = core.to_model_columns(cells, {"n": keys.INT, "f": keys.FLOAT, "s": keys.BYTES},
                                              defaults.NA_VALUES)
    assert columns["n"].dtype == np.float64 and columns["f"].dtype == np.float32
    np.testing.assert_array_equal(columns["n"][:5], [1, 2, np.nan, np.nan, np.nan])
    assert list(columns["s"]) == ["a", "", "", " b ", "", "c", "d", "e", " NA "]
    assert sorted(problems) == [2, 5, 6, 7, 8]
    assert "'f' '1e39' is beyond float32's range" in problems[2][0]
    assert "'n' '2.5' is not a whole number" in problems[5][0]
    assert "'n' 'x' is not a number" in problems[6][0]
    assert "'n' 'inf' is not a finite number" in problems[7][0]
    assert "'n' ' NA ' is not a number" in problems[8][0]


def test_prediction_columns_by_problem_type():
    from prodml.components.common.artifacts import Label

    multi = Label("kind", keys.MULTICLASS, ["a", "b", "c"])
    values = core.prediction_values(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32), multi)
    assert list(values) == ["probability_a", "probability_b", "probability_c", "predicted_kind"]
    assert list(values["predicted_kind"]) == ["b", "a"]
    assert core.prediction_columns(Label("fare", keys.REGRESSION)) == ["predicted_fare"]
    with pytest.raises(ConfigError, match="The input column 'model_version' has the name of an output column"):
        core.output_columns(Label("y", keys.BINARY, ["0", "1"]), ["id", "model_version"])


def test_csv_tasks_cut_at_record_boundaries(tmp_path):
    data = tmp_path / "q.csv"
    data.write_bytes(b'a,b\r\n1,"x\r\ny"\r\n\r\n2,z\r\n3,"w,""v"""\r\n4,u')
    plan = sources.plan(str(data), rows_per_task=1)
    assert plan.rows == 4 and plan.columns == ["a", "b"]
    chunks = [c for t in plan.tasks for c in sources.read_task(t, 10)]
    assert [core.as_arrow_text(c.cells["b"]).to_pylist() for c in chunks] == [["x\r\ny"], ["z"], ['w,"v"'], ["u"]]
    assert [int(c.rows[0]) for c in chunks] == [1, 2, 3, 4]
    assert [int(c.lines[0]) for c in chunks] == [2, 5, 6, 7]


@pytest.mark.parametrize("rows_per_task", [1, 2, 3, 50])
def test_csv_tasks_cover_every_row_once_across_read_blocks(tmp_path, monkeypatch, rows_per_task):
    import hashlib

    # Blocks of 16 bytes: records, quoted newlines and blank lines straddle block boundaries.
    monkeypatch.setattr(sources, "_BLOCK", 16)
    records = [f'{i},"v\n{i}"' if i % 4 == 0 else f"{i},w{i}" for i in range(1, 41)]
    text = "a,b\n" + "\n".join(r + ("\n" if i % 7 == 0 else "") for i, r in enumerate(records, 1)) + "\n"
    data = tmp_path / "blocks.csv"
    data.write_text(text)
    plan = sources.plan(str(data), rows_per_task=rows_per_task)
    assert plan.rows == 40 and plan.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert [t.first_row for t in plan.tasks] == list(range(1, 41, rows_per_task))
    assert plan.tasks[0].start == len("a,b\n") and plan.tasks[-1].end == len(text)
    assert all(a.end == b.start for a, b in zip(plan.tasks, plan.tasks[1:]))
    chunks = [c for t in plan.tasks for c in sources.read_task(t, 1000)]
    assert [int(r) for c in chunks for r in c.rows] == list(range(1, 41))
    assert [v for c in chunks for v in core.as_arrow_text(c.cells["a"]).to_pylist()] == [str(i) for i in range(1, 41)]
    starts = [text.count("\n", 0, text.index(f"\n{r}\n" if i % 7 == 0 else f"\n{r}") + 1) + 1
              for i, r in enumerate(records, 1)]
    assert [int(n) for c in chunks for n in c.lines] == starts


def test_header_names_are_sanitised_as_ingest_does():
    from prodml.components.ingest import columns

    for name in ["fare", "trip miles", "(x)", "é", "a/b-c.d", "_x"]:
        assert sources.sanitise(name) == columns.sanitise(name)


def test_dead_letter_text_of_a_parquet_row_is_json(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1, 2], "fare": ["1.5", "x"]}), tmp_path / "d.parquet")
    plan = sources.plan(str(tmp_path / "d.parquet"), 10)
    chunk = next(sources.read_task(plan.tasks[0], 10))
    assert json.loads(chunk.raw[1]) == {"id": "2", "fare": "x"}


# ---- the CLI and lineage --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_root(trained, tmp_path_factory):
    """A local prodml home whose registry holds the model as version 1, recorded as push records it."""
    from prodml.components.common import lineage
    from prodml.pipelines.local import prepare_root

    root = prepare_root(str(tmp_path_factory.mktemp("home")))
    version = registry.publish(root.registry, MODEL, lambda staging: shutil.copytree(trained, staging))
    uri = registry.version_uri(root.registry, MODEL, version)
    lineage.record_execution(root.metadata_connection, "push", "prodml-training", "run-1", inputs={},
                             outputs={keys.PUSHED_MODEL_KEY: lineage.ArtifactRecord(uri, lineage.MODEL)})
    return root


def test_cli_scores_records_lineage_and_lineage_shows_the_run(cli_root, bad_csv, capsys):
    import hashlib

    from prodml.pipelines.cli import main

    out = os.path.join(cli_root.path, "scored")
    code = main(["run", "batch-predict", "--data", str(bad_csv), "--model-name", MODEL, "--root", cli_root.path,
                 "--output", out, "--runner", "local", "--max-error-rate", "0.05", "--id-columns", LABEL,
                 "--json"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads(printed.strip().splitlines()[-1])
    assert (result["rows"], result["errors"], result["model_version"]) == (ROWS, len(BAD_ROWS), 1)
    assert f"Dead letters: {len(BAD_ROWS)} rows in {out}-dead-letters" in printed
    assert main(["lineage", "--model-name", MODEL, "--root", cli_root.path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [run] = report["batch_runs"]
    assert run["run_id"] == result["run_id"] and run["uri"] == out
    assert run["properties"]["scored"] == ROWS - len(BAD_ROWS) and run["properties"]["errors"] == len(BAD_ROWS)
    sha = hashlib.sha256(bad_csv.read_bytes()).hexdigest()
    assert run["properties"]["data_sha256"] == sha
    from prodml.components.common import lineage

    [step] = list(lineage.run_steps(cli_root.metadata_connection, result["run_id"]).values())
    assert step["inputs"]["data"]["properties"]["sha256"] == sha
    assert step["inputs"]["model"]["uri"] == registry.version_uri(cli_root.registry, MODEL, 1)
    assert main(["lineage", "--model-name", MODEL, "--root", cli_root.path]) == 0
    assert f"→ batch_predict run {result['run_id']}" in capsys.readouterr().out


def test_cli_errors_are_one_paragraph_with_their_exit_code(cli_root, bad_csv, capsys):
    from prodml.pipelines.cli import main

    base = ["run", "batch-predict", "--data", str(bad_csv), "--model-name", MODEL, "--root", cli_root.path,
            "--runner", "local"]
    assert main(base + ["--version", "3", "--output", os.path.join(cli_root.path, "v3")]) == 2
    err = capsys.readouterr().err
    assert "Model 'taxi' has no version 3" in err and "its versions are 1" in err and "Traceback" not in err
    assert main(base + ["--output", os.path.join(cli_root.path, "strict")]) == 3
    err = capsys.readouterr().err
    assert "could not be scored, and any bad row fails the run" in err and "Traceback" not in err


# ---- the KFP component and pipeline ---------------------------------------------------------------

def test_component_defaults_agree_with_the_executor():
    """The checked-in YAML is compared with the code by tests/test_component_manifests.py."""
    from prodml.components.batch_predict.component import batch_predict
    from prodml.components.batch_predict.executor import PIPELINE_NAME

    assert batch_predict.component_spec.inputs["pipeline_name"].default == PIPELINE_NAME
    assert batch_predict.component_spec.inputs["model"].optional


def test_component_body_publishes_logs_metrics_and_records_lineage(bad_csv, model_registry, tmp_path):
    """The KFP component's function, called as kfp's executor calls it (Beam in memory: one process)."""
    from kfp.dsl import Dataset, Markdown, Metrics

    from prodml.components.batch_predict.component import batch_predict
    from prodml.components.common import lineage

    predictions = Dataset(uri=str(tmp_path / "predictions"))
    metrics, summary = Metrics(uri=str(tmp_path / "metrics")), Markdown(uri=str(tmp_path / "summary.md"))
    connection = f"sqlite:///{tmp_path}/metadata.sqlite"
    scored = batch_predict.python_func(
        data_uri=str(bad_csv), predictions=predictions, metrics=metrics, summary=summary, model=None,
        registry_uri=str(model_registry), model_name=MODEL, version="1", output_uri="", output_format="parquet",
        id_columns=[], beam_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        max_error_rate=0.05, overwrite=False, metadata_connection=connection,
        pipeline_name="prodml-batch-prediction", run_id="run-7")
    assert scored == ROWS - len(BAD_ROWS)
    assert (tmp_path / "predictions" / outputs.SUCCESS_FILE).exists()
    assert metrics.metadata["errors"] == len(BAD_ROWS) and metrics.metadata["rows"] == ROWS
    assert predictions.metadata["model_version"] == 1 and predictions.metadata["scored"] == scored
    assert "# Batch prediction" in (tmp_path / "summary.md").read_text()
    step = lineage.run_steps(connection, "run-7")["batch_predict"]
    assert step["outputs"]["predictions"]["uri"] == predictions.uri
    assert step["outputs"]["predictions"]["properties"]["errors"] == len(BAD_ROWS)
    assert step["inputs"]["model"]["uri"] == registry.version_uri(str(model_registry), MODEL, 1)
    assert step["inputs"]["data"]["properties"]["sha256"] == outputs.summary_of(predictions.uri)["data_sha256"]


def test_nightly_schedule_submits_the_batch_pipeline(monkeypatch, tmp_path, capsys):
    """``prodml submit --pipeline batch-prediction --recurring``, against test_submit.py's stub KFP API."""
    import importlib.util

    from prodml.pipelines import cli, submit

    spec = importlib.util.spec_from_file_location("kfp_stub", pathlib.Path(__file__).parent.parent / "test_submit.py")
    stub_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stub_module)
    for name in (submit.HOST_ENV, submit.UI_HOST_ENV, submit.TOKEN_ENV, "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    stub = stub_module.StubKfpApi()
    try:
        code = cli.main(["submit", "--host", stub.host, "--pipeline", "batch-prediction", "--recurring", "0 2 * * *",
                         "--param", "data_uri=gs://b/trips/", "--param", "model_name=chicago-taxi",
                         "--param", "registry_uri=gs://b/registry", "--param", "overwrite=true"])
        assert code == 0, capsys.readouterr().err
        [job] = stub.find("POST", "/apis/v2beta1/recurringruns")
    finally:
        stub.close()
    body = job["json"]
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "prodml-batch-prediction"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert body["runtime_config"]["parameters"]["model_name"] == "chicago-taxi"
    assert body["runtime_config"]["parameters"]["overwrite"] is True


@pytest.mark.slow  # kfp.local runs the step in a subprocess, and Beam starts two workers (about 30 s)
def test_the_compiled_component_scores_a_training_runs_model_through_kfp_local(bad_csv, trained, tmp_path):
    """The checked-in YAML, fed a Model artifact as a training pipeline would (an importer stands in here).

    kfp.local (2.13) cannot run a task whose optional input artifact is left unset, so the registry
    form of the step (batch_prediction_pipeline) runs only on a KFP backend; its body is tested above.
    """
    from kfp import dsl, local
    from kfp.dsl import Model

    from prodml.pipelines.component_manifests import load_component

    component = load_component("batch_predict")

    @dsl.pipeline(name="score-with-a-trained-model")
    def score(data_uri: str, model_uri: str, output_uri: str) -> dsl.Dataset:
        model = dsl.importer(artifact_uri=model_uri, artifact_class=Model, reimport=False)
        return component(data_uri=data_uri, model=model.output, output_uri=output_uri, id_columns=[LABEL],
                         max_error_rate=0.05).outputs["predictions"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    out = tmp_path / "scored"
    task = score(data_uri=str(bad_csv), model_uri=str(trained), output_uri=str(out))
    assert task.output.metadata["scored"] == ROWS - len(BAD_ROWS)
    assert task.output.metadata["output_uri"] == str(out)
    frame = outputs.read_predictions(str(out))
    assert list(frame.columns) == [LABEL, "probability_1", "predicted_big_tipper", "model_version", "request_id"]
