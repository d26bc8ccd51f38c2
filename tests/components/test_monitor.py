"""The monitor on the real model of the session fixtures and real request-log traffic.

The traffic is the taxi sample, scored by the trained model's own ``serving_default`` signature
and written in the request-log format (Contract 1 of issue 10); "shifted" traffic multiplies the
fare (and is scored on the shifted fares). The version's lineage is recorded in a real ML Metadata
store (validate, transform, train, evaluate, push), so the monitor finds the training statistics,
schema and evaluation the way it does after a pipeline run. Expected drift numbers come from
TFDV's own ``generate_statistics_from_csv`` (Beam) on the same rows, compared by
``tfdv.validate_statistics``; expected live quality from scikit-learn on the labelled rows.
"""

import csv
import datetime
import json
import math
import pathlib
import shutil

import numpy as np
import pytest

from prodml.components.common import artifacts, keys, lineage, registry
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.monitor.executor import run_monitor

TAXI_SMALL = pathlib.Path(__file__).parent.parent / "testdata" / "taxi_small.csv"
LABEL = "big_tipper"
MODEL = "taxi"
START = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.UTC)
FARE_SHIFT = 3.0
LABELLED_SHARE = 0.6

pytestmark = pytest.mark.slow


def _cells():
    with open(TAXI_SMALL, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _value(cell, kind):
    if cell is None or cell.strip() in ("", "NA", "nan", "NaN", "null"):
        return None
    if kind == keys.BYTES:
        return cell
    number = float(cell)
    return int(number) if kind == keys.INT else number


def _features(rows, features, fare_factor=1.0):
    out = []
    for row in rows:
        record = {name: _value(row.get(name), kind) for name, kind in features.items()}
        if record.get("fare") is not None:
            record["fare"] = record["fare"] * fare_factor
        out.append(record)
    return out


def _predict(signature, features, records):
    import tensorflow as tf

    columns = {}
    for name, kind in features.items():
        values = [r[name] for r in records]
        if kind == keys.BYTES:
            columns[name] = tf.constant(["" if v is None else v for v in values])
        else:
            dtype = np.float64 if kind == keys.INT else np.float32
            columns[name] = tf.constant(np.array([np.nan if v is None else v for v in values], dtype))
    return signature(**columns)[keys.PREDICTIONS].numpy().astype(float)


def _log_lines(records, predictions, version=1, model_name=MODEL, start=START):
    lines = []
    for i, (features, prediction) in enumerate(zip(records, predictions)):
        lines.append(json.dumps({
            "timestamp": (start + datetime.timedelta(seconds=3 * i)).isoformat(),
            "model_name": model_name, "model_version": version, "request_id": f"req-{i // 10}", "row": i % 10,
            "passthrough": {"trip_id": f"t{i}"}, "features": features, "prediction": float(prediction)}))
    return lines


@pytest.fixture(scope="module")
def served(trained, transformed, ingested, validated, tmp_path_factory):
    """A registry holding the trained model as v1, its lineage in ML Metadata, and its evaluation."""
    from prodml.components.evaluate.executor import run_evaluate

    root = tmp_path_factory.mktemp("monitor")
    evaluation = root / "evaluation"
    run_evaluate(model_dir=str(trained), examples_dir=str(ingested), evaluation_dir=str(evaluation),
                 blessing_dir=str(root / "blessing"))
    registry_root = root / "registry"
    version = registry.publish(str(registry_root), MODEL, lambda staging: shutil.copytree(trained, staging,
                                                                                           dirs_exist_ok=True))
    version_uri = registry.version_uri(str(registry_root), MODEL, version)
    connection = f"sqlite:///{root / 'metadata.sqlite'}"
    record, A = lineage.record_execution, lineage.ArtifactRecord
    stats, schema = validated
    examples = A(str(ingested), lineage.DATASET)
    record(connection, "validate", "prodml-training", "run-1", {"examples": examples},
           {"statistics": A(str(stats), lineage.STATISTICS), "schema": A(str(schema), lineage.SCHEMA)})
    record(connection, "transform", "prodml-training", "run-1",
           {"examples": examples, "schema": A(str(schema), lineage.SCHEMA)},
           {"transform_graph": A(str(transformed[0]), lineage.TRANSFORM_GRAPH),
            "transformed_examples": A(str(transformed[1]), lineage.DATASET)})
    record(connection, "train", "prodml-training", "run-1",
           {"transform_graph": A(str(transformed[0]), lineage.TRANSFORM_GRAPH),
            "transformed_examples": A(str(transformed[1]), lineage.DATASET)}, {"model": A(str(trained), lineage.MODEL)})
    record(connection, "evaluate", "prodml-training", "run-1",
           {"model": A(str(trained), lineage.MODEL), "examples": examples},
           {"evaluation": A(str(evaluation), lineage.EVALUATION)})
    record(connection, "push", "prodml-training", "run-1",
           {"model": A(str(trained), lineage.MODEL), "evaluation": A(str(evaluation), lineage.EVALUATION)},
           {"pushed_model": A(version_uri, lineage.MODEL, {"model_name": MODEL, "version": version})})
    return {"root": root, "registry": str(registry_root), "connection": connection, "version_uri": version_uri,
            "evaluation": artifacts.Evaluation.read(str(evaluation)), "stats": stats, "schema": schema}


@pytest.fixture(scope="module")
def traffic(trained, served):
    """Request logs of the taxi rows: unshifted and fare-shifted, each with its predictions."""
    import tensorflow as tf

    features = artifacts.ModelInfo.read(str(trained)).raw_features
    loaded = tf.saved_model.load(str(trained))
    signature = loaded.signatures[keys.RAW_SIGNATURE]
    rows = _cells()
    plain = _features(rows, features)
    shifted = _features(rows, features, FARE_SHIFT)
    out = {"features": features, "rows": rows, "plain": plain, "shifted": shifted,
           "plain_predictions": _predict(signature, features, plain),
           "shifted_predictions": _predict(signature, features, shifted)}
    folder = served["root"] / "traffic"
    folder.mkdir()
    out["plain_log"] = folder / "plain.jsonl"
    out["plain_log"].write_text("\n".join(_log_lines(plain, out["plain_predictions"])) + "\n")
    # The shifted log: rotated once (older half in .1), two malformed lines, and rows of v2 and of another model.
    lines = _log_lines(shifted, out["shifted_predictions"])
    half = len(lines) // 2
    shifted_dir = folder / "shifted"
    shifted_dir.mkdir()
    (shifted_dir / "requests.log.1").write_text("\n".join(lines[:half]) + "\n")
    others = _log_lines(shifted[:7], out["shifted_predictions"][:7], version=2) + _log_lines(
        shifted[:4], out["shifted_predictions"][:4], model_name="fraud")
    (shifted_dir / "requests.log").write_text("\n".join(lines[half:half + 5] + ['{"timestamp": "2026-12-01T1', "oops"]
                                                        + lines[half + 5:] + others) + "\n")
    out["shifted_log"] = shifted_dir / "requests.log"
    out["malformed_line_numbers"] = (6, 7)
    # Labels for 60% of the shifted rows, by the pass-through trip id.
    labels = folder / "labels.csv"
    labelled = [i for i in range(len(rows)) if (i * 7919) % 100 < LABELLED_SHARE * 100]
    with open(labels, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trip_id", LABEL])
        for i in labelled:
            writer.writerow([f"t{i}", rows[i][LABEL]])
    out["labels"], out["labelled"] = labels, labelled
    business = folder / "business.py"
    business.write_text("import numpy as np\n\n\ndef business_metrics(features, predictions, labels):\n"
                        "    at_stake = float(np.nansum(features['fare'].to_numpy(dtype=float) * predictions))\n"
                        "    return {'fare_at_stake': at_stake, 'rows': len(predictions)}\n")
    out["business"] = business
    return out


@pytest.fixture(scope="module")
def shifted_run(served, traffic, tmp_path_factory):
    out = tmp_path_factory.mktemp("shifted_run") / "monitoring"
    result = run_monitor(str(traffic["shifted_log"]), served["registry"], MODEL, str(out),
                         metadata_connection=served["connection"], labels_uri=str(traffic["labels"]),
                         join_key="trip_id", business_module=str(traffic["business"]), run_id="monitor-run-1")
    return result, out


def _training_stats(served):
    import tensorflow_data_validation as tfdv

    return tfdv.load_stats_binary(str(served["stats"] / "Split-train" / keys.STATS_FILE))


def _training_range(served, name):
    feature = next(f for f in _training_stats(served).datasets[0].features if f.path.step[0] == name)
    return feature.num_stats.min, feature.num_stats.max


def _clipped(served, records, features):
    """The records as the monitor's drift statistics see them: numeric values clipped to the training range."""
    ranges = {name: _training_range(served, name) for name, kind in features.items() if kind != keys.BYTES}
    return [{name: min(max(v, ranges[name][0]), ranges[name][1]) if name in ranges and v is not None else v
             for name, v in r.items()} for r in records]


def _tfdv_drift(served, records, features, path):
    """TFDV's own numbers: generate_statistics_from_csv, then validate_statistics with every comparator at 0.

    The monitor clips served numeric values to the training range before its statistics (beyond-range
    values are counted by skew), so TFDV gets the same clipped rows.
    """
    import tensorflow_data_validation as tfdv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(features))
        for r in _clipped(served, records, features):
            writer.writerow(["" if r[n] is None else r[n] for n in features])
    serving = tfdv.generate_statistics_from_csv(str(path))
    training = _training_stats(served)
    schema = tfdv.load_schema_text(str(served["schema"] / keys.SCHEMA_FILE))
    for name, kind in features.items():
        feature = tfdv.get_feature(schema, name)
        if kind == keys.BYTES:
            feature.drift_comparator.infinity_norm.threshold = 0.0
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = 0.0
    anomalies = tfdv.validate_statistics(serving, schema, previous_statistics=training)
    return {info.path.step[0]: info.drift_measurements[0].value for info in anomalies.drift_skew_info}


def test_shifted_feature_drifts_and_the_numbers_are_tfdvs(served, traffic, shifted_run, tmp_path):
    result, out = shifted_run
    assert result["rows"] == len(traffic["rows"])
    assert "fare" in result["drifted_features"]
    assert result["drift"]["fare"]["js"] > 0.1 and result["drift"]["fare"]["psi"] > 0.2
    for unshifted in ("trip_start_day", "trip_start_hour", "payment_type", "company"):
        assert unshifted not in result["drifted_features"], result["drift"][unshifted]
    # Every raw feature has its score, by its kind; the numbers are TFDV's own.
    expected = _tfdv_drift(served, traffic["shifted"], traffic["features"], tmp_path / "served.csv")
    for name, kind in traffic["features"].items():
        measure = "linf" if kind == keys.BYTES else "js"
        assert result["drift"][name][measure] == pytest.approx(expected[name], abs=1e-6), name
    on_disk = artifacts.Monitoring.read(str(out))
    assert on_disk.drift == result["drift"] and on_disk.retrain == result["retrain"]


def test_a_few_served_outliers_do_not_make_an_undrifted_feature_drift(served, traffic, tmp_path):
    """Rows of the training distribution plus 5 values at 10x the training max (as eval-split rows can be)."""
    from prodml.components.monitor import drift, skew
    from prodml.components.monitor import serving_stats as ss

    features = traffic["features"]
    outliers = {"trip_seconds": int(10 * _training_range(served, "trip_seconds")[1]),
                "fare": 10 * _training_range(served, "fare")[1]}
    assert features["trip_seconds"] == keys.INT and features["fare"] == keys.FLOAT
    records = [dict(r, **outliers) if i % 600 == 7 else r for i, r in enumerate(traffic["plain"])]
    log = tmp_path / "outliers.jsonl"
    log.write_text("\n".join(_log_lines(records, traffic["plain_predictions"])) + "\n")
    result = run_monitor(str(log), served["registry"], MODEL, str(tmp_path / "m"),
                         metadata_connection=served["connection"])
    assert result["drifted_features"] == [] and result["retrain"] is False, result["reasons"]
    for name in outliers:
        assert result["skew"]["features"][name]["above_training_max"] == 5
        assert result["drift"][name]["js"] < 0.05 and result["drift"][name]["psi"] < 0.1, result["drift"][name]
    # The same rows unclipped: TFDV's comparator on its equal-width histograms sees these outliers as drift.
    import pyarrow as pa

    from prodml.components.common.tfdv_accumulator import StatsAccumulator, to_record_batch

    stats = StatsAccumulator()
    stats.add(to_record_batch({"trip_seconds": pa.array([r["trip_seconds"] for r in records], pa.int64())}))
    schema = _schema(served)
    unclipped = drift.tfdv_drift(_training_stats(served), stats.result(), schema, {"trip_seconds": keys.INT})
    assert unclipped["trip_seconds"] > 0.1
    # A schema's numeric domain is still checked against the values as served, not as clipped.
    low, high = _training_range(served, "trip_seconds")
    counter, clipped = ss.RangeCounter(low, high), StatsAccumulator()
    clipped.add(to_record_batch({"trip_seconds": counter.clip(
        pa.array([r["trip_seconds"] for r in records], pa.int64()))}))
    bounded = _schema(served)
    next(f for f in bounded.feature if f.name == "trip_seconds").int_domain.max = int(high)
    clipped_stats = clipped.result()  # once: it finalizes TFDV's sketches
    assert "trip_seconds" not in skew.schema_anomalies(clipped_stats, bounded, LABEL)
    restored = ss.with_served_range(clipped_stats, {"trip_seconds": counter})
    assert "trip_seconds" in skew.schema_anomalies(restored, bounded, LABEL)


def _schema(served):
    import tensorflow_data_validation as tfdv

    return tfdv.load_schema_text(str(served["schema"] / keys.SCHEMA_FILE))


@pytest.fixture(scope="module")
def plain_run(served, traffic, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain_run") / "monitoring"
    return run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(out),
                       metadata_connection=served["connection"])


def test_unshifted_traffic_does_not_drift_and_streams_in_small_chunks(served, traffic, plain_run, tmp_path):
    whole = plain_run
    chunked = run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(tmp_path / "chunked"),
                          metadata_connection=served["connection"], chunk_rows=700)
    assert whole["rows"] == chunked["rows"] == len(traffic["rows"])
    assert whole["drifted_features"] == [] and whole["retrain"] is False
    assert "fare" not in chunked["drifted_features"]
    # Same rows in 5 chunks: TFDV's sketches merge to (nearly) the same numbers.
    for name, scores in whole["drift"].items():
        for measure, value in scores.items():
            if value is not None:
                assert chunked["drift"][name][measure] == pytest.approx(value, abs=0.02)


