"""Monitor: what the served model sees, compared with what it was trained and evaluated on.

One pass over a window of served traffic (``traffic.py``: request logs, CloudEvents files or batch
predictions, streamed in Arrow chunks) feeds TFDV's statistics generators
(``common/tfdv_accumulator.py``), the PSI and range counters (``serving_stats.py``), the label join
(``quality.py``) and the user's business metrics (``business.py``). Then, against the served
version's training statistics, schema and evaluation (found through the registry and ML Metadata,
``reference.py``):

- drift of every raw feature (``drift.py``: TFDV's Jensen-Shannon / L-infinity, and PSI);
- training-serving skew (``skew.py``: missing shares, out-of-range values, new categories, TFDV's
  schema anomalies);
- prediction drift (``predictions.py``: served scores against the eval split's);
- live quality on the labelled rows (evaluate's metrics), against the evaluation;
- operational figures (rows per hour, rows with a missing feature, versions seen);

and the decision (``decision.py``). Outputs, in ``monitoring_dir``, each written whole:
``summary.md``, ``report.html`` and last ``monitoring.json`` (``artifacts.Monitoring``).

Records of another model or another version of this model are left out of every figure, counted
and named (``operational.other_versions``); a window holding only other versions is an error
naming them. An empty window is not an error: the result says so and does not retrain.
"""

import collections
import concurrent.futures
import datetime
import uuid
from typing import Any, Dict, Optional, Union

import numpy as np

from prodml.components.common import artifacts, dataio, defaults, keys, lineage
from prodml.components.common import metrics as m
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.common.logs import get_logger, step
from prodml.components.common.tfdv_accumulator import StatsAccumulator, to_record_batch
from prodml.components.monitor import business as business_module_
from prodml.components.monitor import decision, drift, predictions, quality, reference, report, skew, traffic
from prodml.components.monitor import serving_stats as ss

log = get_logger(__name__)


def run_monitor(traffic_uri: str, registry_uri: str, model_name: str, monitoring_dir: str,
                version: Union[str, int] = "latest", metadata_connection: str = "", labels_uri: str = "",
                join_key: str = "", business_module: str = "", window_start: str = "", window_end: str = "",
                thresholds: Optional[Dict[str, Any]] = None, statistics_uri: str = "", schema_uri: str = "",
                evaluation_uri: str = "", run_id: str = "", record_lineage: bool = True,
                report_path: str = "", summary_path: str = "",
                chunk_rows: int = defaults.MONITOR_CHUNK_ROWS) -> Dict[str, Any]:
    """Monitors one window of served traffic of ``model_name`` (``version``, default the latest pushed).

    Args:
        traffic_uri: request-log file (rotated files read too), folder, glob, CloudEvents file, or
            batch-prediction output (see ``traffic.py``).
        registry_uri: the registry the served version was pushed to.
        model_name: the served model.
        monitoring_dir: where monitoring.json, report.html and summary.md go.
        version: "latest" or a version number.
        metadata_connection: ML Metadata, where the version's lineage (training statistics, schema,
            evaluation) is read and this run recorded.
        labels_uri: CSV/Parquet labels with ``join_key`` and the label column (optional).
        join_key: the column joining labels to traffic: a pass-through key or request_id (the
            default when the labels have a request_id column).
        business_module: Python file with ``business_metrics(features, predictions, labels) -> dict``.
        window_start, window_end: ISO times (a time without offset is UTC); rows in [start, end).
        thresholds: overrides of ``decision.BOUNDS`` by name, and "features" (those that matter).
        statistics_uri, schema_uri, evaluation_uri: the version's artifacts, when not from lineage.
        run_id: names this run in ML Metadata (a fresh one by default).
        record_lineage: record the execution here (the KFP component records through its wrapper).
        report_path, summary_path: further copies of report.html and summary.md (the component's
            HTML and Markdown outputs).
        chunk_rows: rows per streamed chunk.

    Returns:
        The result dict: retrain, reasons, rows, drift, drifted_features, quality, evaluation,
        label_match_rate, and the other figures of monitoring.json (see ``artifacts.Monitoring``).
    """
    limits = decision.bounds(thresholds)
    start, end = parse_time(window_start, "window_start"), parse_time(window_end, "window_end")
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"window_end {window_end} is not after window_start {window_start}: give a window "
                          "[start, end) of positive length.")
    if not monitoring_dir:
        raise ConfigError("monitoring_dir is empty: give the folder where the monitoring report goes.")
    number = reference.resolve_version(registry_uri, model_name, version)
    ref = reference.find(registry_uri, model_name, number, metadata_connection, statistics_uri, schema_uri,
                         evaluation_uri)
    business = business_module_.BusinessMetrics(business_module) if business_module else None
    labels = quality.load(labels_uri, join_key, ref.model.label) if labels_uri else None
    files = traffic.list_files(traffic_uri)
    with step(log, f"monitoring {model_name} v{number} on {len(files)} traffic file(s)"):
        scan = _scan(files, ref, number, start, end, limits, labels, business, chunk_rows)
    result = _assess(ref, scan, labels, limits, business, start, end)
    _write(monitoring_dir, result, ref, scan, report_path, summary_path)
    run_id = run_id or f"monitor-{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    result["run_id"] = run_id
    if record_lineage and metadata_connection:
        inputs, outputs, parameters = lineage_records(result, monitoring_dir, traffic_uri, labels_uri)
        result["execution_id"] = lineage.record_execution(metadata_connection, "monitor",
                                                          defaults.MONITOR_PIPELINE_NAME, run_id, inputs, outputs,
                                                          parameters)
    log.info("%s v%d: %d rows, retrain %s", model_name, number, result["rows"], result["retrain"])
    return result


