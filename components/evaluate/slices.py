"""Per-slice metrics: the eval examples grouped by the value of one raw feature."""

from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np

from prodml.components.common import keys
from prodml.components.common import metrics as m

MAX_SLICES = 20
OTHER = "__other__"
MISSING = "__missing__"


def slice_names(values: Sequence[Optional[str]], max_slices: int = MAX_SLICES) -> np.ndarray:
    """Each example's slice: its value if among the ``max_slices`` most frequent, else ``__other__``.

    A missing value (None) is its own slice, ``__missing__``, outside the cap.
    """
    counts = Counter(v for v in values if v is not None)
    # Ties broken by value so that the same data always gives the same slices.
    kept = {v for v, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max_slices]}
    return np.array([MISSING if v is None else (v if v in kept else OTHER) for v in values], dtype=object)


def slice_metrics(problem_type: str, labels: np.ndarray, predictions: np.ndarray, names: np.ndarray,
                  n_classes: int = 0) -> Dict[str, Dict[str, float]]:
    """Metrics per slice, most frequent slice first, ``__other__`` and ``__missing__`` last."""
    order: List[str] = [name for name, _ in Counter(names.tolist()).most_common() if name not in (OTHER, MISSING)]
    order += [name for name in (OTHER, MISSING) if np.any(names == name)]
    return {name: m.compute(problem_type, labels[names == name], predictions[names == name], n_classes)
            for name in order}


def format_value(value, kind: str) -> str:
    """A raw feature value as a slice name: integers without a decimal point, floats shortest."""
    if kind == keys.BYTES:
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    if kind == keys.INT:
        return str(int(value))
    return np.format_float_positional(np.float32(value), trim="-")
