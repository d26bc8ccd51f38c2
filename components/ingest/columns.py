"""Column names and kinds: sanitising names, deciding INT/FLOAT/BYTES over the whole file, encoding.

How a column's kind is decided (the same rule wherever a value sits in the file):

- Missing cells (empty, or one of the ``na_values`` markers) are ignored.
- INT when every present value is an integer literal (``-12``, ``+3``) that fits in int64;
  FLOAT when every present value is a number (``3.5``, ``1e-3``, ``3.0``, an integer beyond int64);
  BYTES when fewer than ``MOSTLY_NUMERIC`` of the present values are numbers.
- A column whose present values are at least ``MOSTLY_NUMERIC`` numbers but not all is an
  error naming the first cell that is not a number: it is nearly always a missing-value marker
  that ``na_values`` does not list (``?``, ``-``), or a typo, and reading the column as text
  would silently turn a numeric feature into a category.
- A numeric column must hold finite float32 numbers: ``inf``, ``-inf`` and values beyond
  +-3.4e38 are an error naming the cell (the predictor answers 400 for them, too).

The decision is made from counts over every row (:class:`ColumnProfile`), never from a sample.
"""

import dataclasses
import math
import re
from typing import Callable, Iterable, List, Optional

import numpy as np
import pandas as pd

from prodml.components.common import keys
from prodml.components.common.errors import InputDataError
from prodml.components.common.logs import get_logger

log = get_logger(__name__)

# Names a TF SavedModel signature accepts as input keys.
VALID_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/]*\Z")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9_.\-/]")
_INT_LITERAL = r"\s*[+-]?\d+\s*"
_BIG_EXPONENT = r"\s*[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d{3,}\s*"
_INT64_DIGITS = 18  # an integer literal with at most this many digits always fits in int64
FLOAT32_MAX = float(np.finfo(np.float32).max)
# At least this share of numbers among a column's present values makes the column numeric: any
# other value in it is an error rather than a reason to read the whole column as text.
MOSTLY_NUMERIC = 0.9
# Rows pipelines/preflight.py samples for its early checks (ingest itself reads every row).
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
            same = "are both named" if first_raw == raw else "would both be named"
            raise InputDataError(
                f"Columns {first_position} ({first_raw!r}) and {position} ({raw!r}) of {uri} {same} "
                f"'{name}'. Rename one of them in the header.")
        origin[name] = (position, raw)
        names.append(name)
    return names


@dataclasses.dataclass
class _Cell:
    where: str
    value: str