def test_live_quality_with_labels_against_the_evaluation(traffic, served, shifted_run):
    from sklearn import metrics as skm

    result, _ = shifted_run
    labelled = traffic["labelled"]
    assert result["label_match_rate"] == pytest.approx(len(labelled) / len(traffic["rows"]))
    assert result["labelled_rows"] == len(labelled)
    y = np.array([int(traffic["rows"][i][LABEL]) for i in labelled])
    p = traffic["shifted_predictions"][labelled]
    assert result["quality"]["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
    assert result["quality"]["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
    assert result["evaluation"] == served["evaluation"].metrics
    assert result["quality_over_time"]["metric"] == "auc" and len(result["quality_over_time"]["x"]) >= 2


def test_decision_reasons_name_the_drift_and_operational_figures(traffic, shifted_run):
    result, out = shifted_run
    assert result["retrain"] is True
    assert any("fare" in reason and "drifted" in reason for reason in result["reasons"])
    op = result["operational"]
    assert op["other_versions"] == {"taxi v2": 7, "fraud v1": 4}
    assert any("taxi v2 (7 rows)" in r and "fraud v1 (4 rows)" in r for r in result["reasons"])
    assert op["malformed_lines"] == 2
    first, second = traffic["malformed_line_numbers"]
    assert f"requests.log line {first}" in op["malformed_examples"][0]
    assert f"requests.log line {second}" in op["malformed_examples"][1]
    assert sum(op["rows_per_hour"].values()) == result["rows"] and len(op["rows_per_hour"]) == 3
    # The business module was called chunk by chunk; its sums cover every row.
    expected = sum(r["fare"] * p for r, p in zip(traffic["shifted"], traffic["shifted_predictions"])
                   if r["fare"] is not None)
    assert result["business"]["rows"] == result["rows"]
    assert result["business"]["fare_at_stake"] == pytest.approx(expected, rel=1e-6)  # fares as float32, as trained
    summary = (out / keys.MONITORING_SUMMARY_MD).read_text()
    assert "**Retrain: yes**" in summary and "| fare |" in summary
    html = (out / keys.MONITORING_REPORT_HTML).read_text()
    assert 'data-feature="fare"' in html and "<svg" in html and "http://" not in html.split("<body", 1)[1]


def test_the_run_is_recorded_in_ml_metadata_linked_to_the_version(served, shifted_run):
    result, out = shifted_run
    steps = lineage.run_steps(served["connection"], "monitor-run-1")
    entry = steps["monitor"]
    pushed = lineage.find_artifacts(served["connection"], served["version_uri"], lineage.MODEL)
    assert entry["inputs"]["model"]["id"] == pushed[-1].id  # the artifact push recorded, not a new one
    assert entry["outputs"]["monitoring"]["uri"] == str(out)
    assert entry["outputs"]["monitoring"]["properties"]["retrain"] is True
    assert entry["inputs"]["statistics"]["uri"] == str(served["stats"])


def test_empty_window_says_so_and_does_not_retrain(served, traffic, tmp_path):
    result = run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(tmp_path / "m"),
                         metadata_connection=served["connection"], window_start="2027-01-01T00:00:00Z")
    assert result["rows"] == 0 and result["retrain"] is False
    assert "empty" in result["reasons"][0]
    assert result["operational"]["outside_window"] == len(traffic["rows"])
    assert artifacts.Monitoring.read(str(tmp_path / "m")).rows == 0


def test_window_keeps_only_its_rows(served, traffic, tmp_path):
    result = run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(tmp_path / "m"),
                         metadata_connection=served["connection"], window_start="2026-12-01T11:00:00+00:00",
                         window_end="2026-12-01T12:00:00+00:00")
    assert result["rows"] == 1200  # one row every 3 s
    assert list(result["operational"]["rows_per_hour"]) == ["2026-12-01T11"]


