"""Whether to retrain: each check passes or fails with a sentence a person can read.

The monitor asks for retraining when any of these holds (bounds in ``components/common/defaults.py``,
overridable through ``thresholds``):

- drift: a feature that matters drifted above its bound (TFDV's Jensen-Shannon divergence for
  numeric features, L-infinity for categorical ones, or PSI) -- "matters" is every raw feature
  the model reads unless ``thresholds["features"]`` names a subset;
- quality: live quality on the labelled rows is worse than the evaluation by more than the
  tolerance on the key metric, measured on at least the minimum number of labelled rows;

and only when there is something to retrain on: with labels given, at least the minimum number of
new labelled rows; an empty window never retrains. Training-serving skew (missing shares that moved
by more than ``null_rate_change``, schema anomalies) is reported as reasons starting "skew:" but does
not ask for retraining: it usually means a broken serving path, which retraining would learn.
"""

import dataclasses
import numbers
from typing import Any, Dict, List, Mapping, Optional

from prodml.components.common import defaults
from prodml.components.common import metrics as m
from prodml.components.common.errors import ConfigError

# The bounds and their defaults; thresholds={...} overrides any of them by name.
BOUNDS = {
    "js": defaults.MONITOR_JS_THRESHOLD,
    "linf": defaults.MONITOR_LINF_THRESHOLD,
    "psi": defaults.MONITOR_PSI_THRESHOLD,
    "quality_tolerance": defaults.MONITOR_QUALITY_TOLERANCE,
    "min_labelled_rows": defaults.MONITOR_MIN_LABELLED_ROWS,
    "min_label_match_rate": defaults.MONITOR_MIN_LABEL_MATCH_RATE,
    "null_rate_change": defaults.MONITOR_NULL_RATE_CHANGE,
}


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one retraining check: ``triggered`` asks for retraining."""

    triggered: bool
    reason: str


def bounds(thresholds: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The defaults with ``thresholds`` applied; ConfigError names an unknown or non-numeric one."""
    result: Dict[str, Any] = dict(BOUNDS)
    result["features"] = None
    for name, value in (thresholds or {}).items():
        if name == "features":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"thresholds['features'] must be a list of feature names, got {value!r}.")
            result["features"] = list(value)
            continue
        if name not in BOUNDS:
            raise ConfigError(f"Unknown monitoring threshold '{name}': known are {', '.join(sorted(BOUNDS))} "
                              "and 'features' (the features whose drift may trigger retraining).")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
            raise ConfigError(f"Monitoring threshold '{name}' must be a number ≥ 0, got {value!r}.")
        result[name] = float(value)
    return result


def drifted(drift: Mapping[str, Mapping[str, float]], limits: Mapping[str, Any]) -> List[str]:
    """Features whose JS / L-infinity or PSI is above its bound, most drifted first."""
    over = {}
    for name, scores in drift.items():
        excess = [scores[k] / limits[k] for k in ("js", "linf", "psi")
                  if scores.get(k) is not None and scores[k] > limits[k] and limits[k] > 0]
        if excess:
            over[name] = max(excess)
    return sorted(over, key=lambda n: -over[n])


def drift_check(drifted_features: List[str], drift: Mapping[str, Mapping[str, float]],
                limits: Mapping[str, Any]) -> Check:
    matter = limits["features"]
    relevant = [f for f in drifted_features if matter is None or f in matter]
    if not relevant:
        ignored = f" ({', '.join(drifted_features)} drifted but are not among the features that matter)" \
            if drifted_features else ""
        return Check(False, f"no feature that matters drifted above its bound (JS {limits['js']}, "
                            f"L-infinity {limits['linf']}, PSI {limits['psi']}){ignored}")
    described = ", ".join(f"{f} ({_scores(drift[f])})" for f in relevant)
    return Check(True, f"{len(relevant)} feature(s) drifted above their bound: {described}")


def quality_check(key_metric: str, live: Mapping[str, float], evaluation: Mapping[str, float], labelled: int,
                  limits: Mapping[str, Any]) -> Check:
    if not live:
        return Check(False, "live quality not measured: no labels were given")
    if labelled < limits["min_labelled_rows"]:
        return Check(False, f"live quality not judged: {labelled} labelled rows, fewer than the "
                            f"{int(limits['min_labelled_rows'])} needed")
    if key_metric not in live or key_metric not in evaluation:
        return Check(False, f"live quality not judged: {key_metric} is not measurable on the labelled rows")
    now, then, tolerance = live[key_metric], evaluation[key_metric], limits["quality_tolerance"]
    fell = (then - now) if m.higher_is_better(key_metric) else (now - then)
    if fell > tolerance:
        return Check(True, f"live {key_metric} {now:.4f} is worse than at evaluation ({then:.4f}) by {fell:.4f}, "
                           f"more than the tolerance {tolerance}")
    return Check(False, f"live {key_metric} {now:.4f} vs {then:.4f} at evaluation: within the tolerance {tolerance}")


def enough_labels_check(labels_given: bool, labelled: int, limits: Mapping[str, Any]) -> Check:
    """Passes (does not block) without labels: drift alone may ask for retraining on other data."""
    if not labels_given:
        return Check(True, "no labels given: retraining would use the configured training data")
    enough = labelled >= limits["min_labelled_rows"]
    return Check(enough, f"{labelled} new labelled rows ({'at least' if enough else 'fewer than'} the "
                         f"{int(limits['min_labelled_rows'])} needed to retrain on them)")


def decide(rows: int, drift: Check, quality: Check, enough: Check) -> Dict[str, Any]:
    """``{"retrain": bool, "reasons": [sentences]}``."""
    if rows == 0:
        return {"retrain": False, "reasons": ["the traffic window is empty: nothing to judge, no retraining"]}
    wanted = drift.triggered or quality.triggered
    retrain = wanted and enough.triggered
    reasons = [drift.reason, quality.reason, enough.reason]
    if wanted and not enough.triggered:
        reasons.append("retraining is wanted but waits for more labelled rows")
    elif not wanted:
        reasons.append("no retraining: neither drift nor live quality calls for it")
    return {"retrain": retrain, "reasons": reasons}


def _scores(scores: Mapping[str, float]) -> str:
    names = {"js": "JS", "linf": "L-inf", "psi": "PSI"}
    return ", ".join(f"{names[k]} {v:.3f}" for k, v in scores.items() if v is not None)