@dataclasses.dataclass
class ColumnProfile:
    """What a column holds, counted over every chunk: enough to decide its kind."""

    name: str
    present: int = 0
    numbers: int = 0
    integers: int = 0  # integer literals that fit in int64
    first_text: Optional[_Cell] = None  # the first present value that is not a number
    first_out_of_range: Optional[_Cell] = None  # the first number that is not a finite float32
    out_of_range: int = 0
    # The last observed chunk's present cells as numbers (index kept), for ``to_arrow``.
    parsed: Optional[pd.Series] = dataclasses.field(default=None, repr=False, compare=False)

    def observe(self, values: pd.Series, where: Callable[[int], str]) -> None:
        """Counts one chunk of raw strings (NaN where missing); ``where(i)`` names row ``i``."""
        present = values.notna().to_numpy()
        n_present = int(present.sum())
        self.parsed = None
        if not n_present:
            return
        self.present += n_present
        raw = values[present]
        numbers = pd.to_numeric(raw, errors="coerce")
        is_number = numbers.notna().to_numpy()
        if not is_number.all():  # pandas gives up on exponents beyond float64 ('1e400'): infinite numbers
            overflow = raw.str.fullmatch(_BIG_EXPONENT).to_numpy(dtype=bool) & ~is_number
            if overflow.any():
                numbers = numbers.where(~overflow, np.inf)
                is_number |= overflow
        n_numbers = int(is_number.sum())
        self.numbers += n_numbers
        rows = np.flatnonzero(present)
        if n_numbers < n_present and self.first_text is None:
            i = int(np.flatnonzero(~is_number)[0])
            self.first_text = _Cell(where(int(rows[i])), raw.iloc[i])
        if not n_numbers:
            return
        if numbers.dtype.kind == "i":
            self.integers += n_numbers
            self.parsed = numbers
            return
        number_strings = raw[is_number]
        if self.integers == self.present - n_present:
            integer = number_strings.str.fullmatch(_INT_LITERAL).to_numpy(dtype=bool)
            for i in np.flatnonzero(integer & (number_strings.str.len().to_numpy() > _INT64_DIGITS)):
                integer[i] = _fits_int64(number_strings.iloc[i])
            self.integers += int(integer.sum())
        # Otherwise an earlier value already made the column FLOAT or BYTES: the per-cell integer
        # test (the costliest part of a FLOAT column) can no longer change its kind.
        floats = numbers[is_number].to_numpy(dtype=np.float64)
        self.parsed = numbers
        # An integer literal that fits int64 is below float32's maximum: only non-integers can be bad.
        bad = ~np.isfinite(floats) | (np.abs(floats) > FLOAT32_MAX)
        if bad.any():
            self.out_of_range += int(bad.sum())
            if self.first_out_of_range is None:
                i = int(np.flatnonzero(bad)[0])
                row = int(rows[np.flatnonzero(is_number)[i]])
                self.first_out_of_range = _Cell(where(row), number_strings.iloc[i])

    def provisional_kind(self) -> Optional[str]:
        """The kind the rows counted so far allow, without errors; None while the column is empty."""
        if not self.present:
            return None
        if self.numbers < self.present:
            return keys.BYTES
        return keys.INT if self.integers == self.present else keys.FLOAT

    def kind(self, markers: Iterable[str] = ()) -> Optional[str]:
        """The column's kind (None if it has no value); an InputDataError if it cannot have one.

        ``markers`` are the missing-value markers in use, quoted in the error so that the user can
        extend the list (``na_values`` replaces it) rather than lose the defaults.
        """
        kind = self.provisional_kind()
        if kind == keys.BYTES and self.numbers >= MOSTLY_NUMERIC * self.present:
            cell = self.first_text
            others = self.present - self.numbers
            raise InputDataError(
                f"Column '{self.name}' holds numbers in {self.numbers:,} of its {self.present:,} non-empty "
                f"cells, but {cell.where} has {cell.value!r}"
                + (f" ({others - 1:,} more {'cell is not a number' if others == 2 else 'cells are not numbers'} "
                   "either)" if others > 1 else "")
                + f". If {cell.value!r} marks a missing value, add it to the markers: na_values "
                f"(--na-values) replaces the list, so give {_extended(markers, cell.value)}; "
                f"otherwise correct the cell, or pass '{self.name}' in drop_columns. A column is read as "
                f"text only when fewer than {MOSTLY_NUMERIC:.0%} of its cells are numbers.")
        if kind in (keys.INT, keys.FLOAT) and self.first_out_of_range is not None:
            cell = self.first_out_of_range
            more = f" ({self.out_of_range - 1:,} more such cells)" if self.out_of_range > 1 else ""
            raise InputDataError(
                f"Column '{self.name}' is numeric, but {cell.where} has {cell.value!r}, which is not a "
                f"finite float32 number (at most {FLOAT32_MAX:.4g} in magnitude){more}. Replace it with a "
                f"finite value, leave the cell empty for a missing value, or pass '{self.name}' in "
                "drop_columns.")
        return kind


def _extended(markers: Iterable[str], value: str) -> str:
    """The ``--na-values`` argument that keeps ``markers`` and adds ``value``."""
    listed = ",".join(sorted(m for m in set(markers) | {value} if m))
    return f"--na-values='{listed}'"


def _fits_int64(literal: str) -> bool:
    try:
        return -(2 ** 63) <= int(literal) < 2 ** 63
    except ValueError:
        return False


def to_arrow(values: pd.Series, kind: Optional[str], parsed: Optional[pd.Series] = None):
    """The column as a flat nullable Arrow array of its kind (int64, float32 or binary).

    ``kind`` was decided by :class:`ColumnProfile` over every row, so every present value fits
    it; None (a column without any value so far) gives an all-null array. ``parsed`` is
    ``ColumnProfile.parsed`` for these same values, which saves parsing them again.
    """
    import pyarrow as pa

    if kind is None or kind == keys.BYTES:
        return pa.array(values.to_numpy(), type=pa.binary(), from_pandas=True)
    missing = values.isna().to_numpy()
    present = values[~missing]
    if parsed is not None and len(parsed) != len(present):
        parsed = None
    if kind == keys.FLOAT:
        numbers = np.zeros(len(values), dtype=np.float32)
        with np.errstate(over="ignore"):  # beyond float32: the profile rejects the column anyway
            numbers[~missing] = (pd.to_numeric(present, errors="coerce") if parsed is None
                                 else parsed).to_numpy(dtype=np.float64)
        return pa.array(numbers, mask=missing)
    numbers = np.zeros(len(values), dtype=np.int64)
    if len(present):
        parsed = pd.to_numeric(present) if parsed is None else parsed
        if parsed.dtype.kind != "i":  # an integer literal beside a decimal one in the same chunk
            parsed = pd.Series([int(v) for v in present], dtype=np.int64)
        numbers[~missing] = parsed.to_numpy(dtype=np.int64)
    return pa.array(numbers, mask=missing)