def lineage_records(result: Dict[str, Any], monitoring_dir: str, traffic_uri: str, labels_uri: str):
    """(inputs, outputs, parameters) of a run for ``lineage.record_execution`` / the component wrapper."""
    sources = result["sources"]
    inputs = {keys.MODEL_KEY: lineage.ArtifactRecord(sources["version_uri"], lineage.MODEL),
              "traffic": lineage.ArtifactRecord(traffic_uri, lineage.DATASET)}
    if sources["statistics_uri"]:
        inputs[keys.STATISTICS_KEY] = lineage.ArtifactRecord(sources["statistics_uri"], lineage.STATISTICS)
    if sources["schema_uri"]:
        inputs[keys.SCHEMA_KEY] = lineage.ArtifactRecord(sources["schema_uri"], lineage.SCHEMA)
    if sources["evaluation_uri"]:
        inputs[keys.EVALUATION_KEY] = lineage.ArtifactRecord(sources["evaluation_uri"], lineage.EVALUATION)
    if labels_uri:
        inputs["labels"] = lineage.ArtifactRecord(labels_uri, lineage.DATASET)
    outputs = {keys.MONITORING_KEY: lineage.ArtifactRecord(
        monitoring_dir, lineage.MONITORING,
        {"model_name": result["model_name"], "version": result["version"], "rows": result["rows"],
         "retrain": result["retrain"], "drifted_features": result["drifted_features"]})}
    parameters = {"model_name": result["model_name"], "version": result["version"], "rows": result["rows"],
                  "retrain": result["retrain"]}
    return inputs, outputs, parameters


def flat_metrics(result: Dict[str, Any]) -> Dict[str, float]:
    """The run's numbers for system.Metrics: every drift score as ``<feature>.<js|linf|psi>``, and the rest."""
    flat: Dict[str, float] = {"rows": result["rows"], "retrain": float(result["retrain"]),
                              "drifted_features": len(result["drifted_features"])}
    for feature, scores in sorted(result["drift"].items()):
        for measure, value in scores.items():
            if value is not None:
                flat[f"{feature}.{measure}"] = float(value)
    for measure in ("js", "linf", "psi"):
        if result["prediction_drift"].get(measure) is not None:
            flat[f"prediction.{measure}"] = float(result["prediction_drift"][measure])
    if result["label_match_rate"] is not None:
        flat["label_match_rate"] = float(result["label_match_rate"])
    flat.update({f"live_{name}": float(value) for name, value in result["quality"].items()})
    flat.update({f"business_{name}": float(value) for name, value in result["business"].items()})
    return flat


