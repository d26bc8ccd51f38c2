"""Retraining's data: ingest's split column, the prepared file from logs and late labels, and ``prodml monitor``.

The whole loop (a served model, real traffic, the monitor, a retraining run, the rollover) is
``test_monitoring_loop.py``; these tests check its parts on small files in seconds.
"""

import csv
import hashlib
import json
import pathlib
import subprocess
import sys

import pytest

from prodml.components.common import artifacts, keys
from prodml.components.common.errors import ConfigError, InputDataError, RegistryError
from prodml.components.ingest.executor import run_ingest
from prodml.pipelines import retrain

PRODML = str(pathlib.Path(sys.executable).parent / "prodml")
MODEL = artifacts.ModelInfo(label=artifacts.Label("big_tipper", keys.BINARY, ["0", "1"]),
                            raw_features={"fare": keys.FLOAT, "payment_type": keys.BYTES, "trip_start_hour": keys.INT})


def _rows_csv(path, n, extra_header="", extra=lambda i: ""):
    lines = ["id,amount,color,label" + extra_header]
    lines += [f"{i},{(i * 37) % 100}.5,{['red', 'green', 'blue'][i % 3]},{i % 2}{extra(i)}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def _ids_by_split(out):
    import tensorflow as tf

    found = {}
    for split in (keys.TRAIN, keys.EVAL):
        files = sorted(str(f) for f in (out / f"Split-{split}").glob("data-*.tfrecord.gz"))
        ids = set()
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            ids.add(example.features.feature["id"].int64_list.value[0])
            assert "split" not in example.features.feature  # the split column is not a feature
        found[split] = ids
    return found


# --- ingest's split column ---------------------------------------------------------------------


@pytest.mark.slow  # two ingests and a TFRecord read: TensorFlow and tfx-bsl load
def test_split_column_pins_rows_and_leaves_the_others_to_the_hash_split(tmp_path):
    _rows_csv(tmp_path / "plain.csv", 400)
    _rows_csv(tmp_path / "pinned.csv", 400, ",split", lambda i: ",train" if i >= 200 else ",")
    run_ingest(str(tmp_path / "plain.csv"), str(tmp_path / "plain"), label="label")
    version = run_ingest(str(tmp_path / "pinned.csv"), str(tmp_path / "pinned"), label="label", split_column="split")
    plain, pinned = _ids_by_split(tmp_path / "plain"), _ids_by_split(tmp_path / "pinned")
    old = set(range(200, 400))
    assert old <= pinned[keys.TRAIN] and not old & pinned[keys.EVAL]
    # The unpinned rows land where they land without the column: the eval split is theirs alone.
    assert pinned[keys.EVAL] == plain[keys.EVAL] - old and pinned[keys.EVAL]
    assert "split" not in version["columns"] and version["split_column"] == "split"
    assert version["row_counts"] == {keys.TRAIN: 400 - len(pinned[keys.EVAL]), keys.EVAL: len(pinned[keys.EVAL])}


def test_a_split_column_value_that_is_not_a_split_names_the_line(tmp_path):
    _rows_csv(tmp_path / "bad.csv", 20, ",split", lambda i: ",test" if i == 7 else ",")
    with pytest.raises(InputDataError, match=r"line 9 of .*bad.csv.*'split' holds 'test'.*train, eval"):
        run_ingest(str(tmp_path / "bad.csv"), str(tmp_path / "out"), label="label", split_column="split")


def test_a_split_column_that_is_the_label_or_absent_is_a_usage_error(tmp_path):
    _rows_csv(tmp_path / "a.csv", 20)
    with pytest.raises(ConfigError, match="also the label"):
        run_ingest(str(tmp_path / "a.csv"), str(tmp_path / "out"), label="label", split_column="label")
    with pytest.raises(ConfigError, match="'nope' is not a column"):
        run_ingest(str(tmp_path / "a.csv"), str(tmp_path / "out"), label="label", split_column="nope")


def test_preflight_names_a_bad_split_column_before_any_step(tmp_path):
    from prodml.pipelines import preflight

    _rows_csv(tmp_path / "a.csv", 20, ",split", lambda i: ",")
    params = preflight.check_training(str(tmp_path / "a.csv"), "label", "m", {"split_column": "split"})
    assert params["split_column"] == "split"
    with pytest.raises(ConfigError, match=r"'nope' \(--split-column\) is not a column"):
        preflight.check_training(str(tmp_path / "a.csv"), "label", "m", {"split_column": "nope"})
    with pytest.raises(ConfigError, match="also the label or a column to drop"):
        preflight.check_training(str(tmp_path / "a.csv"), "label", "m", {"split_column": "split",
                                                                          "drop_columns": ["split"]})


# --- the prepared retraining file --------------------------------------------------------------


def _log_line(trip, fare, payment, hour, prediction=0.3, model="taxi", version=1, row=0,
              timestamp="2026-12-01T16:00:00+00:00"):
    return json.dumps({"timestamp": timestamp, "model_name": model, "model_version": version,
                       "request_id": f"r-{trip}", "row": row, "passthrough": {"trip_id": trip},
                       "features": {"fare": fare, "payment_type": payment, "trip_start_hour": hour},
                       "prediction": prediction})


def _served(data_version=None):
    return retrain.ServedVersion("taxi", 1, "/nowhere/taxi/1", MODEL, data_version, {})


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_logged_rows_join_late_labels_once_per_key(tmp_path):
    log = tmp_path / "requests.jsonl"
    log.write_text("\n".join([
        _log_line("t1", 10.5, "Cash", 3), _log_line("t2", 22.0, "Credit Card", 17),
        _log_line("t1", 10.5, "Cash", 3),                    # served twice: kept once
        _log_line("t3", None, "Cash", 4),                    # no label
        _log_line("t4", 8.0, "Cash", 5, model="other"),      # another model's row
        _log_line("t5", 9.25, None, 23)]) + "\n")
    (tmp_path / "labels.csv").write_text("trip_id,big_tipper\nt1,0\nt2,1\nt4,1\nt5,1\n")
    prepared = retrain.prepare_data(str(tmp_path / "out"), _served(), traffic_uri=str(log),
                                    labels_uri=str(tmp_path / "labels.csv"), join_key="trip_id")
    rows = _read(prepared["path"])
    assert rows[0] == ["fare", "payment_type", "trip_start_hour", "big_tipper"]
    assert rows[1:] == [["10.5", "Cash", "3", "0"], ["22.0", "Credit Card", "17", "1"], ["9.25", "", "23", "1"]]
    assert prepared["new_rows"] == 3 and prepared["old_rows"] == 0 and prepared["split_column"] == ""
    assert prepared["traffic"] == {"traffic_rows": 5, "labelled_rows": 4, "written": 3, "repeated_keys": 1}
    assert not list((tmp_path / "out").glob("*.tmp-*"))


def test_only_rows_logged_in_the_monitored_window_are_retrained_on(tmp_path):
    log = tmp_path / "requests.jsonl"
    log.write_text("\n".join([
        _log_line("t1", 10.5, "Cash", 3, timestamp="2026-11-30T23:59:59+00:00"),   # before the window
        _log_line("t2", 22.0, "Credit Card", 17, timestamp="2026-12-01T01:00:00+01:00"),  # 00:00 UTC: inside
        _log_line("t3", 9.25, "Cash", 23, timestamp="2026-12-02T00:00:00Z")]) + "\n")  # the end is excluded
    (tmp_path / "labels.csv").write_text("trip_id,big_tipper\nt1,0\nt2,1\nt3,1\n")
    prepared = retrain.prepare_data(str(tmp_path / "out"), _served(), traffic_uri=str(log),
                                    labels_uri=str(tmp_path / "labels.csv"), join_key="trip_id",
                                    window=("2026-12-01T00:00:00", "2026-12-02T00:00:00Z"))
    assert _read(prepared["path"])[1:] == [["22.0", "Credit Card", "17", "1"]]


def test_old_data_is_pinned_to_train_and_checked_against_its_fingerprint(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("trip_id,fare,payment_type,trip_start_hour,tips,big_tipper\n"
                   "a,5.0,Cash,1,0,0\nb,7.5,Credit Card,2,3.0,1\n")
    new = tmp_path / "new.csv"
    new.write_text("fare,trip_start_hour,payment_type,big_tipper,trip_id\n30.0,9,Cash,0,z\n")
    sha = hashlib.sha256(old.read_bytes()).hexdigest()
    version = artifacts.DataVersion(source_uri=str(old), sha256=sha, size_bytes=old.stat().st_size,
                                    row_counts={}, split_ratios={}, columns={}, dropped_columns=[],
                                    label=MODEL.label)
    prepared = retrain.prepare_data(str(tmp_path / "out"), _served(version), retrain_data=str(new),
                                    with_old_data=True)
    assert _read(prepared["path"]) == [
        ["fare", "payment_type", "trip_start_hour", "big_tipper", retrain.SPLIT_COLUMN],
        ["30.0", "Cash", "9", "0", ""], ["5.0", "Cash", "1", "0", "train"], ["7.5", "Credit Card", "2", "1", "train"]]
    assert (prepared["new_rows"], prepared["old_rows"], prepared["old_source"]) == (1, 2, str(old))

    old.write_text(old.read_text() + "c,1.0,Cash,3,0,0\n")  # the old data changed since training
    with pytest.raises(InputDataError, match=r"training data of v1 .*changed since taxi v1 was trained"):
        retrain.prepare_data(str(tmp_path / "again"), _served(version), retrain_data=str(new), with_old_data=True)
    assert not list((tmp_path / "again").glob("*"))  # nothing half-written


def test_retrain_data_without_the_models_columns_is_named(tmp_path):
    data = tmp_path / "new.csv"
    data.write_text("fare,payment_type,big_tipper\n1.0,Cash,0\n")
    with pytest.raises(InputDataError, match=r"lacks column\(s\) trip_start_hour of taxi v1"):
        retrain.prepare_data(str(tmp_path / "out"), _served(), retrain_data=str(data))


def test_old_data_of_an_unrecorded_version_and_missing_new_data_are_explained(tmp_path):
    with pytest.raises(RegistryError, match="no training run in ML Metadata"):
        retrain.prepare_data(str(tmp_path), _served(), retrain_data="x.csv", with_old_data=True)
    with pytest.raises(ConfigError, match="--retrain-data FILE, or the traffic"):
        retrain.prepare_data(str(tmp_path), _served(), traffic_uri="logs.jsonl")


def test_labels_that_match_no_logged_row_leave_nothing_to_retrain_on(tmp_path):
    log = tmp_path / "requests.jsonl"
    log.write_text(_log_line("t1", 10.5, "Cash", 3) + "\n")
    (tmp_path / "labels.csv").write_text("trip_id,big_tipper\nzzz,1\n")
    with pytest.raises(InputDataError, match="none of the 1 traffic rows found a label"):
        retrain.prepare_data(str(tmp_path / "out"), _served(), traffic_uri=str(log),
                             labels_uri=str(tmp_path / "labels.csv"), join_key="trip_id")


# --- prodml monitor: usage and data errors -----------------------------------------------------


def _prodml(*args):
    result = subprocess.run([PRODML, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_monitor_usage_and_registry_errors_are_one_paragraph(tmp_path):
    log = tmp_path / "requests.jsonl"
    log.write_text(_log_line("t1", 10.5, "Cash", 3) + "\n")
    result = _prodml("monitor", "--model-name", "taxi", "--traffic", log, "--join-key", "trip_id",
                     "--root", tmp_path / "home")
    assert result.returncode == 2 and "give the labels with --labels" in result.stderr
    result = _prodml("monitor", "--model-name", "Bad/Name", "--traffic", log, "--root", tmp_path / "home")
    assert result.returncode == 2 and "Bad/Name" in result.stderr
    result = _prodml("monitor", "--model-name", "taxi", "--traffic", log, "--root", tmp_path / "home")
    assert result.returncode == 3, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("prodml: error:")]
    assert "taxi" in line and "push" in line
