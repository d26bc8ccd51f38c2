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
A chunk's column is read as :class:`Cells`, its distinct strings and which row holds which: each
distinct string is parsed once per chunk, and a row's number is its string's number.
"""

import dataclasses
import math
import re
from typing import Callable, Iterable, List, Optional, Union

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
class Cells:
    """One column of a chunk: row ``i`` holds ``values[index[i]]``, or is missing where ``index[i]`` is -1.

    ``values`` are the distinct strings (object array) that some row holds, ``counts`` how many rows
    hold each.
    """

    index: np.ndarray
    values: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, column) -> "Cells":
        """The cells of an Arrow string or dictionary array (null where missing) or a pandas Series (NaN)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(column, pd.Series):
            column = pa.array(column.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)
        index = column.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        values = np.asarray(column.dictionary.to_numpy(zero_copy_only=False), dtype=object)
        counts = np.bincount(index + 1, minlength=len(values) + 1)[1:]
        held = counts > 0
        if not held.all():  # a slice keeps its whole dictionary, and missing markers are in it
            index = np.where(index < 0, -1, (np.cumsum(held) - 1)[index])
            values, counts = values[held], counts[held]
        return cls(index, values, counts)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def n_present(self) -> int:
        return int(self.counts.sum())

    def first(self, flags: np.ndarray) -> int:
        """The first row whose value is flagged in ``flags`` (one per value; at least one row is)."""
        rows = np.flatnonzero(self.index >= 0)
        return int(rows[np.argmax(flags[self.index[rows]])])

    def take(self, per_value: np.ndarray, missing) -> np.ndarray:
        """Each row's entry of ``per_value`` (one per value), ``missing`` where the row is missing."""
        out = np.full(len(self.index), missing, dtype=per_value.dtype)
        present = self.index >= 0
        out[present] = per_value[self.index[present]]
        return out


@dataclasses.dataclass
class Parsed:
    """The numbers of a chunk's distinct strings (``pd.to_numeric``), and which of them are numbers."""

    values: np.ndarray
    numbers: pd.Series
    is_number: np.ndarray

    def of(self, cells: Cells) -> bool:
        """Whether these are the numbers of ``cells``' values."""
        return self.values is cells.values or (
            len(self.values) == len(cells.values) and bool((self.values == cells.values).all()))


def parse(values: np.ndarray) -> Parsed:
    """The numbers of distinct strings; an exponent beyond float64 is an infinite number."""
    raw = pd.Series(values, dtype=object)
    numbers = pd.to_numeric(raw, errors="coerce")
    is_number = numbers.notna().to_numpy()
    if not is_number.all():  # pandas gives up on exponents beyond float64 ('1e400'): infinite numbers
        overflow = raw.str.fullmatch(_BIG_EXPONENT).to_numpy(dtype=bool) & ~is_number
        if overflow.any():
            numbers = numbers.where(~overflow, np.inf)
            is_number |= overflow
    return Parsed(values, numbers, is_number)


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
    # The last observed chunk's distinct values as numbers, for ``to_arrow``.
    parsed: Optional[Parsed] = dataclasses.field(default=None, repr=False, compare=False)

    def observe(self, values: Union[Cells, pd.Series], where: Callable[[int], str]) -> None:
        """Counts one chunk of raw strings (or a Series, NaN where missing); ``where(i)`` names row ``i``."""
        cells = values if isinstance(values, Cells) else Cells.of(values)
        n_present = cells.n_present
        self.parsed = None
        if not n_present:
            return
        self.present += n_present
        parsed = parse(cells.values)
        numbers, is_number = parsed.numbers, parsed.is_number
        n_numbers = int(cells.counts[is_number].sum())
        self.numbers += n_numbers
        if n_numbers < n_present and self.first_text is None:
            row = cells.first(~is_number)
            self.first_text = _Cell(where(row), cells.values[cells.index[row]])
        if not n_numbers:
            return
        self.parsed = parsed
        if numbers.dtype.kind == "i":
            self.integers += n_numbers
            return
        number_strings = pd.Series(cells.values[is_number], dtype=object)
        number_counts = cells.counts[is_number]
        if self.integers == self.present - n_present:
            integer = number_strings.str.fullmatch(_INT_LITERAL).to_numpy(dtype=bool)
            for i in np.flatnonzero(integer & (number_strings.str.len().to_numpy() > _INT64_DIGITS)):
                integer[i] = _fits_int64(number_strings.iloc[i])
            self.integers += int(number_counts[integer].sum())
        # Otherwise an earlier value already made the column FLOAT or BYTES: the per-value integer
        # test can no longer change its kind.
        floats = numbers[is_number].to_numpy(dtype=np.float64)
        # An integer literal that fits int64 is below float32's maximum: only non-integers can be bad.
        bad = ~np.isfinite(floats) | (np.abs(floats) > FLOAT32_MAX)
        if bad.any():
            self.out_of_range += int(number_counts[bad].sum())
            if self.first_out_of_range is None:
                flags = np.zeros(len(cells.values), dtype=bool)
                flags[np.flatnonzero(is_number)[bad]] = True
                row = cells.first(flags)
                self.first_out_of_range = _Cell(where(row), cells.values[cells.index[row]])

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


def typed_values(cells: Cells, kind: Optional[str], parsed: Optional[Parsed] = None) -> np.ndarray:
    """The value of each of ``cells.values`` in ``kind``: int64, float32, or the string itself (BYTES, None).

    ``kind`` was decided by :class:`ColumnProfile` over every row, so every present value fits
    it. ``parsed`` is ``ColumnProfile.parsed`` for these same values, which saves parsing them again.
    """
    if kind is None or kind == keys.BYTES:
        return cells.values
    if parsed is not None and not parsed.of(cells):
        parsed = None
    if kind == keys.FLOAT:
        numbers = (pd.to_numeric(pd.Series(cells.values, dtype=object), errors="coerce") if parsed is None
                   else parsed.numbers)
        with np.errstate(over="ignore"):  # beyond float32: the profile rejects the column anyway
            return numbers.to_numpy(dtype=np.float64).astype(np.float32)
    if not len(cells.values):
        return np.zeros(0, dtype=np.int64)
    numbers = pd.to_numeric(pd.Series(cells.values, dtype=object)) if parsed is None else parsed.numbers
    if numbers.dtype.kind != "i":  # an integer literal beside a decimal one in the same chunk
        numbers = pd.Series([int(v) for v in cells.values], dtype=np.int64)
    return numbers.to_numpy(dtype=np.int64)


def to_arrow(values: Union[Cells, pd.Series], kind: Optional[str], parsed: Optional[Parsed] = None):
    """The column as a flat nullable Arrow array of its kind (int64, float32 or binary).

    As :func:`typed_values`, for each row; None (a column without any value so far) gives an
    all-null array.
    """
    import pyarrow as pa

    cells = values if isinstance(values, Cells) else Cells.of(values)
    missing = cells.index < 0
    per_value = typed_values(cells, kind, parsed)
    if kind is None or kind == keys.BYTES:
        return pa.array(per_value, type=pa.binary()).take(pa.array(cells.index, mask=missing))
    return pa.array(cells.take(per_value, 0), mask=missing)
