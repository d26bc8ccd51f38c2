"""The infra checks: each one passes or fails with a sentence that names the cause.

A candidate is infra-blessed when the predictor serves it (ready within the load bound), its
V1 REST, V2 REST and V2 gRPC answers equal evaluate's predictions for the same rows, and the p99
latency of single-row requests at the tested concurrency is within the latency bound.
"""

import dataclasses
import math
import numbers
from typing import Any, Dict, List, Optional

import numpy as np

from prodml.components.common.errors import ConfigError

PROTOCOLS = {"v1": "V1 REST", "v2": "V2 REST", "grpc": "V2 gRPC"}


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one infra check."""

    passed: bool
    reason: str


def positive(name: str, value: Any) -> float:
    """A bound as a float; ConfigError when it is not a number above 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 or math.isinf(value):
        raise ConfigError(f"{name} must be a finite number above 0, got {value!r}.")
    return float(value)


def served(result: Dict[str, Any], max_load_seconds: float) -> Check:
    """The predictor loaded the candidate and was ready within ``max_load_seconds``."""
    if not result.get("ready"):
        return Check(False, f"does not serve in the serving runtime: {result.get('failure') or 'no answer'}")
    ready = result["ready_seconds"]
    parts = ""
    if result.get("load_seconds") is not None:
        parts = f" (load {result['load_seconds']:g} s, warm-up {result['warm_up_seconds']:g} s)"
    if ready > max_load_seconds:  # serving_check stops waiting at the bound; this covers its last poll
        return Check(False, f"ready after {ready:.1f} s{parts}, over the bound of {max_load_seconds:g} s")
    return Check(True, f"ready in {ready:.1f} s{parts}, within {max_load_seconds:g} s")


def difference(got: Any, expected: List[Any]) -> Dict[str, Any]:
    """The largest difference between served and expected predictions: absolute, relative above 1.

    Returns ``{"max", "row"}``, or ``{"problem"}`` when the shapes do not match.
    """
    try:
        served_values = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return {"problem": "the answer is not a list of numbers"}
    want = np.asarray(expected, dtype=np.float64)
    if served_values.shape != want.shape:
        return {"problem": f"the answer has shape {list(served_values.shape)}, expected {list(want.shape)}"}
    gap = np.abs(served_values - want) / np.maximum(1.0, np.abs(want))
    gap = np.where(np.isnan(served_values) != np.isnan(want), np.inf, np.nan_to_num(gap, nan=0.0))
    per_row = gap.reshape(len(gap), -1).max(axis=1) if gap.size else gap
    row = int(np.argmax(per_row)) if per_row.size else 0
    return {"max": float(per_row[row]) if per_row.size else 0.0, "row": row}


def predictions(protocol: str, result: Dict[str, Any], expected: List[Any], max_difference: float,
                missing_rows: int) -> Check:
    """The protocol's answers equal evaluate's predictions within ``max_difference``."""
    name = PROTOCOLS[protocol]
    error = result.get("errors", {}).get(protocol)
    if error:
        return Check(False, f"{name} request of {len(expected)} eval rows failed: {error}")
    gap = difference(result.get("predictions", {}).get(protocol), expected)
    if "problem" in gap:
        return Check(False, f"{name} predictions do not match evaluate's: {gap['problem']}")
    if gap["max"] > max_difference:
        return Check(False, f"{name} predictions differ from evaluate's: largest difference {gap['max']:.3g} "
                            f"at row {gap['row']}, over the bound of {max_difference:g}")
    return Check(True, f"{name} predictions equal evaluate's on {len(expected)} rows ({missing_rows} with "
                       f"missing values), largest difference {gap['max']:.3g} ≤ {max_difference:g}")


def latency(figures: Dict[str, Any], max_p99_ms: float) -> Check:
    """Single-row requests at the tested concurrency: no error and a p99 within ``max_p99_ms``."""
    concurrency = figures.get("concurrency")
    if figures.get("errors"):
        return Check(False, f"{figures['errors']} of {figures['requests']} requests at concurrency {concurrency} "
                            f"failed, the first: {figures.get('first_error')}")
    p99: Optional[float] = figures.get("p99_ms")
    if p99 is None:
        return Check(False, "no latency was measured")
    if p99 > max_p99_ms:
        return Check(False, f"too slow: p99 latency {p99:.1f} ms at concurrency {concurrency} is over the bound "
                            f"of {max_p99_ms:g} ms (p50 {figures['p50_ms']:.1f} ms)")
    return Check(True, f"p99 latency {p99:.1f} ms at concurrency {concurrency} within {max_p99_ms:g} ms "
                       f"(p50 {figures['p50_ms']:.1f} ms, {figures['requests']} requests)")
