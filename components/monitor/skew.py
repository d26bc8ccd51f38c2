"""Training-serving skew: missing shares that moved, values outside training's range, new
categories, and TFDV's schema anomalies of the served data against the training schema.

The schema anomalies are ``tfdv.validate_statistics`` in the SERVING environment, where the label
is not expected (the served rows have none).
"""

from typing import Dict, Mapping

from prodml.components.common import keys
from prodml.components.monitor import serving_stats as ss

SERVING = "SERVING"
TRAINING = "TRAINING"
NEW_CATEGORIES_NAMED = 10


def schema_anomalies(serving_stats, schema, label_name: str) -> Dict[str, str]:
    """feature -> TFDV's anomaly description, validating the served statistics against the schema."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    serving_schema = schema_pb2.Schema()
    serving_schema.CopyFrom(schema)
    for environment in (TRAINING, SERVING):
        if environment not in serving_schema.default_environment:
            serving_schema.default_environment.append(environment)
    for feature in serving_schema.feature:
        if feature.name == label_name and SERVING not in feature.not_in_environment:
            feature.not_in_environment.append(SERVING)
    anomalies = tfdv.validate_statistics(serving_stats, serving_schema, environment=SERVING)
    return {name: info.description or info.short_description for name, info in sorted(anomalies.anomaly_info.items())}


def missing_share(feature, rows: int) -> float:
    """Share of rows without a value for the feature."""
    if rows <= 0:
        return 0.0
    common = None
    for kind in ("num_stats", "string_stats", "bytes_stats"):
        if feature.HasField(kind):
            common = getattr(feature, kind).common_stats
    return float(common.num_missing) / rows if common is not None else 1.0


def per_feature(training_stats, serving_stats, features: Mapping[str, str],
                ranges: Mapping[str, ss.RangeCounter]) -> Dict[str, Dict[str, object]]:
    """feature -> missing shares, out-of-range share (numeric), new categories and their share (categorical)."""
    trained, served = ss.feature_map(training_stats), ss.feature_map(serving_stats)
    training_rows, serving_rows = ss.num_examples(training_stats), ss.num_examples(serving_stats)
    result: Dict[str, Dict[str, object]] = {}
    for name, kind in features.items():
        t, s = trained.get(name), served.get(name)
        entry: Dict[str, object] = {
            "missing_training": missing_share(t, training_rows) if t is not None else None,
            "missing_serving": missing_share(s, serving_rows) if s is not None else 1.0}
        if entry["missing_training"] is not None:
            entry["missing_change"] = entry["missing_serving"] - entry["missing_training"]
        counter = ranges.get(name)
        if counter is not None:
            entry["below_training_min"] = counter.below
            entry["above_training_max"] = counter.above
            entry["out_of_range_share"] = (counter.below + counter.above) / counter.present if counter.present else 0.0
            entry["training_range"] = [counter.low, counter.high]
        if kind == keys.BYTES and t is not None and s is not None:
            known = ss.rank_counts(t)
            complete = len(known) >= t.string_stats.unique  # every training category is listed
            served_counts = ss.rank_counts(s)
            new = {k: v for k, v in served_counts.items() if k not in known} if complete else {}
            values = sum(served_counts.values())
            entry["new_categories"] = sorted(new, key=lambda k: -new[k])[:NEW_CATEGORIES_NAMED]
            entry["new_category_count"] = len(new)
            entry["new_category_share"] = sum(new.values()) / values if values else 0.0
        result[name] = entry
    return result
