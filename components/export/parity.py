"""Parity and per-row latency of an edge format against the SavedModel, as plain checks and figures."""

import dataclasses
import statistics
import time
from typing import Callable, Dict, List, Mapping

import numpy as np

from prodml.components.export import rows as r

Predict = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Check:
    """One decision and the sentence that explains it."""

    passed: bool
    reason: str


def max_difference(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest absolute difference between two prediction arrays (inf when shapes differ or NaN appears)."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        return float("inf")
    difference = np.abs(reference - candidate)
    return float("inf") if np.isnan(difference).any() else float(difference.max(initial=0.0))


def parity(name: str, difference: float, tolerance: float, rows: int) -> Check:
    """Whether ``name`` predicts every one of ``rows`` eval rows within ``tolerance`` of the SavedModel."""
    if difference <= tolerance:
        return Check(True, f"{name} matches the SavedModel on {rows} eval rows: largest difference "
                           f"{difference:.2g} ≤ {tolerance:g}")
    return Check(False, f"{name} differs from the SavedModel on {rows} eval rows: largest difference "
                        f"{difference:.3g} > {tolerance:g}, so it is not written")


def per_row_latency(predictors: Mapping[str, Predict], rows: Mapping[str, np.ndarray], count: int,
                    warmup: int = 3) -> Dict[str, dict]:
    """Times one-row calls of every predictor side by side, row by row (interleaved, so load on the
    machine hits all alike). Returns per predictor ``{"p50_ms", "p90_ms", "rows", "per_call_ms",
    "predictions"}``."""
    count = min(count, r.row_count(rows))
    for i in range(min(warmup, count)):
        for predict in predictors.values():
            predict(r.take(rows, i, i + 1))
    times: Dict[str, List[float]] = {name: [] for name in predictors}
    outputs: Dict[str, List[np.ndarray]] = {name: [] for name in predictors}
    for i in range(count):
        row = r.take(rows, i, i + 1)
        for name, predict in predictors.items():
            start = time.perf_counter()
            outputs[name].append(np.asarray(predict(row)))
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: {"p50_ms": statistics.median(times[name]) if times[name] else None,
                   "p90_ms": float(np.percentile(times[name], 90)) if times[name] else None,
                   "rows": count, "per_call_ms": np.array(times[name]),
                   "predictions": np.concatenate(outputs[name]) if outputs[name] else np.array([])}
            for name in predictors}
