"""Validate: TFDV statistics of every split, a schema, anomalies and drift, and their reports.

Everything is written before a blocking anomaly raises ``SchemaError``, so the user can open
the statistics, the anomalies and the HTML report to see what is wrong.
"""

from typing import Dict, List

from prodml.components.common import artifacts, dataio, html_report, keys, schemas
from prodml.components.common.errors import ConfigError, SchemaError
from prodml.components.common.logs import get_logger, step
from prodml.components.validate import report, schema_rules, statistics

log = get_logger(__name__)


def run_validate(examples_dir: str, statistics_dir: str, schema_dir: str, anomalies_md_path: str,
                 statistics_html_path: str, user_schema_uri: str = "", baseline_statistics_dir: str = "",
                 fail_on_drift: bool = False, drift_threshold: float = 0.1) -> Dict[str, object]:
    """Computes statistics, infers or loads the schema, and checks every split against it.

    Args:
        examples_dir: the examples artifact (``Split-<name>/data-*.tfrecord.gz``).
        statistics_dir: output statistics artifact (``Split-<name>/FeatureStats.pb``, anomalies.pbtxt).
        schema_dir: output schema artifact (``schema.pbtxt``).
        anomalies_md_path: output Markdown report of the anomalies.
        statistics_html_path: output HTML view of the train and eval statistics (self-contained:
            tables and inline SVG charts, no script or CDN).
        user_schema_uri: a schema .pbtxt file or schema folder to use instead of inferring one
            (``schema_rules.infer``: from every split, so that a category seen in one split only
            does not block; types and required features from train).
        baseline_statistics_dir: an earlier run's statistics artifact; train is checked for drift
            against its train statistics.
        fail_on_drift: whether drift above ``drift_threshold`` blocks like a schema anomaly.
        drift_threshold: L-infinity (strings) or Jensen-Shannon (numbers) distance that counts as drift.

    Returns:
        ``{"anomalies": {split: {feature: description}}, "drift": {feature: description},
        "blocking": bool, "num_features": n, "schema_inferred": bool}``.

    Raises:
        SchemaError: after writing every output, if an anomaly (or drift with fail_on_drift) blocks.
    """
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format

    if not dataio.exists(examples_dir):
        raise ConfigError(f"The examples folder {examples_dir} does not exist. Pass the output of ingest.")
    splits = dataio.list_splits(examples_dir)
    if keys.TRAIN not in splits:
        raise ConfigError(f"{examples_dir} has no {keys.SPLIT_PREFIX}{keys.TRAIN} folder; pass the "
                          f"examples artifact written by ingest (splits found: {splits}).")
    schema_inferred = not user_schema_uri
    user_schema = None if schema_inferred else _load_user_schema(user_schema_uri)
    baseline = statistics.load_baseline(baseline_statistics_dir) if baseline_statistics_dir else None
    with step(log, f"Statistics of {', '.join(splits)}"):
        stats = statistics.generate(examples_dir, splits, statistics_dir)

    schema = user_schema or schema_rules.infer(stats, _label_name(examples_dir))
    schema_path = schemas.write_schema(schema, schema_dir)

    per_split = {split: tfdv.validate_statistics(stats[split], schema) for split in splits}
    found = [f for split in splits for f in report.findings(per_split[split], split)]
    drift, uncompared = None, []
    if baseline is not None:
        drift = tfdv.validate_statistics(
            stats[keys.TRAIN], schema_rules.with_drift_comparators(schema, drift_threshold),
            previous_statistics=baseline)
        found += report.findings(drift, report.BASELINE, drift=True)
        uncompared = report.not_compared(drift)
        if uncompared:
            log.info("Not compared with the baseline: %s", ", ".join(uncompared))

    merged = report.merged_anomalies(schema, per_split, drift)
    dataio.write_text_atomic(dataio.join(statistics_dir, keys.ANOMALIES_FILE),
                             text_format.MessageToString(merged))
    dataio.write_text_atomic(anomalies_md_path, report.markdown(
        found, splits, user_schema_uri or schema_rules.INFERRED, baseline_statistics_dir or None,
        drift_threshold, uncompared))
    dataio.write_text_atomic(statistics_html_path, _html(stats))

    blocking = [f for f in found if not f.drift or fail_on_drift]
    for f in found:
        log.info("%s %s: %s", f.split, f.feature, f.short_description)
    log.info("%d features, %d anomalies, %d blocking", len(schema.feature), len(found), len(blocking))
    if blocking:
        raise SchemaError(report.blocking_message(blocking, anomalies_md_path, schema_path))
    return {
        "anomalies": {split: _by_feature(f for f in found if f.split == split and not f.drift)
                      for split in splits},
        "drift": _by_feature(f for f in found if f.drift),
        "blocking": False,  # a blocking result raises SchemaError instead
        "num_features": len(schema.feature),
        "schema_inferred": schema_inferred,
    }


def _by_feature(found) -> Dict[str, str]:
    return {f.feature: f.description for f in found}


def _label_name(examples_dir: str):
    if not artifacts.DataVersion.exists(examples_dir):
        return None
    return artifacts.DataVersion.read(examples_dir).label.name


def _load_user_schema(uri: str):
    from google.protobuf import text_format

    path = uri if uri.endswith(".pbtxt") else dataio.join(uri, keys.SCHEMA_FILE)
    if not dataio.exists(path):
        raise ConfigError(f"The user schema {path} does not exist. Pass a schema.pbtxt file or the "
                          "schema folder of an earlier run.")
    try:
        return schemas.load_schema(path)
    except text_format.ParseError as e:
        raise ConfigError(f"Cannot parse the user schema {path}: {e}. It must be a text-format "
                          "tensorflow_metadata Schema, like the schema.pbtxt validate writes.") from e


def _html(stats: Dict[str, object]) -> str:
    """The statistics view: self-contained (no CDN), so it renders offline and behind a proxy."""
    names: List[str] = [keys.TRAIN] + ([keys.EVAL] if keys.EVAL in stats else [])
    return html_report.statistics_page({name: stats[name] for name in names},
                                       title=f"Statistics: {' vs '.join(names)}")