def test_traffic_of_another_version_only_is_refused_by_name(served, traffic, tmp_path):
    log = tmp_path / "v2.jsonl"
    log.write_text("\n".join(_log_lines(traffic["plain"][:30], traffic["plain_predictions"][:30], version=2)) + "\n")
    with pytest.raises(InputDataError, match=r"no row of taxi v1, only taxi v2 \(30 rows\)"):
        run_monitor(str(log), served["registry"], MODEL, str(tmp_path / "m"), metadata_connection=served["connection"])


def test_labels_matching_no_key_are_refused_with_the_match_rate(served, traffic, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("trip_id,big_tipper\n" + "".join(f"x{i},1\n" for i in range(50)))
    with pytest.raises(InputDataError, match=r"Only 0 of 3000 traffic rows \(0\.0%\) found a label") as error:
        run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(tmp_path / "m"),
                    metadata_connection=served["connection"], labels_uri=str(labels), join_key="trip_id")
    assert "'x0'" in str(error.value) and "'t0'" in str(error.value)


def test_a_raising_business_module_is_named_with_its_line(served, traffic, tmp_path):
    module = tmp_path / "revenue.py"
    module.write_text("def business_metrics(features, predictions, labels):\n    total = 0\n"
                      "    return {'x': total / 0}\n")
    with pytest.raises(ConfigError, match=r"revenue\.py raised ZeroDivisionError.*at line 3 of revenue\.py"):
        run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(tmp_path / "m"),
                    metadata_connection=served["connection"], business_module=str(module))


