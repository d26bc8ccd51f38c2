"""TFDV statistics of the served rows, accumulated chunk by chunk.

The statistics themselves are ``common.tfdv_accumulator.StatsAccumulator`` (TFDV's in-memory
generators fed one Arrow RecordBatch per chunk, memory bounded; validate uses it too).

The numeric features' served values are clipped to the training range [min, max] before they reach
the statistics (``RangeCounter.clip`` says why); the values outside the range are counted exactly
there (for skew). PSI bins and the re-bucketing of TFDV histograms onto them live here too.
"""

from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa


class RangeCounter:
    """One numeric feature's served values against the training range [min, max]: the values below
    and above it counted exactly (skew's out-of-range figure), and the values clipped into it for the
    drift statistics (see ``clip``)."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high
        self.present = 0
        self.below = 0
        self.above = 0
        self.minimum: Optional[float] = None  # of the served values, before clipping
        self.maximum: Optional[float] = None

    def add(self, values: pa.Array) -> None:
        """Counts the values of one chunk (null = missing, not counted)."""
        self.clip(values)

    def clip(self, values: pa.Array) -> pa.Array:
        """Counts the chunk's values, and returns them clipped to the training range (nulls kept).

        Why the drift statistics see clipped values: TFDV's numeric histogram is equal-width between
        the data's own min and max, and its Jensen-Shannon comparator re-buckets one histogram onto
        the other assuming uniform mass within a bucket. A handful of served values far above the
        training max (6 in 100k taxi rows) stretch the served histogram so that its first bucket
        covers several training buckets, and the re-bucketing then "moves" half the mass of an
        undrifted feature (JS 0.29). Clipped to [min, max], the served histogram spans the training
        range whenever the served values reach its ends, its buckets line up with the training
        ones, and the comparison is bucket for bucket. Values beyond the range are not lost: they
        weigh in the edge buckets, so a real shift (fare x3) still drifts strongly, and their share
        is counted exactly here (below/above). One pass, no second statistics.
        """
        import pyarrow.compute as pc

        low, high = _bound(self.low, values.type), _bound(self.high, values.type)
        self.present += len(values) - values.null_count
        self.below += pc.sum(pc.less(values, low)).as_py() or 0
        self.above += pc.sum(pc.greater(values, high)).as_py() or 0
        extremes = pc.min_max(values)
        low_seen, high_seen = extremes["min"].as_py(), extremes["max"].as_py()
        if low_seen is not None:
            self.minimum = low_seen if self.minimum is None else min(self.minimum, low_seen)
            self.maximum = high_seen if self.maximum is None else max(self.maximum, high_seen)
        return pc.min_element_wise(pc.max_element_wise(values, low, skip_nulls=False), high, skip_nulls=False)


def _bound(value: float, kind: pa.DataType) -> pa.Scalar:
    """A training bound as a scalar of the served column's type (an INT feature's min and max are whole)."""
    return pa.scalar(int(value) if pa.types.is_integer(kind) else value, kind)


def with_served_range(stats, ranges: Dict[str, RangeCounter]):
    """A copy of the (clipped) served statistics with each numeric feature's min and max as served, so
    a schema's numeric domain is checked against the real values (``skew.schema_anomalies``)."""
    restored = type(stats)()
    restored.CopyFrom(stats)
    for name, feature in feature_map(restored).items():
        counter = ranges.get(name)
        if counter is not None and counter.minimum is not None and feature.HasField("num_stats"):
            feature.num_stats.min, feature.num_stats.max = counter.minimum, counter.maximum
    return restored


def bin_index(edges: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """The bin of each number: bin i holds [edges[i], edges[i+1]); below edges[0] is bin 0."""
    return np.clip(np.searchsorted(edges, numbers, side="right") - 1, 0, max(len(edges) - 1, 0))


def standard_buckets(feature_stats):
    """(low, high, count) of a numeric feature's STANDARD (equal-width) histogram; empty when it has none."""
    if feature_stats is None or not feature_stats.HasField("num_stats"):
        return []
    for histogram in feature_stats.num_stats.histograms:
        if histogram.type == histogram.STANDARD:
            return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]
    return []


def psi_bins(feature_stats) -> Optional[np.ndarray]:
    """Bin starts for a numeric feature's PSI: an underflow bin, the training histogram's equal-width
    buckets, an overflow bin (served values outside the training range weigh in PSI)."""
    buckets = standard_buckets(feature_stats)
    if not buckets:
        return None
    starts = [low for low, _, _ in buckets]
    return np.array([-np.inf] + starts + [np.nextafter(buckets[-1][1], np.inf)], np.float64)


def histogram_counts(feature_stats, edges: np.ndarray) -> np.ndarray:
    """A feature's equal-width histogram re-bucketed onto the bins of ``psi_bins``.

    As TFDV re-buckets histograms for its divergences: a bucket's count is spread uniformly over
    its range, a bucket of zero width is a point mass. Training and serving go through the same
    re-bucketing, so the same distribution gives the same shares.
    """
    counts = np.zeros(len(edges), np.float64)
    cuts = edges[1:]
    for low, high, count in standard_buckets(feature_stats):
        if high <= low:
            counts[bin_index(edges, np.array([low]))[0]] += count
            continue
        points = np.concatenate([[low], cuts[(cuts > low) & (cuts < high)], [high]])
        widths = np.diff(points)
        np.add.at(counts, bin_index(edges, points[:-1] + widths / 2), count * widths / (high - low))
    return counts


def feature_map(stats) -> Dict[str, object]:
    """Feature name -> FeatureNameStatistics of the first dataset."""
    dataset = stats.datasets[0] if hasattr(stats, "datasets") else stats
    return {(f.path.step[0] if f.path.step else f.name): f for f in dataset.features}


def num_examples(stats) -> int:
    dataset = stats.datasets[0] if hasattr(stats, "datasets") else stats
    return int(dataset.num_examples)


def rank_counts(feature_stats) -> Dict[str, float]:
    """Category -> count from a string feature's rank histogram (TFDV keeps the top 1,000)."""
    if not feature_stats.HasField("string_stats"):
        return {}
    buckets: List = list(feature_stats.string_stats.rank_histogram.buckets)
    return {b.label: float(b.sample_count) for b in buckets}
