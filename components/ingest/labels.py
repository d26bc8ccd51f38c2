"""The label: never missing, and its problem type and classes decided over the whole file."""

from typing import Dict, List

import numpy as np
import pandas as pd

from prodml.components.common import keys
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.ingest.columns import Cells

MAX_AUTO_CLASSES = 20
MAX_CLASSES = 10_000


def check_problem_type(problem_type: str) -> str:
    if problem_type not in keys.PROBLEM_TYPES:
        raise ConfigError(f"problem_type '{problem_type}' is not one of {list(keys.PROBLEM_TYPES)}.")
    return problem_type


class LabelTracker:
    """Collects what the problem type needs to know about the label, chunk by chunk."""

    def __init__(self, name: str, kind: str, source: str):
        self.name, self.kind, self.source = name, kind, source
        self._distinct: set = set()
        self._too_many = False  # more than MAX_CLASSES distinct values: only regression is possible
        self._all_integers = True
        self._min, self._max = np.inf, -np.inf

    def update(self, raw: Cells, where) -> None:
        """Adds one chunk of raw strings, already checked against the label's kind."""
        missing = raw.index < 0
        if missing.any():
            i = int(np.argmax(missing))
            raise InputDataError(
                f"The label '{self.name}' is empty on {where(i)} (an empty cell, or a missing-value marker "
                "listed in na_values). Every row needs a label: fill it in or remove the row.")
        # The distinct strings stand for the rows: only their set of values counts here.
        if self.kind == keys.BYTES:
            values = raw.values
        else:
            values = pd.to_numeric(pd.Series(raw.values, dtype=object)).to_numpy(
                dtype=np.int64 if self.kind == keys.INT else np.float64)
        if self.kind != keys.BYTES:
            self._min, self._max = min(self._min, values.min()), max(self._max, values.max())
            if self.kind == keys.FLOAT:
                self._all_integers = self._all_integers and bool((values == np.floor(values)).all())
        if not self._too_many:
            self._distinct.update(pd.unique(values).tolist())
            self._too_many = len(self._distinct) > MAX_CLASSES

    def block(self, problem_type: str) -> Dict[str, object]:
        """The ``label`` block of data_version.json; an error says why the label does not fit."""
        problem_type = self._auto() if problem_type == keys.AUTO else problem_type
        if problem_type == keys.REGRESSION:
            self._check_regression()
            return {"name": self.name, "problem_type": problem_type, "classes": None}
        return {"name": self.name, "problem_type": problem_type, "classes": self._classes(problem_type)}

    def _auto(self) -> str:
        n = len(self._distinct)
        if self.kind == keys.BYTES:
            if n > MAX_AUTO_CLASSES:
                raise InputDataError(
                    f"The label '{self.name}' in {self.source} is text with {self._count()} distinct "
                    f"values, more than the {MAX_AUTO_CLASSES} classes problem_type 'auto' accepts. "
                    "Pass problem_type='multiclass' if that many classes is intended, or check the label name.")
        elif (self.kind == keys.FLOAT and not self._all_integers) or self._too_many or n > MAX_AUTO_CLASSES:
            return keys.REGRESSION
        return keys.BINARY if n <= 2 else keys.MULTICLASS

    def _count(self) -> str:
        return f"more than {MAX_CLASSES:,}" if self._too_many else f"{len(self._distinct)}"

    def _check_regression(self) -> None:
        if self.kind == keys.BYTES:
            raise InputDataError(
                f"The label '{self.name}' in {self.source} holds text, but problem_type is regression. "
                "Use a numeric label or a classification problem_type.")
        if self._min == self._max:
            raise InputDataError(
                f"The label '{self.name}' in {self.source} has the same value {self._min:g} on every row; "
                "there is nothing to learn. Check the label column.")

    def _classes(self, problem_type: str) -> List[str]:
        if self._too_many:
            raise InputDataError(
                f"The label '{self.name}' in {self.source} has more than {MAX_CLASSES:,} distinct values: "
                f"too many for {problem_type} classification. Use problem_type='regression' or group values.")
        values = sorted(self._distinct)
        classes = [str(v) for v in values]
        if len(classes) == 1:
            raise InputDataError(
                f"The label '{self.name}' in {self.source} has a single class, {classes[0]!r}: a "
                "classifier needs at least two. Check the label column or add rows of other classes.")
        if problem_type == keys.BINARY and len(classes) != 2:
            raise InputDataError(
                f"problem_type is binary but the label '{self.name}' in {self.source} has "
                f"{len(classes)} classes ({_preview(classes)}). Use problem_type='multiclass' or 'auto'.")
        return classes


def _preview(classes: List[str], n: int = 5) -> str:
    shown = ", ".join(repr(c) for c in classes[:n])
    return shown + (", ..." if len(classes) > n else "")