def test_without_lineage_it_says_so_and_takes_explicit_folders(served, traffic, tmp_path):
    with pytest.raises(ConfigError, match="no ML Metadata connection was given"):
        run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(tmp_path / "a"))
    other_store = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    with pytest.raises(Exception, match="has no record in ML Metadata"):
        run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(tmp_path / "b"),
                    metadata_connection=other_store)
    result = run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(tmp_path / "c"),
                         statistics_uri=str(served["stats"]), schema_uri=str(served["schema"]))
    assert result["rows"] == 3000 and result["sources"]["found_by"] == "explicit folders"
    assert not math.isnan(result["drift"]["fare"]["js"])


def test_report_renders_in_a_browser_with_the_network_off(shifted_run):
    import re

    import browser_support

    from prodml.components.common import svg_charts

    result, out = shifted_run
    page = browser_support.render_page(str(out / keys.MONITORING_REPORT_HTML))
    assert page.requests == [], page.requests  # nothing fetched: self-contained
    dom = page.dom
    # A chart of served vs training for each drifted feature, and one for the predictions.
    charted = set(re.findall(r'<figure class="feature" data-feature="([^"]+)"', dom))
    assert charted == set(result["drifted_features"]) | {"prediction"}
    # Every feature's drift scores in the table, the drifted ones highlighted.
    for name in result["drift"]:
        assert re.search(rf"<tr[^>]*><td>{re.escape(name)}</td>", dom), name
    assert re.search(r'<tr class="highlight"><td>fare</td>', dom)
    assert "Live quality" in dom and "Live auc over time" in dom
    pixels = browser_support.png_pixels(page.screenshot)
    assert browser_support.non_white_fraction(pixels) > 0.03
    for colour in svg_charts.PALETTE[:2]:  # served and training series are both drawn
        assert browser_support.has_colour(pixels, colour), colour


