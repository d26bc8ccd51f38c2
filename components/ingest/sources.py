"""Finding the input files and reading them in chunks of raw strings.

Every cell comes out as a string, or NaN when it is missing, whatever the format, so that typing,
hashing and error messages work the same way for CSV and Parquet. The bytes of every file go
through one SHA-256 as they are read.

CSV files are read with Python's ``csv`` module (RFC 4180 quoting, strict), one physical line
at a time, so that every row knows the line it starts on: error messages name the line an
editor shows, whatever quoted line breaks, CRLF or CR line ends and blank lines come before it.
The text must be UTF-8 (a byte order mark is skipped). A cell is missing when it is empty or
one of ``na_values`` (exactly, case and spaces included); Parquet has real nulls, and a float NaN
is missing too, but its strings are taken as they are. A row with fewer cells than the header
gets missing values for the rest; more cells than the header is an error unless they are empty.
"""

import csv
import dataclasses
import gzip
import hashlib
import io
import os
import re
import zlib
from typing import BinaryIO, Iterable, Iterator, List, Optional

import numpy as np
import pandas as pd

from prodml.components.common import dataio, defaults
from prodml.components.common.arrow_text import as_strings
from prodml.components.common.errors import InputDataError
from prodml.components.common.logs import get_logger
from prodml.components.ingest import columns

log = get_logger(__name__)
_PARQUET_REMEDY = "Convert or flatten it, or pass it in drop_columns."

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_HASH_BLOCK = 1 << 20
# Python's csv module stops at 128 KiB per cell by default; long free-text cells exist.
FIELD_SIZE_LIMIT = 16 << 20
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


@dataclasses.dataclass
class Chunk:
    """Consecutive rows of one file: ``frame`` holds strings or NaN under sanitised names."""

    frame: pd.DataFrame
    file: str
    first_row: int  # 1-based index of the frame's first data row in its file
    lines: Optional[np.ndarray] = None  # CSV: the line each row starts on (the header is line 1 or later)

    def where(self, i: int) -> str:
        """Where row ``i`` of the frame is, in words a user can find in the file."""
        if self.lines is not None:
            return f"line {int(self.lines[i])} of {self.file}"
        return f"row {self.first_row + i} of {self.file}"


def missing_markers(na_values: Optional[Iterable[str]] = None) -> frozenset:
    """The cells read as missing: always the empty cell, plus ``na_values`` (default: defaults.NA_VALUES)."""
    markers = defaults.NA_VALUES if na_values is None else na_values
    if isinstance(markers, str):
        markers = [markers]
    return frozenset([""] + [str(m) for m in markers])


class Fingerprint:
    """SHA-256 and size of all input bytes, in the order they are read."""

    def __init__(self):
        self._sha = hashlib.sha256()
        self.size_bytes = 0

    def update(self, data: bytes) -> None:
        self._sha.update(data)
        self.size_bytes += len(data)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class _HashingReader(io.RawIOBase):
    """A raw binary stream that feeds every byte it reads to a Fingerprint."""

    def __init__(self, f: BinaryIO, fingerprint: Fingerprint):
        self._f = f
        self._fingerprint = fingerprint

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._f.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._fingerprint.update(data)
        return n

    def drain(self) -> None:
        while self.readinto(bytearray(_HASH_BLOCK)):
            pass


def _format(uri: str) -> Optional[str]:
    name = uri.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _open(uri: str) -> BinaryIO:
    if dataio.is_local(uri):
        return open(dataio.local_path(uri), "rb")
    return dataio.gfile().GFile(uri, "rb")


def _isdir(uri: str) -> bool:
    if dataio.is_local(uri):
        return os.path.isdir(dataio.local_path(uri))
    return dataio.gfile().isdir(uri)


def _glob(pattern: str) -> List[str]:
    if dataio.is_local(pattern):
        import glob

        return sorted(glob.glob(dataio.local_path(pattern)))
    return sorted(dataio.gfile().glob(pattern))


def resolve(data_uri: str) -> List[str]:
    """The input files of ``data_uri`` (a file, a glob or a folder), sorted, all of one format."""
    if any(c in data_uri for c in "*?["):
        files = [f for f in _glob(data_uri) if not _isdir(f)]
        if not files:
            raise InputDataError(f"No input file matches '{data_uri}'. Check the pattern and the path.")
    elif _isdir(data_uri):
        files = [f for f in _glob(dataio.join(data_uri, "*"))
                 if _format(f) and not os.path.basename(f.rstrip("/")).startswith((".", "_"))]
        if not files:
            raise InputDataError(
                f"The folder '{data_uri}' holds no .csv or .parquet file. Put the data files there "
                "or pass the path of one file.")
    elif dataio.exists(data_uri):
        files = [data_uri]
    else:
        raise InputDataError(f"Input file '{data_uri}' does not exist. Check the path (local path or "
                             "gs://, s3://, hdfs:// URI) and that this process can read it.")
    if len(files) == 1:
        return files  # a single file is read as CSV unless its name says Parquet
    unknown = [f for f in files if _format(f) is None]
    if unknown:
        raise InputDataError(f"Cannot tell the format of {unknown[0]}: name data files *.csv or *.parquet.")
    if len({_format(f) for f in files}) > 1:
        raise InputDataError(f"'{data_uri}' mixes CSV and Parquet files; keep one format per dataset.")
    return files


