"""Plain numbers out of TFDV statistics protos: per-feature summaries, histograms on common bins, top values.

The HTML reports draw from these, so that the drawing code never touches a proto. Every function
takes a ``DatasetFeatureStatistics`` or a ``DatasetFeatureStatisticsList`` (its first dataset).
"""

import bisect
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

NUMERIC, CATEGORICAL, OTHER = "numeric", "categorical", "other"
HISTOGRAM_BINS = 10      # equal-width bins shared by every dataset of one chart
TAIL_SPREADS = 1.5       # a tail longer than this many 10th-90th percentile spreads gets a bin of its own
TOP_VALUES = 10          # categories shown per chart; the rest are summed as "other values"
OTHER_VALUES = "(other values)"


@dataclass(frozen=True)
class Summary:
    """One feature in one dataset; fields that do not apply to the feature's kind are None."""

    kind: str
    count: int                       # examples with the feature present
    missing: Optional[float]         # fraction of examples without it (None: the dataset is empty)
    mean: Optional[float] = None
    std: Optional[float] = None
    zeros: Optional[float] = None    # fraction of values equal to zero
    min: Optional[float] = None
    median: Optional[float] = None
    max: Optional[float] = None
    unique: Optional[int] = None
    top_value: Optional[str] = None
    top_fraction: Optional[float] = None
    avg_length: Optional[float] = None


def dataset(stats):
    """The ``DatasetFeatureStatistics`` in ``stats``: itself, or the first dataset of a list (empty if none)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    if hasattr(stats, "datasets"):
        return stats.datasets[0] if stats.datasets else statistics_pb2.DatasetFeatureStatistics()
    return stats


def feature_name(feature) -> str:
    """The feature's name, or its path joined by dots (struct features)."""
    return ".".join(feature.path.step) if feature.path.step else feature.name


def features(stats) -> Dict[str, object]:
    """``{name: FeatureNameStatistics}`` of one dataset."""
    return {feature_name(f): f for f in dataset(stats).features}


def kind(feature) -> str:
    """NUMERIC (num_stats), CATEGORICAL (string_stats) or OTHER (bytes, struct)."""
    which = feature.WhichOneof("stats")
    return {"num_stats": NUMERIC, "string_stats": CATEGORICAL}.get(which, OTHER)


def kinds(datasets: Dict[str, object]) -> Dict[str, str]:
    """``{feature: kind}`` over every dataset, sorted by name; the first dataset that has it decides."""
    found: Dict[str, str] = {}
    for stats in datasets.values():
        for name, feature in features(stats).items():
            found.setdefault(name, kind(feature))
    return dict(sorted(found.items()))


def _common(feature):
    which = feature.WhichOneof("stats")
    return getattr(feature, which).common_stats if which else None


def _value_total(common) -> int:
    """Values of the feature over all examples (several per example for list features)."""
    return common.tot_num_values or common.num_non_missing


def summary(stats, name: str) -> Optional[Summary]:
    """The summary of feature ``name`` in ``stats``, or None if the dataset does not have it."""
    ds = dataset(stats)
    feature = features(ds).get(name)
    if feature is None:
        return None
    common = _common(feature)
    count = common.num_non_missing if common is not None else 0
    examples = ds.num_examples
    missing = (examples - count) / examples if examples else None
    k = kind(feature)
    if not count:  # TFDV fills the numbers of an absent feature with zeros: show none
        return Summary(k, count, missing)
    if k == NUMERIC:
        num = feature.num_stats
        values = _value_total(common)
        return Summary(k, count, missing, mean=num.mean, std=num.std_dev,
                       zeros=num.num_zeros / values if values else None,
                       min=num.min, median=num.median, max=num.max)
    if k == CATEGORICAL:
        strings = feature.string_stats
        top = strings.top_values[0] if strings.top_values else None
        values = _value_total(common)
        return Summary(k, count, missing, unique=strings.unique,
                       top_value=top.value if top else None,
                       top_fraction=top.frequency / values if top and values else None,
                       avg_length=strings.avg_length)
    return Summary(k, count, missing)