class _Scan:
    """What one pass over the traffic accumulated."""

    def __init__(self):
        self.counts = traffic.Counts()
        self.rows = 0
        self.rows_missing_a_feature = 0
        self.other_versions: collections.Counter = collections.Counter()
        self.outside_window = 0
        self.no_timestamps = False
        self.per_hour: collections.Counter = collections.Counter()
        self.stats: Optional[StatsAccumulator] = None
        self.prediction_stats: Optional[StatsAccumulator] = None
        self.ranges: Dict[str, ss.RangeCounter] = {}
        self.joiner: Optional[quality.Joiner] = None
        self.eval_predictions: Optional[np.ndarray] = None
        self.prediction_note = ""


def _scan(files, ref: reference.Reference, version: int, start, end, limits, labels, business,
          chunk_rows: int) -> _Scan:
    scan = _Scan()
    scan.stats, scan.prediction_stats = StatsAccumulator(), StatsAccumulator()
    trained = ss.feature_map(ref.training_stats)
    for name, kind in ref.model.raw_features.items():
        feature = trained.get(name)
        if feature is not None and kind != keys.BYTES and feature.HasField("num_stats"):
            scan.ranges[name] = ss.RangeCounter(feature.num_stats.min, feature.num_stats.max)
    # The reference scores need the SavedModel loaded and run: done beside the scan, which does not need them.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="eval-predictions") as background:
        reference_scores = background.submit(_eval_predictions, ref)
        _stream(files, ref, version, start, end, labels, business, chunk_rows, scan)
        scan.eval_predictions, scan.prediction_note = reference_scores.result()
    return scan


def _stream(files, ref: reference.Reference, version: int, start, end, labels, business, chunk_rows: int,
            scan: _Scan) -> None:
    problem_type = ref.model.label.problem_type
    scan.joiner = quality.Joiner(labels) if labels is not None else None
    keep = defaults.MONITOR_MALFORMED_NAMED
    for chunk in traffic.read(files, ref.model, chunk_rows, scan.counts, keep,
                              labels.join_key if labels is not None else ""):
        chunk = _select(chunk, ref.model_name, version, start, end, scan)
        if not chunk.rows:
            continue
        scan.rows += chunk.rows
        missing_any = np.zeros(chunk.rows, bool)
        for values in chunk.features.values():
            missing_any |= values.is_null().to_numpy(zero_copy_only=False)
        scan.rows_missing_a_feature += int(missing_any.sum())
        if chunk.times is not None:
            hours = chunk.times.astype("datetime64[h]")
            for hour, count in zip(*np.unique(hours[~np.isnat(hours)], return_counts=True)):
                scan.per_hour[str(hour)] += int(count)
        # Numeric features reach the drift statistics clipped to the training range (RangeCounter.clip);
        # the business module still gets the served values.
        clipped = dict(chunk.features)
        for name, counter in scan.ranges.items():
            clipped[name] = counter.clip(chunk.features[name])
        scan.stats.add(to_record_batch(clipped))
        column = predictions.prediction_column(chunk.predictions, problem_type)
        scan.prediction_stats.add(to_record_batch({predictions.PREDICTION: column}))
        joined = scan.joiner.add(chunk) if scan.joiner is not None else np.full(chunk.rows, np.nan)
        if business is not None:
            business.add(_frame(chunk), chunk.predictions, joined)


def _select(chunk: traffic.Chunk, model_name: str, version: int, start, end, scan: _Scan) -> traffic.Chunk:
    """The chunk's rows of this model version inside the window; the rest counted."""
    names = chunk.model_names
    other_name = np.asarray((names != model_name) & (names != None), bool)  # noqa: E711 (elementwise)
    other = other_name | ((chunk.versions != version) & (chunk.versions >= 0))
    if other.any():
        for name, v in zip(names[other], chunk.versions[other]):
            scan.other_versions[f"{name or model_name} v{v}" if v >= 0 else f"{name} (no version)"] += 1
    keep = ~other
    if (start is not None or end is not None):
        inside = chunk.in_window(start, end)
        if inside is None:
            scan.no_timestamps = True
        else:
            scan.outside_window += int((keep & ~inside).sum())
            keep &= inside
    return chunk if keep.all() else chunk.take(keep)


