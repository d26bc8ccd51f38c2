"""Business metrics from a user module: ``business_metrics(features, predictions, labels) -> dict``.

The function is called once per streamed chunk of traffic (so memory stays bounded), with
``features`` a pandas DataFrame of the chunk's raw features (None = missing), ``predictions`` a
numpy array (P(positive class) for binary, class probabilities for multiclass, the value for
regression) and ``labels`` a numpy array of the joined labels (NaN where no label arrived; class
indices for classification). Each call returns ``{name: number}``; the run reports the sum over the
chunks, so return additive quantities (revenue at stake, count of costly errors), and ratios as a
numerator and a denominator. A module that raises, or returns something else, is named with its
line in one paragraph.
"""

import numbers
import os
import traceback
from typing import Dict

import numpy as np

from prodml.components.common.errors import ConfigError
from prodml.components.common.user_modules import load_function

FUNCTION = "business_metrics"


class BusinessMetrics:
    """Loads the user's function and adds up what it returns, chunk by chunk."""

    def __init__(self, module_file: str):
        self.module_file = module_file
        self._function = load_function(module_file, FUNCTION)
        self.totals: Dict[str, float] = {}

    def add(self, features, predictions: np.ndarray, labels: np.ndarray) -> None:
        try:
            result = self._function(features, predictions, labels)
        except Exception as e:
            raise ConfigError(f"The business metric module {self.module_file} raised {type(e).__name__}: {e} "
                              f"{_where(e, self.module_file)}. Fix {FUNCTION}() and run the monitor again.") from e
        if not isinstance(result, dict) or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) for v in result.values()):
            raise ConfigError(f"{FUNCTION}() in {self.module_file} returned {type(result).__name__} "
                              f"{str(result)[:80]!r}: it must return a dict of numbers, e.g. "
                              "{'revenue_at_stake': 1234.5}.")
        for name, value in result.items():
            self.totals[str(name)] = self.totals.get(str(name), 0.0) + float(value)


def _where(error: Exception, module_file: str) -> str:
    """'at line N (code)' of the deepest frame in the user's file."""
    target = os.path.basename(module_file)
    frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.basename(f.filename) == target]
    if not frames:
        return f"in {FUNCTION}()"
    frame = frames[-1]
    return f"at line {frame.lineno} of {target} in {frame.name}() ({(frame.line or '').strip()})"