def _histogram_buckets(feature) -> List[Tuple[float, float, float]]:
    """``[(low, high, count)]``: the quantile histogram (finer for skewed data), else the standard one."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    by_type = {h.type: h for h in feature.num_stats.histograms}
    histogram = (by_type.get(statistics_pb2.Histogram.QUANTILES)
                 or by_type.get(statistics_pb2.Histogram.STANDARD))
    if histogram is None:
        return []
    return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets if b.sample_count > 0]


def common_edges(bucket_lists: Sequence[List[Tuple[float, float, float]]], bins: int = HISTOGRAM_BINS,
                 deciles: Sequence[Tuple[float, float]] = ()) -> List[float]:
    """Bin edges spanning every finite bucket bound; one zero-width bin for a constant feature.

    ``bins`` equal-width bins, except for a long tail: when the values reach further than
    TAIL_SPREADS times the 10th-90th percentile spread (``deciles``: one (p10, p90) per dataset)
    beyond the outermost percentile, the bins stop there and one more bin holds the whole tail,
    so that a few outliers do not squash the distribution into one bar.
    """
    bounds = [x for buckets in bucket_lists for low, high, _ in buckets for x in (low, high) if math.isfinite(x)]
    if not bounds:
        return []
    lo, hi = min(bounds), max(bounds)
    if hi <= lo:
        return [lo, lo]
    inner_lo, inner_hi = lo, hi
    if deciles:
        p10, p90 = min(d[0] for d in deciles), max(d[1] for d in deciles)
        spread = p90 - p10
        if spread > 0 and math.isfinite(spread):
            if p10 - lo > TAIL_SPREADS * spread:
                inner_lo = p10 - spread / 2
            if hi - p90 > TAIL_SPREADS * spread:
                inner_hi = p90 + spread / 2
    step = (inner_hi - inner_lo) / bins
    edges = [inner_lo + i * step for i in range(bins)] + [inner_hi]
    return ([lo] if inner_lo > lo else []) + edges + ([hi] if inner_hi < hi else [])


def _deciles(feature) -> Optional[Tuple[float, float]]:
    """(10th, 90th percentile) from the quantile histogram, if it has one."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    for histogram in feature.num_stats.histograms:
        if histogram.type == statistics_pb2.Histogram.QUANTILES and len(histogram.buckets) >= 3:
            p10, p90 = histogram.buckets[0].high_value, histogram.buckets[-1].low_value
            if math.isfinite(p10) and math.isfinite(p90):
                return p10, p90
    return None


def rebin(buckets: List[Tuple[float, float, float]], edges: List[float]) -> List[float]:
    """Counts of ``buckets`` moved onto ``edges``, assuming values spread evenly inside each bucket.

    Infinite bounds are clipped to the outer edges; a zero-width bucket (a repeated value) goes
    whole into the bin that holds it.
    """
    n = len(edges) - 1
    out = [0.0] * n
    if n < 1:
        return out
    first, last = edges[0], edges[-1]
    for low, high, count in buckets:
        if math.isnan(low) or math.isnan(high):
            continue
        low, high = min(max(low, first), last), min(max(high, first), last)
        if high <= low:
            out[min(max(bisect.bisect_right(edges, low) - 1, 0), n - 1)] += count
            continue
        for i in range(n):
            overlap = min(high, edges[i + 1]) - max(low, edges[i])
            if overlap > 0:
                out[i] += count * overlap / (high - low)
    return out


def histograms(datasets: Dict[str, object], name: str,
               bins: int = HISTOGRAM_BINS) -> Tuple[List[float], Dict[str, List[float]]]:
    """``(edges, {dataset: [fraction of its values per bin]})`` of numeric feature ``name``.

    Every dataset is put on the same bins (``common_edges``: equal width, plus a bin for a long
    tail), so that the bars compare; fractions (not counts) so that a small serving window
    compares with a large training set. Datasets without the feature are left out.
    """
    buckets, deciles = {}, []
    for label, stats in datasets.items():
        feature = features(stats).get(name)
        if feature is not None and kind(feature) == NUMERIC:
            buckets[label] = _histogram_buckets(feature)
            deciles.append(_deciles(feature))
    edges = common_edges(list(buckets.values()), bins, [] if None in deciles else deciles)
    series = {}
    for label, found in buckets.items():
        counts = rebin(found, edges)
        total = sum(counts)
        series[label] = [c / total if total else 0.0 for c in counts]
    return edges, series


def _value_counts(feature) -> Dict[str, float]:
    strings = feature.string_stats
    counts = {b.label: b.sample_count for b in strings.rank_histogram.buckets}
    for top in strings.top_values:
        counts.setdefault(top.value, top.frequency)
    return counts


def top_values(datasets: Dict[str, object], name: str,
               limit: int = TOP_VALUES) -> Tuple[List[str], Dict[str, List[float]]]:
    """``(values, {dataset: [fraction of its values per value]})`` of categorical feature ``name``.

    The values shown are the ``limit`` most frequent in any dataset (by fraction, then by value),
    followed by OTHER_VALUES when the rest of some dataset's values is not negligible.
    """
    shares: Dict[str, Dict[str, float]] = {}
    for label, stats in datasets.items():
        feature = features(stats).get(name)
        if feature is None or kind(feature) != CATEGORICAL:
            continue
        total = _value_total(_common(feature))
        shares[label] = {v: c / total for v, c in _value_counts(feature).items()} if total else {}
    best: Dict[str, float] = {}
    for found in shares.values():
        for value, share in found.items():
            best[value] = max(best.get(value, 0.0), share)
    shown = [v for v, _ in sorted(best.items(), key=lambda item: (-item[1], item[0]))[:limit]]
    series = {label: [found.get(v, 0.0) for v in shown] for label, found in shares.items()}
    rest = {label: max(0.0, 1.0 - sum(values)) if shares[label] else 0.0 for label, values in series.items()}
    if any(r > 5e-4 for r in rest.values()):
        shown.append(OTHER_VALUES)
        for label in series:
            series[label].append(rest[label])
    return shown, series
