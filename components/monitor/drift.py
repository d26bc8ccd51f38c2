"""Drift of every raw feature, and of the predictions: TFDV's comparators, plus PSI.

The Jensen-Shannon divergence (numeric features) and the L-infinity distance (categorical ones)
are TFDV's own numbers: ``tfdv.validate_statistics`` runs with a drift comparator on every
feature at threshold 0, so it measures each of them, and its ``drift_skew_info`` is read back.
The population stability index is computed here: numeric features over the bins of the training
statistics' equal-width histogram plus an under- and an overflow bin, both sides' TFDV histograms
re-bucketed onto them the way TFDV does for its divergences; categorical features over the
categories of both rank histograms. ``PSI = sum((s - t) * ln(s / t))`` with shares floored at
``PSI_FLOOR`` so an empty bin does not make it infinite.

The served side of a numeric feature is clipped to the training range [min, max] before its
statistics (``serving_stats.RangeCounter.clip``): JS and PSI are TFDV's comparison of the training
statistics with the statistics of the clipped served values. Without it, a few served outliers far
beyond the training max stretch the served equal-width histogram and TFDV's re-bucketing (uniform
mass within a bucket) reports drift on undrifted traffic. Beyond-range values still weigh in the
edge buckets (a shifted feature still drifts), and their share is skew's exact out-of-range figure.
"""

from typing import Dict, Iterable, Mapping, Optional

import numpy as np

from prodml.components.common import keys
from prodml.components.monitor import serving_stats as ss

JS, LINF, PSI = "js", "linf", "psi"
PSI_FLOOR = 1e-4
# Only a rule has to exist to be measured: threshold 0 measures, the decision applies its own bounds.
_MEASURE_ALL = 0.0


def comparator_kind(kind: str) -> str:
    """JS for numeric raw features (INT, FLOAT), L-infinity for categorical (BYTES)."""
    return LINF if kind == keys.BYTES else JS


def tfdv_drift(training_stats, serving_stats, schema, features: Mapping[str, str]) -> Dict[str, float]:
    """feature -> TFDV's drift measurement (JS or L-infinity by ``comparator_kind``)."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

    measured = schema_pb2.Schema()
    measured.CopyFrom(schema)
    by_name = {f.name: f for f in measured.feature}
    for name, kind in features.items():
        feature = by_name.get(name)
        if feature is None:
            continue
        if comparator_kind(kind) == LINF:
            feature.drift_comparator.infinity_norm.threshold = _MEASURE_ALL
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = _MEASURE_ALL
    anomalies = tfdv.validate_statistics(serving_stats, measured, previous_statistics=training_stats)
    wanted = {JS: anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE,
              LINF: anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY}
    scores = {}
    for info in anomalies.drift_skew_info:
        name = info.path.step[0]
        for measurement in info.drift_measurements:
            if name in features and measurement.type == wanted[comparator_kind(features[name])]:
                scores[name] = float(measurement.value)
    return scores


def psi(expected: Iterable[float], actual: Iterable[float]) -> Optional[float]:
    """Population stability index of two count vectors over the same bins; None when one is empty."""
    e, a = np.asarray(list(expected), np.float64), np.asarray(list(actual), np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return None
    e, a = np.maximum(e / e.sum(), PSI_FLOOR), np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def categorical_psi(training_feature, serving_feature, training_rows: float, serving_rows: float) -> Optional[float]:
    """PSI over the categories of both rank histograms, the rest of each side's values as one more bin."""
    t, s = ss.rank_counts(training_feature), ss.rank_counts(serving_feature)
    labels = sorted(t.keys() | s.keys())
    t_rest = max(training_rows - sum(t.values()), 0.0)
    s_rest = max(serving_rows - sum(s.values()), 0.0)
    return psi([t.get(k, 0.0) for k in labels] + [t_rest], [s.get(k, 0.0) for k in labels] + [s_rest])


def value_count(feature) -> float:
    """How many values a feature had (rows with the feature times values per row, for one-valued features)."""
    common = _common(feature)
    return float(common.num_non_missing * max(common.avg_num_values, 1.0)) if common is not None else 0.0


def _common(feature):
    for kind in ("num_stats", "string_stats", "bytes_stats"):
        if feature.HasField(kind):
            return getattr(feature, kind).common_stats
    return None