def test_cloudevents_and_batch_outputs_read_like_the_request_log(served, traffic, plain_run, tmp_path):
    import pandas as pd

    # Half the events as prodml's server sends them (each instance a request-log record), half as
    # KServe's logger does (raw instances; name, version and time from the events).
    records = [json.loads(line) for line in _log_lines(traffic["plain"], traffic["plain_predictions"])]
    events = []
    for k in range(0, len(traffic["plain"]), 100):
        rows, predictions = traffic["plain"][k:k + 100], traffic["plain_predictions"][k:k + 100]
        stamp = (START + datetime.timedelta(seconds=3 * k)).isoformat()
        instances = records[k:k + 100] if k % 200 == 0 else rows
        events.append({"specversion": "1.0", "id": f"ev{k}", "type": "org.kubeflow.serving.inference.request",
                       "source": "test", "time": stamp, "data": {"instances": instances}})
        events.append({"specversion": "1.0", "id": f"ev{k}", "type": "org.kubeflow.serving.inference.response",
                       "source": "test", "time": stamp,
                       "data": {"predictions": [float(p) for p in predictions], "model_name": MODEL,
                                "model_version": "1", "request_ids": [f"r{k + i}" for i in range(len(rows))]}})
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    from_events = run_monitor(str(tmp_path / "events.jsonl"), served["registry"], MODEL, str(tmp_path / "e"),
                              metadata_connection=served["connection"])
    frame = pd.DataFrame(traffic["plain"])
    frame["probability_1"] = traffic["plain_predictions"]
    frame["predicted_big_tipper"] = (traffic["plain_predictions"] >= 0.5).astype(int).astype(str)
    frame["model_version"] = 1
    frame["request_id"] = [f"batch-{i}" for i in range(len(frame))]
    batch = tmp_path / "scored"
    batch.mkdir()
    frame.drop(columns=["company"]).to_parquet(batch / "part-00000.parquet")
    (batch / "_SUCCESS").write_text("{}")
    from_batch = run_monitor(str(batch), served["registry"], MODEL, str(tmp_path / "b"),
                             metadata_connection=served["connection"], window_start="2026-12-01T00:00:00Z")
    frame.to_csv(tmp_path / "scored.csv", index=False)
    from_csv = run_monitor(str(tmp_path / "scored.csv"), served["registry"], MODEL, str(tmp_path / "c"),
                           metadata_connection=served["connection"])
    for result in (from_events, from_batch, from_csv):
        assert result["rows"] == plain_run["rows"]
        assert result["drift"]["fare"]["js"] == pytest.approx(plain_run["drift"]["fare"]["js"], abs=1e-9)
        assert result["prediction_drift"]["js"] == pytest.approx(plain_run["prediction_drift"]["js"], abs=1e-9)
    assert from_events["operational"]["rows_per_hour"] == plain_run["operational"]["rows_per_hour"]
    assert from_batch["operational"]["features_absent"] == ["company"]
    assert any("do not carry company" in r for r in from_batch["reasons"])
    assert any("window was not applied" in r for r in from_batch["reasons"])


