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

Most CSV files are plain: no quote, no CR, every line a row of the header's width. Such stretches
of a file are cut into rows by Arrow's tokenizer instead, a block of lines at a time, where every
line is one row, so the line numbers are known without reading lines one by one. A block that is
anything but plain (a quote, a CR, a blank, short or long line, bytes that are not UTF-8, a BOM)
goes to the ``csv`` module instead, so every rule above and every error message stays its own.

A chunk's cells are held dictionary-encoded (distinct strings and an index per row): typing,
hashing and encoding then work once per distinct value rather than once per cell.
"""

import csv
import dataclasses
import functools
import gzip
import hashlib
import io
import os
import re
import zlib
from typing import BinaryIO, Iterable, Iterator, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from prodml.components.common import dataio, defaults
from prodml.components.common.arrow_text import as_string_array
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
# The csv module reads the first block (it holds the header); later blocks may be plain.
FIRST_BLOCK = 1 << 16
BLOCK = 8 << 20
# Arrow skips a leading BOM, and reads a blank line as a row: such blocks go to the csv module.
_BOM = b"\xef\xbb\xbf"
_NOT_PLAIN = (b'"', b"\r", b"\x00", b"\n\n")
# A chunk's cells: each column's distinct strings and an index per row (null where missing).
STRINGS = pa.dictionary(pa.int32(), pa.string())
_EMPTY = pa.array([""], pa.string())


@dataclasses.dataclass
class Chunk:
    """Consecutive rows of one file: ``table`` holds strings (as STRINGS) or null under sanitised names."""

    table: pa.Table
    file: str
    first_row: int  # 1-based index of the table's first data row in its file
    lines: Optional[np.ndarray] = None  # CSV: the line each row starts on (the header is line 1 or later)

    @functools.cached_property
    def frame(self) -> pd.DataFrame:
        """The rows as a pandas frame of strings, NaN where missing."""
        data = {}
        for name, column in zip(self.table.column_names, self.table.columns):
            column = column.combine_chunks()
            values = column.dictionary_decode().to_numpy(zero_copy_only=False)
            values[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
            data[name] = values
        return pd.DataFrame(data, columns=self.table.column_names)

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
                chunk.table = _reorder(chunk.table, names, files[0], uri)
            if chunk.table.num_rows:
                yield chunk


def _reorder(table: pa.Table, names: List[str], first_file: str, uri: str) -> pa.Table:
    if sorted(table.column_names) != sorted(names):
        missing = sorted(set(names) - set(table.column_names))
        extra = sorted(set(table.column_names) - set(names))
        raise InputDataError(
            f"{uri} does not have the columns of {first_file}: missing {missing}, extra {extra}. "
            "All files of one dataset need the same header.")
    return table.select(names)


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


def _decode(data: bytes, number: int, uri: str) -> str:
    """One physical line as text, line end kept; ``number`` lines come before it. Not UTF-8 is an error."""
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
    return text


def _blocks(binary) -> Iterator[bytes]:
    """The bytes in blocks of whole lines (the last may lack its line end); the first block is small."""
    size, rest = FIRST_BLOCK, b""
    while True:
        data = binary.read(size)
        if not data:
            if rest:
                yield rest
            return
        data = rest + data
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            yield data[:cut]
            size = BLOCK


class _Lines:
    """A CSV file's physical lines, a block at a time, for the csv module or for :func:`_plain_rows`.

    The csv module pulls lines one by one from :meth:`lines`, which takes the next block itself when
    a row continues past its block. Between rows, once the csv module holds no line of the current
    block (``drained``), the parser may take the next block whole with :meth:`next_block`.
    """

    def __init__(self, binary, uri: str):
        self._blocks = _blocks(binary)
        self._uri = uri
        self._pending: List[bytes] = []
        self._next = 0
        self._texts: List[str] = []  # the lines a CR splits the current physical line into
        self.number = 0  # lines handed out so far (by either way)

    @property
    def drained(self) -> bool:
        return self._next >= len(self._pending) and not self._texts

    def next_block(self) -> Optional[bytes]:
        return next(self._blocks, None)

    def push(self, block: bytes) -> None:
        """Hands ``block`` to :meth:`lines`, line by line."""
        parts = block.split(b"\n")
        self._pending = [part + b"\n" for part in parts[:-1]]
        if parts[-1]:
            self._pending.append(parts[-1])
        self._next = 0

    def lines(self) -> Iterator[str]:
        """The lines as text, line ends kept."""
        while True:
            if self._texts:
                self.number += 1
                yield self._texts.pop(0)
                continue
            if self._next >= len(self._pending):
                block = self.next_block()
                if block is None:
                    return
                self.push(block)
            data = self._pending[self._next]
            self._next += 1
            text = _decode(data, self.number, self._uri)
            if "\r" in text:
                # Old Mac files end lines with a lone CR: each is a line, as editors show it.
                self._texts = _LONE_CR.split(text)
                continue
            self.number += 1
            yield text


def _plain_options(names: List[str]):
    from pyarrow import csv as arrow_csv

    return (arrow_csv.ReadOptions(column_names=names, use_threads=False, block_size=BLOCK),
            arrow_csv.ParseOptions(delimiter=",", quote_char=False, double_quote=False, escape_char=False,
                                   newlines_in_values=False, ignore_empty_lines=False),
            arrow_csv.ConvertOptions(column_types=dict.fromkeys(names, STRINGS), null_values=[],
                                     strings_can_be_null=False, quoted_strings_can_be_null=False,
                                     check_utf8=True))


def _plain_rows(block: bytes, names: List[str]) -> Optional[pa.Table]:
    """The rows of ``block`` if it is plain: each line a row of ``len(names)`` cells; else None.

    A plain line has no quote and no CR, so that the csv module would read it as one row, split at
    every comma. Arrow reads a blank line as a row of empty cells and skips a BOM, so those go to
    the csv module too; so does a one-column file, where a line of spaces is a blank line.
    """
    from pyarrow import csv as arrow_csv

    if (len(names) < 2 or len(block) >= FIELD_SIZE_LIMIT or block.startswith((b"\n", _BOM))
            or any(mark in block for mark in _NOT_PLAIN)):
        return None
    read, parse, convert = _plain_options(names)
    read.block_size = max(read.block_size, len(block) + 1)  # one block: a row never straddles two
    try:
        table = arrow_csv.read_csv(pa.py_buffer(block), read_options=read, parse_options=parse,
                                   convert_options=convert)
    except pa.ArrowException:
        return None  # a short or long row, or not UTF-8: the csv module says what and where
    lines = block.count(b"\n") + (not block.endswith(b"\n"))
    return table if table.num_rows == lines else None


class _Rows:
    """Rows gathered into chunks of ``chunk_rows``: row by row from the csv module, or tables of plain rows."""

    def __init__(self, names: List[str], uri: str, chunk_rows: int, markers: frozenset):
        self.names, self._uri, self._chunk_rows = names, uri, chunk_rows
        self._markers = pa.array(sorted(markers), pa.string())
        self._rows: List[List[str]] = []
        self._row_lines: List[int] = []
        self._tables: List[pa.Table] = []
        self._lines: List[np.ndarray] = []
        self._count = 0
        self._first_row = 1

    def add_row(self, row: List[str], line: int) -> bool:
        """Adds a row starting on ``line``; True when a chunk is full."""
        self._rows.append(row)
        self._row_lines.append(line)
        self._count += 1
        return self._count >= self._chunk_rows

    def add_table(self, table: pa.Table, first_line: int) -> bool:
        """Adds rows that start on consecutive lines from ``first_line``; True when a chunk is full."""
        self._flush_rows()
        self._tables.append(table)
        self._lines.append(np.arange(first_line, first_line + table.num_rows, dtype=np.int64))
        self._count += table.num_rows
        return self._count >= self._chunk_rows

    def chunks(self, final: bool = False) -> Iterator[Chunk]:
        """The full chunks gathered (and, if ``final``, the rest)."""
        self._flush_rows()
        if not self._tables:
            return
        table = pa.concat_tables(self._tables) if len(self._tables) > 1 else self._tables[0]
        lines = np.concatenate(self._lines) if len(self._lines) > 1 else self._lines[0]
        start, n = 0, table.num_rows
        while n - start >= self._chunk_rows or (final and start < n):
            size = min(self._chunk_rows, n - start)
            yield self._chunk(table.slice(start, size), lines[start:start + size])
            start += size
        self._tables = [table.slice(start)] if start < n else []
        self._lines = [lines[start:]] if start < n else []
        self._count = n - start

    def _flush_rows(self) -> None:
        if self._rows:
            columns_ = [pc.dictionary_encode(pa.array(cells, pa.string())) for cells in zip(*self._rows)]
            self._tables.append(pa.Table.from_arrays(columns_, self.names))
            self._lines.append(np.asarray(self._row_lines, dtype=np.int64))
            self._rows, self._row_lines = [], []

    def _chunk(self, table: pa.Table, lines: np.ndarray) -> Chunk:
        table = pa.Table.from_arrays([missing_as_null(column.combine_chunks(), self._markers)
                                      for column in table.columns], self.names)
        chunk = Chunk(table, self._uri, self._first_row, lines)
        self._first_row += table.num_rows
        return chunk


def missing_as_null(array: pa.DictionaryArray, markers: pa.Array) -> pa.DictionaryArray:
    """``array`` with its cells that are one of ``markers`` null."""
    is_marker = pc.is_in(array.dictionary, value_set=markers)
    if not pc.any(is_marker).as_py():
        return array
    missing = pc.take(is_marker, array.indices)
    if array.null_count:
        missing = pc.fill_null(missing, True)
    indices = pc.if_else(missing, pa.scalar(None, array.indices.type), array.indices)
    return pa.DictionaryArray.from_arrays(indices, array.dictionary)


def _parse_csv(uri: str, binary, chunk_rows: int, markers: frozenset):
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
    source = _Lines(binary, uri)
    reader = csv.reader(source.lines(), strict=True)
    names: Optional[List[str]] = None
    rows: Optional[_Rows] = None
    end = 0  # the line the last row ended on
    plain = 0  # lines read as plain rows, which reader.line_num does not count
    short, first_short = 0, 0  # rows with fewer cells than the header, padded
    try:
        while True:
            if source.drained:
                block = source.next_block()
                if block is None:
                    break
                table = _plain_rows(block, names) if names is not None else None
                if table is not None:
                    if rows.add_table(table, end + 1):
                        yield from ((names, chunk) for chunk in rows.chunks())
                    end += table.num_rows
                    plain += table.num_rows
                    source.number += table.num_rows
                    continue
                source.push(block)
            for row in reader:
                start, end = end + 1, plain + reader.line_num
                if row and (len(row) > 1 or row[0].strip()):  # else a blank line
                    if names is None:
                        names = columns.sanitise_names(row, uri)
                        rows = _Rows(names, uri, chunk_rows, markers)
                    else:
                        if len(row) != len(names):
                            if len(row) < len(names):
                                short, first_short = short + 1, first_short or start
                            row = _fit(row, len(names), start, uri)
                        if rows.add_row(row, start):
                            yield from ((names, chunk) for chunk in rows.chunks())
                if source.drained:
                    break
            else:
                break  # the end of the file
    except csv.Error as e:
        raise InputDataError(
            f"Cannot parse {uri} as CSV: {e}, in the row that starts on line {end + 1} (read up to line "
            f"{plain + reader.line_num}). Check the quoting there: a cell holding a comma, a quote or a line "
            'break is enclosed in double quotes, and a quote inside it is doubled ("").') from e
    if names is None:
        raise InputDataError(f"{uri} is empty: it needs a header line and at least one row.")
    yield from ((names, chunk) for chunk in rows.chunks(final=True))
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


def _read_parquet(uri: str, chunk_rows: int, fingerprint: Fingerprint):
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
                table = pa.Table.from_arrays(
                    [missing_as_null(pc.dictionary_encode(
                        as_string_array(batch.column(i), n, uri, "ingest", _PARQUET_REMEDY)), _EMPTY)
                     for i, n in enumerate(names)], names)
                yield names, Chunk(table, uri, row)
                row += table.num_rows
        except (pa.ArrowException, OSError) as e:
            raise InputDataError(f"Cannot read {uri} as Parquet: {e}.") from e
