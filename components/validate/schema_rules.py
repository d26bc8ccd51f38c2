"""How prodml infers a schema from statistics, and the drift comparators it checks."""

from typing import Dict, Mapping, Optional

from prodml.components.common import keys

MIN_DOMAIN_MASS = 0.95
# A string feature with more distinct values than this share of its values is an identifier or
# free text, not a category: it gets no domain, so that new values never block a later run.
MAX_DISTINCT_SHARE = 0.5
INFERRED = "inferred from every split (types from train)"


def infer(split_stats: Mapping[str, object], label: Optional[str]):
    """A schema from the statistics of every split that tolerates what ordinary new data looks like.

    As TFX's SchemaGen does by default, the schema is inferred from train and then updated with
    each other split, so a category that happens to land in one split only is in the domain.
    The train split still decides what a problem is:

    - A feature's type is train's: eval data of another type stays an anomaly.
    - Every feature is VarLen (no shape), so a missing value never fails parsing.
    - No feature but the label needs a value on every row; a feature present in every train
      example must still appear at least once in each split (a dropped column is an anomaly).
    - A categorical string may take unseen values as long as they make up less than
      ``1 - MIN_DOMAIN_MASS`` of its values; an identifier-like string (more distinct values
      than ``MAX_DISTINCT_SHARE`` of its values in train) has no domain.
    """
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    train = tfdv.infer_schema(split_stats[keys.TRAIN], infer_feature_shape=False)
    schema = schema_pb2.Schema()
    schema.CopyFrom(train)
    for split, stats in split_stats.items():
        if split != keys.TRAIN:
            schema = tfdv.update_schema(schema, stats, infer_feature_shape=False)
    in_train = {f.name: f for f in train.feature}
    distinct = _distinct_shares(split_stats[keys.TRAIN])
    for feature in schema.feature:
        trained = in_train.get(feature.name)
        # update_schema deprecates a feature whose type or presence another split breaks: keep
        # train's, so that the split's anomaly is reported.
        if trained is not None and (trained.type != feature.type
                                    or trained.lifecycle_stage != feature.lifecycle_stage):
            feature.CopyFrom(trained)
        if feature.name != label:
            always_present = trained is not None and trained.presence.min_fraction == 1.0
            feature.ClearField("presence")
            if always_present:
                feature.presence.min_count = 1
        if feature.WhichOneof("domain_info") == "domain":
            if distinct.get(feature.name, 0.0) > MAX_DISTINCT_SHARE:
                _drop_domain(schema, feature)
            else:
                feature.distribution_constraints.min_domain_mass = MIN_DOMAIN_MASS
    return schema


def _distinct_shares(stats) -> Dict[str, float]:
    """{string feature: distinct values / values} of one split's statistics."""
    shares = {}
    for feature in stats.datasets[0].features:
        if feature.HasField("string_stats"):
            count = feature.string_stats.common_stats.num_non_missing
            if count:
                shares[feature.path.step[-1] if feature.path.step else feature.name] = \
                    feature.string_stats.unique / count
    return shares


def _drop_domain(schema, feature) -> None:
    name = feature.domain
    feature.ClearField("domain")
    feature.ClearField("distribution_constraints")
    if not any(f.domain == name for f in schema.feature):
        kept = [d for d in schema.string_domain if d.name != name]
        del schema.string_domain[:]
        schema.string_domain.extend(kept)


def with_drift_comparators(schema, threshold: float):
    """A copy of ``schema`` comparing each feature with a baseline, unless it has its own comparator.

    String features use the L-infinity distance of their value frequencies; numeric ones the
    Jensen-Shannon divergence of their histograms.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    copy = schema_pb2.Schema()
    copy.CopyFrom(schema)
    for feature in copy.feature:
        if feature.HasField("drift_comparator"):
            continue
        if feature.type == schema_pb2.BYTES:
            feature.drift_comparator.infinity_norm.threshold = threshold
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
    return copy
