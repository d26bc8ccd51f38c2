"""Column names and kinds: sanitising names, deciding INT/FLOAT/BYTES, enforcing the kinds."""

import math
import re
from typing import List

import numpy as np
import pandas as pd

from prodml.components.common import keys
from prodml.components.common.errors import InputDataError
from prodml.components.common.logs import get_logger

log = get_logger(__name__)

# Names a TF SavedModel signature accepts as input keys.
VALID_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/]*\Z")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9_.\-/]")
_INT64_MAX = 2 ** 63 - 1
# A column's kind is decided from its first present values, as CSV readers do; a later value
# that does not fit is an error naming its row, rather than silently turning the column to text.
INFER_VALUES = 1000


def sanitise(name: str) -> str:
    """``name`` made a valid signature name: invalid characters become ``_``."""
    if VALID_NAME.match(name):
        return name
    name = _INVALID_CHAR.sub("_", name)
    return name if VALID_NAME.match(name) else "col" + name


def sanitise_names(header: List[object], uri: str) -> List[str]:
    """Valid, unique column names for a header; an error names two columns that collide."""
    names, origin = [], {}
    for position, cell in enumerate(header, start=1):
        raw = "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell).strip()
        name = sanitise(raw) if raw else f"column_{position}"
        if name != raw:
            log.info("Column %d %r of %s is named %r (valid TF signature name).", position, raw, uri, name)
        if name in origin:
            first_position, first_raw = origin[name]
            raise InputDataError(
                f"Columns {first_position} ({first_raw!r}) and {position} ({raw!r}) of {uri} would both "
                f"be named '{name}'. Rename one of them in the header.")
        origin[name] = (position, raw)
        names.append(name)
    return names


def infer_kind(values: pd.Series) -> str:
    """INT if the first INFER_VALUES present values are integer literals, FLOAT if numbers, else BYTES."""
    present = values.dropna().iloc[:INFER_VALUES]
    if present.empty:
        return keys.BYTES
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        return keys.BYTES
    if numbers.dtype.kind == "i":
        return keys.INT
    return keys.FLOAT


def to_arrow(values: pd.Series, name: str, kind: str, where):
    """The column as a flat nullable Arrow array of its kind (int64, float32 or binary).

    ``where(i)`` names row ``i`` in the file; a value that does not fit ``kind`` raises an
    ``InputDataError`` naming the column, that row and the value.
    """
    import pyarrow as pa

    if kind == keys.BYTES:
        return pa.array(values.to_numpy(), type=pa.binary(), from_pandas=True)
    numbers = pd.to_numeric(values, errors="coerce")
    missing = numbers.isna().to_numpy()
    bad = missing & values.notna().to_numpy()
    if bad.any():
        _raise_bad_value(values, name, kind, np.flatnonzero(bad)[0], where,
                         "a number" if kind == keys.FLOAT else "an integer")
    if kind == keys.FLOAT:
        return pa.array(numbers.to_numpy(dtype=np.float32, na_value=np.nan), mask=missing)
    if numbers.dtype.kind != "i":
        floats = numbers.to_numpy(dtype=np.float64, na_value=0.0)
        bad = (floats != np.floor(floats)) | (np.abs(floats) > _INT64_MAX)
        if bad.any():
            _raise_bad_value(values, name, kind, np.flatnonzero(bad)[0], where,
                             "an integer")
        numbers = floats
    return pa.array(np.asarray(numbers, dtype=np.int64), mask=missing)


def _raise_bad_value(values, name, kind, i, where, expected):
    hint = (" If the column holds decimals, write one with a decimal point (e.g. '3.0') among its "
            "first rows so that it is read as FLOAT." if kind == keys.INT else "")
    raise InputDataError(
        f"Column '{name}' holds {kind} values (decided from its first {INFER_VALUES:,} values), but "
        f"{where(i)} has {values.iloc[i]!r}, which is not {expected}. Correct the value, leave the "
        f"cell empty for a missing value, or pass '{name}' in drop_columns.{hint}")