def _frame(chunk: traffic.Chunk):
    import pandas as pd

    return pd.DataFrame({name: values.to_pandas() for name, values in chunk.features.items()})


def _eval_predictions(ref: reference.Reference):
    if ref.evaluation is None:
        return None, "no evaluation was found for this version, so prediction drift is not measured"
    try:
        values = predictions.eval_predictions(ref.version_uri, ref.evaluation.examples_uri)
    except (ConfigError, InputDataError) as e:
        return None, f"prediction drift not measured: {e}"
    if values is None:
        return None, (f"the eval split the evaluation scored ({ref.evaluation.examples_uri or 'not named'}) is "
                      "gone, so prediction drift is not measured")
    return values, ""


def _assess(ref: reference.Reference, scan: _Scan, labels, limits, business, start, end) -> Dict[str, Any]:
    features = ref.model.raw_features
    problem_type, key_metric = ref.model.label.problem_type, m.KEY_METRIC[ref.model.label.problem_type]
    evaluation = dict(ref.evaluation.metrics) if ref.evaluation is not None else {}
    if scan.rows == 0 and scan.other_versions:
        raise InputDataError(
            f"The traffic window holds no row of {ref.model_name} v{ref.version}, only "
            f"{_named(scan.other_versions)}: monitor the version that served it (version=...), or give the "
            "traffic of this version.")
    operational = {
        "rows": scan.rows, "rows_per_hour": dict(sorted(scan.per_hour.items())),
        "missing_row_share": scan.rows_missing_a_feature / scan.rows if scan.rows else 0.0,
        "malformed_lines": scan.counts.malformed, "malformed_examples": list(scan.counts.malformed_examples),
        "lines": scan.counts.lines, "other_rows": sum(scan.other_versions.values()),
        "other_versions": dict(scan.other_versions), "outside_window": scan.outside_window,
        "versions_seen": sorted({f"{ref.model_name} v{ref.version}"} if scan.rows else set())
        + sorted(scan.other_versions),
        "type_mismatches": dict(scan.counts.type_mismatches), "features_absent": list(scan.counts.features_absent),
        "unpaired_events": scan.counts.unpaired_events,
        "window": {"start": _iso(start), "end": _iso(end),
                   "applied": not scan.no_timestamps},
        "files": dict(scan.counts.formats)}
    result: Dict[str, Any] = {
        "model_name": ref.model_name, "version": ref.version, "rows": scan.rows, "retrain": False, "reasons": [],
        "drift": {}, "drifted_features": [], "quality": {}, "evaluation": evaluation, "label_match_rate": None,
        "labelled_rows": 0, "key_metric": key_metric, "skew": {"features": {}, "anomalies": {}},
        "prediction_drift": {"description": scan.prediction_note}, "operational": operational,
        "business": dict(business.totals) if business is not None else {}, "thresholds": limits,
        "sources": {"version_uri": ref.version_uri, "statistics_uri": ref.statistics_uri,
                    "schema_uri": ref.schema_uri, "evaluation_uri": ref.evaluation_uri, "found_by": ref.found_by}}
    if scan.joiner is not None:
        result["label_match_rate"] = scan.joiner.match_rate
        result["labelled_rows"] = scan.joiner.matched
        result["labels"] = {"rows": labels.rows, "duplicates": labels.duplicates, "unusable": labels.unusable,
                            "join_key": labels.join_key, "labels_matched": int(scan.joiner.matched_labels.sum())}
    if scan.rows == 0:
        result["reasons"] = decision.decide(0, None, None, None)["reasons"]
        result["serving_stats"] = None
        return result
    if scan.joiner is not None:
        quality.check_match_rate(scan.joiner, limits["min_label_match_rate"])
    serving = scan.stats.result("serving")
    result["serving_stats"] = serving
    result["drift"] = _drift_scores(ref, serving, scan)
    result["drifted_features"] = decision.drifted(result["drift"], limits)
    result["skew"] = {"features": skew.per_feature(ref.training_stats, serving, features, scan.ranges),
                      "anomalies": skew.schema_anomalies(ss.with_served_range(serving, scan.ranges), ref.schema,
                                                        ref.model.label.name)}
    result["prediction_drift"] = _prediction_drift(scan, problem_type)
    n_classes = len(ref.model.label.classes or [])
    if scan.joiner is not None and scan.joiner.matched:
        preds, values, times = scan.joiner.arrays()
        result["quality"] = quality.live_metrics(problem_type, preds, values, n_classes)
        over = quality.over_time(problem_type, preds, values, times, key_metric, n_classes)
        result["quality_over_time"] = {"metric": key_metric, **over}
    drift_check = decision.drift_check(result["drifted_features"], result["drift"], limits)
    quality_check = decision.quality_check(key_metric, result["quality"], evaluation, result["labelled_rows"], limits)
    enough = decision.enough_labels_check(scan.joiner is not None, result["labelled_rows"], limits)
    result.update(decision.decide(scan.rows, drift_check, quality_check, enough))
    result["reasons"] += list(_skew_notes(result["skew"], limits)) + list(_notes(scan))
    return result