def read_chunks(files: List[str], chunk_rows: int, fingerprint: Fingerprint,
                na_values: Optional[Iterable[str]] = None) -> Iterator[Chunk]:
    """Yields non-empty chunks of every file in order; all files must have the first file's columns.

    CSV cells in :func:`missing_markers` of ``na_values`` are missing (NaN).
    """
    names: Optional[List[str]] = None
    markers = missing_markers(na_values)
    for uri in files:
        if _format(uri) == "parquet":
            chunks = _read_parquet(uri, chunk_rows, fingerprint)
        else:
            chunks = _read_csv(uri, chunk_rows, fingerprint, markers)
        for chunk_names, chunk in chunks:
            if names is None:
                names = chunk_names
            elif chunk_names != names:
                chunk.frame = _reorder(chunk.frame, names, files[0], uri)
            if len(chunk.frame):
                yield chunk


def _reorder(frame: pd.DataFrame, names: List[str], first_file: str, uri: str) -> pd.DataFrame:
    if sorted(frame.columns) != sorted(names):
        missing = sorted(set(names) - set(frame.columns))
        extra = sorted(set(frame.columns) - set(names))
        raise InputDataError(
            f"{uri} does not have the columns of {first_file}: missing {missing}, extra {extra}. "
            "All files of one dataset need the same header.")
    return frame[names]


def _read_csv(uri: str, chunk_rows: int, fingerprint: Fingerprint, markers: frozenset):
    with _open(uri) as f:
        raw = _HashingReader(f, fingerprint)
        binary = io.BufferedReader(raw, buffer_size=_HASH_BLOCK)
        compressed = uri.lower().endswith(".gz")
        if compressed:
            binary = gzip.GzipFile(fileobj=binary, mode="rb")
        try:
            yield from _parse_csv(uri, binary, chunk_rows, markers)
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            if not compressed:
                raise
            raise InputDataError(
                f"{uri} is not a complete gzip file ({e}): it is truncated or corrupt, and no row of it "
                "was used. Download or compress it again; 'gzip -t FILE' checks a .gz file.") from e
        raw.drain()


def _decoded_lines(binary: Iterable[bytes], uri: str) -> Iterator[str]:
    """The file's physical lines as text, line ends kept; a line that is not UTF-8 is an error."""
    number = 0
    for data in binary:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            context = data[max(0, e.start - 20):e.end + 20].decode("utf-8", errors="replace").strip()
            raise InputDataError(
                f"{uri} is not UTF-8 text: line {number + 1} has the byte 0x{data[e.start]:02x} "
                f"(in {context!r}). Save the file as UTF-8, e.g. 'iconv -f cp1252 -t utf-8 in.csv > "
                "out.csv' for a Windows or Latin-1 file.") from e
        if not number and text.startswith("\ufeff"):
            text = text[1:]
        # Old Mac files end lines with a lone CR: each is a line, as editors show it.
        for line in (_LONE_CR.split(text) if "\r" in text else (text,)):
            number += 1
            yield line


def _parse_csv(uri: str, binary, chunk_rows: int, markers: frozenset):
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
    reader = csv.reader(_decoded_lines(binary, uri), strict=True)
    names: Optional[List[str]] = None
    rows: List[List[str]] = []
    lines: List[int] = []
    end, first_row = 0, 1
    short, first_short = 0, 0  # rows with fewer cells than the header, padded
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if names is None:
                names = columns.sanitise_names(row, uri)
                continue
            if len(row) != len(names):
                if len(row) < len(names):
                    short, first_short = short + 1, first_short or start
                row = _fit(row, len(names), start, uri)
            rows.append(row)
            lines.append(start)
            if len(rows) == chunk_rows:
                yield names, _chunk(rows, lines, names, uri, first_row, markers)
                first_row += len(rows)
                rows, lines = [], []
    except csv.Error as e:
        raise InputDataError(
            f"Cannot parse {uri} as CSV: {e}, in the row that starts on line {end + 1} (read up to line "
            f"{reader.line_num}). Check the quoting there: a cell holding a comma, a quote or a line "
            'break is enclosed in double quotes, and a quote inside it is doubled ("").') from e
    if names is None:
        raise InputDataError(f"{uri} is empty: it needs a header line and at least one row.")
    if rows:
        yield names, _chunk(rows, lines, names, uri, first_row, markers)
    if short:
        log.warning("%d rows of %s have fewer cells than its %d columns (the first on line %d); their "
                    "last cells are read as missing.", short, uri, len(names), first_short)


def _fit(row: List[str], width: int, line: int, uri: str) -> List[str]:
    """``row`` with the header's number of cells: padded with missing cells, or cut if the rest is empty."""
    if len(row) < width:
        return row + [""] * (width - len(row))
    if any(cell.strip() for cell in row[width:]):
        raise InputDataError(
            f"Line {line} of {uri} has {len(row)} cells but the header has {width} columns. Quote cells "
            "that contain the separator (a comma), or add the missing column names to the header line.")
    return row[:width]


def _chunk(rows: List[List[str]], lines: List[int], names: List[str], uri: str, first_row: int,
           markers: frozenset) -> Chunk:
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    frame = frame.mask(frame.isin(markers))
    return Chunk(frame, uri, first_row, np.asarray(lines, dtype=np.int64))


def _read_parquet(uri: str, chunk_rows: int, fingerprint: Fingerprint):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _open(uri) as f:
        while True:  # Parquet needs random access, so its bytes are hashed in a pass of their own.
            block = f.read(_HASH_BLOCK)
            if not block:
                break
            fingerprint.update(block)
        f.seek(0)
        try:
            parquet = pq.ParquetFile(f)
            names = columns.sanitise_names(parquet.schema_arrow.names, uri)
            row = 1
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                frame = pd.DataFrame({n: as_strings(batch.column(i), n, uri, "ingest", _PARQUET_REMEDY)
                                      for i, n in enumerate(names)}, columns=names)
                frame = frame.mask(frame.isna() | (frame == ""))
                yield names, Chunk(frame, uri, row)
                row += len(frame)
        except (pa.ArrowException, OSError) as e:
            raise InputDataError(f"Cannot read {uri} as Parquet: {e}.") from e
