"""Finding the input files and reading them in chunks of raw strings.

Every cell comes out as a string, or NaN when it is empty, whatever the format, so that typing,
hashing and error messages work the same way for CSV and Parquet. The bytes of every file go
through one SHA-256 as they are read, so the data is read once.
"""

import dataclasses
import gzip
import hashlib
import io
import os
from typing import BinaryIO, Iterator, List, Optional

import numpy as np
import pandas as pd

from prodml.components.common import dataio
from prodml.components.common.errors import InputDataError
from prodml.components.ingest import columns

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_HASH_BLOCK = 1 << 20


@dataclasses.dataclass
class Chunk:
    """Consecutive rows of one file: ``frame`` holds strings or NaN under sanitised names."""

    frame: pd.DataFrame
    file: str
    first_row: int  # 1-based index of the frame's first data row in its file
    is_csv: bool

    def where(self, i: int) -> str:
        """Where row ``i`` of the frame is, in words a user can find in the file."""
        row = self.first_row + i
        if self.is_csv:
            # The header is line 1; exact unless quoted cells span lines or blank lines exist.
            return f"line {row + 1} of {self.file}"
        return f"row {row} of {self.file}"


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


def read_chunks(files: List[str], chunk_rows: int, fingerprint: Fingerprint) -> Iterator[Chunk]:
    """Yields non-empty chunks of every file in order; all files must have the first file's columns."""
    names: Optional[List[str]] = None
    for uri in files:
        reader = _read_parquet if _format(uri) == "parquet" else _read_csv
        for chunk_names, chunk in reader(uri, chunk_rows, fingerprint):
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


def _read_csv(uri: str, chunk_rows: int, fingerprint: Fingerprint):
    with _open(uri) as f:
        raw = _HashingReader(f, fingerprint)
        binary = io.BufferedReader(raw, buffer_size=_HASH_BLOCK)
        if uri.lower().endswith(".gz"):
            binary = gzip.GzipFile(fileobj=binary)
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        yield from _parse_csv(uri, text, chunk_rows)
        raw.drain()


def _parse_csv(uri: str, text, chunk_rows: int):
    try:
        # header=None: the header row comes back as data so that we name columns ourselves
        # (pandas would rename duplicates silently).
        reader = pd.read_csv(text, header=None, dtype=str, keep_default_na=False,
                             na_values=[""], chunksize=chunk_rows, skip_blank_lines=True)
        names, row = None, 1
        for frame in reader:
            if names is None:
                names = columns.sanitise_names(frame.iloc[0].tolist(), uri)
                frame = frame.iloc[1:]
            frame.columns = names
            frame.reset_index(drop=True, inplace=True)
            yield names, Chunk(frame, uri, row, is_csv=True)
            row += len(frame)
    except pd.errors.EmptyDataError as e:
        raise InputDataError(f"{uri} is empty: it needs a header line and at least one row.") from e
    except pd.errors.ParserError as e:
        raise InputDataError(f"Cannot parse {uri} as CSV: {e}. Check the quoting and that every "
                             "line has as many fields as the header.") from e
    except UnicodeDecodeError as e:
        raise InputDataError(f"{uri} is not UTF-8 text ({e}). Save it as UTF-8 CSV.") from e
    if names is None:
        raise InputDataError(f"{uri} is empty: it needs a header line and at least one row.")


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
                frame = pd.DataFrame({n: _as_strings(batch.column(i), n, uri)
                                      for i, n in enumerate(names)}, columns=names)
                frame = frame.mask(frame.isna() | (frame == ""))
                yield names, Chunk(frame, uri, row, is_csv=False)
                row += len(frame)
        except (pa.ArrowException, OSError) as e:
            raise InputDataError(f"Cannot read {uri} as Parquet: {e}.") from e


def _as_strings(array, name: str, uri: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_nested(array.type):
        raise InputDataError(f"Column '{name}' of {uri} has the nested type {array.type}; ingest reads "
                             "flat columns only. Flatten it or pass it in drop_columns.")
    if pa.types.is_boolean(array.type):
        array = pc.cast(array, pa.int8())
    try:
        strings = pc.cast(array, pa.string())
    except pa.ArrowException as e:
        raise InputDataError(f"Column '{name}' of {uri} ({array.type}) cannot be read as text: {e}. "
                             "Convert it or pass it in drop_columns.") from e
    return strings.to_numpy(zero_copy_only=False)