def test_skew_is_named_and_only_features_that_matter_trigger_retraining(served, traffic, tmp_path):
    records = [dict(r, trip_miles=None) if i % 2 else r for i, r in enumerate(traffic["shifted"])]
    log = tmp_path / "skewed.jsonl"
    log.write_text("\n".join(_log_lines(records, traffic["shifted_predictions"])) + "\n")
    result = run_monitor(str(log), served["registry"], MODEL, str(tmp_path / "m"),
                         metadata_connection=served["connection"], thresholds={"features": ["trip_miles"]})
    assert "fare" in result["drifted_features"] and result["retrain"] is False
    assert any("fare" in r and "not among the features that matter" in r for r in result["reasons"])
    skewed = result["skew"]["features"]["trip_miles"]
    assert skewed["missing_serving"] == pytest.approx(0.5, abs=0.01) and skewed["missing_training"] < 0.01
    assert any(r.startswith("skew: the missing share changed") and "trip_miles (+5" in r for r in result["reasons"])
    assert skewed["out_of_range_share"] == 0 and result["skew"]["features"]["fare"]["out_of_range_share"] > 0.05
    with pytest.raises(ConfigError, match="Unknown monitoring threshold 'jsd'"):
        run_monitor(str(log), served["registry"], MODEL, str(tmp_path / "n"), thresholds={"jsd": 0.2})