def _skew_notes(skew_result: Dict[str, Any], limits: Dict[str, Any]):
    """Skew is reported, not a retraining trigger: it usually means a serving bug, which retraining would bake in."""
    moved = {name: e["missing_change"] for name, e in skew_result["features"].items()
             if e.get("missing_change") is not None and abs(e["missing_change"]) > limits["null_rate_change"]}
    if moved:
        yield ("skew: the missing share changed by more than " f"{limits['null_rate_change']:.0%} on "
               + ", ".join(f"{n} ({v:+.1%})" for n, v in sorted(moved.items())))
    if skew_result["anomalies"]:
        yield f"skew: TFDV schema anomalies on {', '.join(skew_result['anomalies'])} (see the report)"


def _drift_scores(ref: reference.Reference, serving, scan: _Scan) -> Dict[str, Dict[str, float]]:
    features = ref.model.raw_features
    measured = drift.tfdv_drift(ref.training_stats, serving, ref.schema, features)
    trained, served = ss.feature_map(ref.training_stats), ss.feature_map(serving)
    scores: Dict[str, Dict[str, float]] = {}
    for name, kind in features.items():
        entry: Dict[str, float] = {drift.comparator_kind(kind): measured.get(name)}
        edges = ss.psi_bins(trained.get(name)) if kind != keys.BYTES else None
        if edges is not None and name in served:
            entry[drift.PSI] = drift.psi(ss.histogram_counts(trained[name], edges),
                                         ss.histogram_counts(served[name], edges))
        elif kind == keys.BYTES and name in trained and name in served:
            entry[drift.PSI] = drift.categorical_psi(trained[name], served[name], drift.value_count(trained[name]),
                                                     drift.value_count(served[name]))
        else:
            entry[drift.PSI] = None
        scores[name] = entry
    return scores


def _prediction_drift(scan: _Scan, problem_type: str) -> Dict[str, Any]:
    if scan.eval_predictions is None:
        return {"description": scan.prediction_note}
    import tensorflow_data_validation as tfdv

    column = predictions.prediction_column(scan.eval_predictions, problem_type)
    accumulator = StatsAccumulator()
    accumulator.add(to_record_batch({predictions.PREDICTION: column}))
    evaluated = accumulator.result("evaluation")
    served = scan.prediction_stats.result("serving")
    kind = keys.BYTES if problem_type == keys.MULTICLASS else keys.FLOAT
    schema = tfdv.infer_schema(evaluated)
    score = drift.tfdv_drift(evaluated, served, schema, {predictions.PREDICTION: kind}).get(predictions.PREDICTION)
    measure = drift.comparator_kind(kind)
    result: Dict[str, Any] = {measure: score, "eval_rows": int(len(scan.eval_predictions))}
    e, s = ss.feature_map(evaluated).get(predictions.PREDICTION), ss.feature_map(served).get(predictions.PREDICTION)
    if e is not None and s is not None and problem_type == keys.MULTICLASS:
        result[drift.PSI] = drift.categorical_psi(e, s, drift.value_count(e), drift.value_count(s))
    elif e is not None and s is not None and ss.psi_bins(e) is not None:
        edges = ss.psi_bins(e)
        result[drift.PSI] = drift.psi(ss.histogram_counts(e, edges), ss.histogram_counts(s, edges))
    served_mean = _mean(served)
    result.update({"served_mean": served_mean, "eval_mean": _mean(evaluated)})
    result["description"] = (f"Served {'predicted classes' if problem_type == keys.MULTICLASS else 'scores'} "
                             f"against the evaluation's on {len(scan.eval_predictions)} eval rows.")
    result["serving_stats"] = served
    result["evaluation_stats"] = evaluated
    return result


