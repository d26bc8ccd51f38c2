"""How prodml infers a schema from statistics, and the drift comparators it checks."""

from typing import Optional

MIN_DOMAIN_MASS = 0.95


def infer(train_stats, label: Optional[str]):
    """A schema from the train statistics that tolerates what ordinary new data looks like.

    - Every feature is VarLen (no shape), so a missing value never fails parsing.
    - No feature but the label needs a value on every row; a feature present in every train
      example must still appear at least once in each split (a dropped column is an anomaly).
    - A categorical string may take unseen values as long as they make up less than
      ``1 - MIN_DOMAIN_MASS`` of its values.
    """
    import tensorflow_data_validation as tfdv

    schema = tfdv.infer_schema(train_stats, infer_feature_shape=False)
    for feature in schema.feature:
        if feature.name != label:
            always_present = feature.presence.min_fraction == 1.0
            feature.ClearField("presence")
            if always_present:
                feature.presence.min_count = 1
        if feature.WhichOneof("domain_info") == "domain":
            feature.distribution_constraints.min_domain_mass = MIN_DOMAIN_MASS
    return schema


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
