"""The blessing checks: each one passes or fails with a sentence a person can read.

A candidate is blessed when it beats the trivial baseline on the key metric, meets every
absolute threshold, does not fall behind the pushed model by more than the tolerance, and is
not a mere re-run of the pushed model (same data bytes and configuration, no real gain).
"""

import dataclasses
import numbers
from typing import Dict, Mapping, Optional

from prodml.components.common import metrics as m
from prodml.components.common.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one blessing check."""

    passed: bool
    reason: str


def validate_thresholds(problem_type: str, thresholds: Optional[Mapping[str, object]]) -> Dict[str, float]:
    """Checks threshold names and values before any work is done; returns them as floats."""
    known = m.METRICS[problem_type] + (m.EXAMPLE_COUNT,)
    result = {}
    for name, value in (thresholds or {}).items():
        if name not in known:
            raise ConfigError(f"Unknown metric '{name}' in thresholds. A {problem_type} model is judged on: "
                              f"{', '.join(known)}.")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"Threshold for '{name}' must be a number, got {value!r}.")
        result[name] = float(value)
    return result


def validate_tolerance(tolerance: float) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or tolerance < 0:
        raise ConfigError(f"tolerance must be a number ≥ 0 (how far the key metric may fall behind "
                          f"the pushed model), got {tolerance!r}.")
    return float(tolerance)


def against_baseline(metric: str, candidate: Mapping[str, float], baseline: Mapping[str, float],
                     baseline_name: str) -> Check:
    """The candidate must be strictly better than the trivial model on ``metric``."""
    if metric not in candidate or metric not in baseline:
        return Check(False, f"{metric} is undefined on the eval split (it holds a single class), "
                            "so the model cannot be compared with the baseline")
    value, base = candidate[metric], baseline[metric]
    if m.is_better(metric, value, base):
        sign = "<" if metric in m.LOWER_IS_BETTER else ">"
        return Check(True, f"{metric} {_fmt(value)} {sign} baseline {_fmt(base)} ({baseline_name})")
    return Check(False, f"{metric} {_fmt(value)} does not beat baseline {_fmt(base)} ({baseline_name})")


def against_threshold(metric: str, candidate: Mapping[str, float], threshold: float) -> Check:
    """A minimum for higher-is-better metrics, a maximum for lower-is-better ones."""
    if metric not in candidate:
        return Check(False, f"{metric} is undefined on the eval split, so threshold {_fmt(threshold)} is not met")
    value = candidate[metric]
    if m.higher_is_better(metric):
        ok = value >= threshold
        return Check(ok, f"{metric} {_fmt(value)} {'≥' if ok else '<'} threshold {_fmt(threshold)}")
    ok = value <= threshold
    return Check(ok, f"{metric} {_fmt(value)} {'≤' if ok else '>'} threshold {_fmt(threshold)}")


def against_pushed(metric: str, candidate: Mapping[str, float], pushed: Mapping[str, float], version: int,
                   tolerance: float) -> Check:
    """The candidate may trail the pushed model by at most ``tolerance`` on ``metric``."""
    if metric not in candidate or metric not in pushed:
        return Check(False, f"{metric} is undefined on the eval split, so the candidate cannot be compared "
                            f"with pushed v{version}")
    value, old = candidate[metric], pushed[metric]
    behind = (value - old) if metric in m.LOWER_IS_BETTER else (old - value)
    head = f"{metric} {_fmt(value)} vs pushed v{version} {_fmt(old)}"
    if behind <= 0:
        return Check(True, f"{head}: as good or better")
    if behind <= tolerance + 1e-12:
        return Check(True, f"{head}: within tolerance {_fmt(tolerance)}")
    return Check(False, f"{head}: behind by {_fmt(behind)}, more than tolerance {_fmt(tolerance)}")


def not_a_rerun(same_data: bool, same_config: bool, metric: str, candidate: Mapping[str, float],
                pushed: Mapping[str, float], version: int, tolerance: float, sha256: str) -> Check:
    """A re-run of the pushed version's data and configuration must improve on it to be pushed.

    Beam's transform does not keep record order or float summation order from run to run, so a
    re-run is close to, not bit-identical with, the pushed model; a gain within ``tolerance`` is
    that noise, not a better model.
    """
    if not (same_data and same_config) or metric not in candidate or metric not in pushed:
        return Check(True, f"new data or configuration since pushed v{version}")
    gain = (pushed[metric] - candidate[metric]) if metric in m.LOWER_IS_BETTER else (candidate[metric] - pushed[metric])
    if gain > tolerance:
        return Check(True, f"re-run of pushed v{version} improves {metric} by {_fmt(gain)}")
    return Check(False, f"re-run of pushed v{version}: same data (sha256 {sha256[:12]}…) and training configuration, "
                        f"and {metric} {_fmt(candidate[metric])} does not improve on {_fmt(pushed[metric])} by more "
                        f"than tolerance {_fmt(tolerance)}, so there is nothing new to push")


def _fmt(value: float) -> str:
    return f"{value:.4g}"