def _mean(stats) -> Optional[float]:
    feature = ss.feature_map(stats).get(predictions.PREDICTION)
    return float(feature.num_stats.mean) if feature is not None and feature.HasField("num_stats") else None


def _notes(scan: _Scan):
    if scan.other_versions:
        yield f"left out {sum(scan.other_versions.values())} rows of {_named(scan.other_versions)}"
    if scan.counts.malformed:
        yield (f"skipped {scan.counts.malformed} malformed line(s), first: "
               f"{'; '.join(scan.counts.malformed_examples[:3])}")
    if scan.no_timestamps:
        yield "the time window was not applied to batch-prediction outputs, which have no timestamps"
    if scan.counts.features_absent:
        yield (f"the batch predictions do not carry {', '.join(scan.counts.features_absent)}: their drift is not "
               "measured (carry every feature with --id-columns to measure it)")


def _named(counter: collections.Counter) -> str:
    return ", ".join(f"{name} ({count} rows)" for name, count in counter.most_common(5)) + (
        f" and {len(counter) - 5} more" if len(counter) > 5 else "")


def _iso(moment: Optional[np.datetime64]) -> str:
    return "" if moment is None else np.datetime_as_string(moment, unit="s") + "Z"


def parse_time(text: str, what: str) -> Optional[np.datetime64]:
    """An ISO time as UTC datetime64[ns] (a time without offset is UTC); None for ""."""
    if not text:
        return None
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError as e:
        raise ConfigError(f"{what} '{text}' is not an ISO time such as 2026-12-01T16:00:00+00:00 ({e}).") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.to_datetime64(), "ns")


def _write(monitoring_dir: str, result: Dict[str, Any], ref: reference.Reference, scan: _Scan, report_path: str,
           summary_path: str) -> None:
    """summary.md, report.html, then monitoring.json (last: its presence means the run finished)."""
    serving = result.pop("serving_stats", None)
    pred = result["prediction_drift"]
    served_predictions, eval_stats = pred.pop("serving_stats", None), pred.pop("evaluation_stats", None)
    summary = report.render_markdown(result)
    page = report.render_html(result, ref.training_stats, serving,
                              {"serving": served_predictions, "evaluation": eval_stats}
                              if served_predictions is not None else None)
    dataio.makedirs(monitoring_dir)
    for path, text in ((dataio.join(monitoring_dir, keys.MONITORING_SUMMARY_MD), summary), (summary_path, summary),
                       (dataio.join(monitoring_dir, keys.MONITORING_REPORT_HTML), page), (report_path, page)):
        if path:
            dataio.write_text_atomic(path, text)
    known = {"model_name", "version", "rows", "retrain", "reasons", "drift", "drifted_features", "quality",
             "evaluation", "label_match_rate"}
    artifacts.Monitoring(model_name=result["model_name"], version=result["version"], rows=result["rows"],
                         retrain=result["retrain"], reasons=result["reasons"], drift=result["drift"],
                         drifted_features=result["drifted_features"], quality=result["quality"],
                         evaluation=result["evaluation"], label_match_rate=result["label_match_rate"],
                         extra=_jsonable({k: v for k, v in result.items() if k not in known})).write(monitoring_dir)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value