def test_the_component_returns_the_decision_logs_every_score_and_records_lineage(served, traffic, tmp_path):
    """The KFP component's function in this process (what KFP's executor calls), with real KFP artifacts."""
    from kfp.dsl import HTML, Artifact, Markdown, Metrics

    from prodml.components.monitor.component import monitor

    outputs = {name: kind(name=name, uri=str(tmp_path / name), metadata={}) for name, kind in (
        ("monitoring", Artifact), ("metrics", Metrics), ("monitoring_view", HTML), ("summary", Markdown))}
    retrain = monitor.python_func(traffic_uri=str(traffic["shifted_log"]), registry_uri=served["registry"],
                                  model_name=MODEL, metadata_connection=served["connection"], run_id="kfp-monitor-1",
                                  **outputs)
    assert retrain is True
    logged = outputs["metrics"].metadata
    assert logged["fare.js"] > 0.1 and logged["rows"] == len(traffic["rows"]) and "company.linf" in logged
    on_disk = artifacts.Monitoring.read(outputs["monitoring"].path)
    assert on_disk.drifted_features == outputs["monitoring"].metadata["drifted_features"]
    assert "<svg" in pathlib.Path(outputs["monitoring_view"].path).read_text()
    assert "**Retrain: yes**" in pathlib.Path(outputs["summary"].path).read_text()
    entry = lineage.run_steps(served["connection"], "kfp-monitor-1")["monitor"]
    pushed = lineage.find_artifacts(served["connection"], served["version_uri"], lineage.MODEL)
    assert entry["inputs"]["model"]["id"] == pushed[-1].id
    assert {"monitoring", "metrics", "monitoring_view", "summary"} <= set(entry["outputs"])


def test_labels_join_on_request_id_and_row(served, traffic, tmp_path):
    from sklearn import metrics as skm

    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["request_id", "row", LABEL])
        for i, row in enumerate(traffic["rows"]):
            writer.writerow([f"req-{i // 10}", i % 10, row[LABEL]])
    result = run_monitor(str(traffic["plain_log"]), served["registry"], MODEL, str(tmp_path / "m"),
                         metadata_connection=served["connection"], labels_uri=str(labels))  # join key by default
    assert result["label_match_rate"] == 1.0 and result["labels"]["join_key"] == "request_id"
    y = np.array([int(r[LABEL]) for r in traffic["rows"]])
    assert result["quality"]["auc"] == pytest.approx(skm.roc_auc_score(y, traffic["plain_predictions"]), abs=1e-9)
