"""Input files for batch prediction: finding them, cutting them into tasks, reading a task as raw text.

Formats: CSV (``.csv``, ``.csv.gz``; a single file of another name is read as CSV), Parquet
(``.parquet``, ``.pq``) and gzipped ``tf.Example`` TFRecord files (``.tfrecord.gz``, ``.tfrecords.gz``,
as ingest writes them). A ``data_uri`` is a file, a folder of files of one format, or a glob, on a
local path or any ``tf.io.gfile`` URI.

:func:`plan` reads every byte once in the driver: it computes the SHA-256 of the input, exactly
as ingest does (the bytes of every file, in sorted order), and cuts the input into
:class:`Task` s of about ``rows_per_task`` rows that workers read independently. An uncompressed
CSV is cut at record boundaries: a newline ends a record when the count of ``"`` before it is even
(RFC 4180 quoting), so quoted newlines never split a row. A Parquet file is cut by row groups. A
gzipped file cannot be entered in the middle, so it is one task.

Every cell comes out as text, or None when absent, so that :mod:`core` treats all formats alike.
"""

import csv
import dataclasses
import gzip
import hashlib
import io
import itertools
import json
import os
import re
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple

import numpy as np

from prodml.components.batch_predict.core import Chunk
from prodml.components.common import dataio
from prodml.components.common.arrow_text import as_string_array
from prodml.components.common.errors import InputDataError

CSV, PARQUET, TFRECORD = "csv", "parquet", "tfrecord"
_SUFFIXES = {CSV: (".csv", ".csv.gz"), PARQUET: (".parquet", ".pq"),
             TFRECORD: (".tfrecord.gz", ".tfrecords.gz", ".tfrecord", ".tfrecords")}
_BLOCK = 4 << 20
_QUOTE, _NEWLINE = ord('"'), ord("\n")

# The rule ingest uses to turn a header cell into a column name (a valid signature input name);
# tests/components/test_batch_predict.py checks that both give the same names.
_VALID_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/]*\Z")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9_.\-/]")


def sanitise(name: str) -> str:
    """A header cell as ingest names the column: invalid characters become ``_``."""
    if _VALID_NAME.match(name):
        return name
    name = _INVALID_CHAR.sub("_", name)
    return name if _VALID_NAME.match(name) else "col" + name


@dataclasses.dataclass(frozen=True)
class Task:
    """A part of one input file that a worker reads on its own.

    CSV: bytes ``[start, end)``, whose first record is data row ``first_row`` on line
    ``first_line`` (``end`` is -1 for "to the end", e.g. a gzipped file). Parquet: row groups
    ``[start, end)``. TFRecord: the whole file.
    """

    index: int
    file: str
    format: str
    start: int
    end: int
    first_row: int
    first_line: int = 0


@dataclasses.dataclass
class Plan:
    """The tasks of an input, its columns (sanitised header), and its fingerprint."""

    files: List[str]
    format: str
    columns: List[str]
    tasks: List[Task]
    sha256: str
    size_bytes: int
    rows: Optional[int]  # known from the plan for CSV and Parquet


def format_of(uri: str) -> Optional[str]:
    name = uri.lower()
    for fmt, suffixes in _SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    return None


def resolve(data_uri: str) -> Tuple[List[str], str]:
    """The input files of ``data_uri`` (file, folder or glob), sorted, and their one format."""
    if not data_uri:
        raise InputDataError("No input data given: pass a file, a folder or a glob (--data).")
    if any(c in data_uri for c in "*?["):
        files = [f for f in _glob(data_uri) if not _isdir(f)]
        if not files:
            raise InputDataError(f"No input file matches '{data_uri}'. Check the pattern and the path.")
    elif _isdir(data_uri):
        files = [f for f in _glob(dataio.join(data_uri, "*"))
                 if format_of(f) and not os.path.basename(f.rstrip("/")).startswith((".", "_"))]
        if not files:
            raise InputDataError(f"The folder '{data_uri}' holds no .csv, .parquet or .tfrecord.gz file. Put "
                                 "the data files there or pass the path of one file.")
    elif dataio.exists(data_uri):
        files = [data_uri]
    else:
        raise InputDataError(f"Input file '{data_uri}' does not exist. Check the path (local path or gs://, "
                             "s3://, hdfs:// URI) and that this process can read it.")
    formats = {format_of(f) or CSV for f in files} if len(files) == 1 else {format_of(f) for f in files}
    if None in formats:
        unknown = next(f for f in files if format_of(f) is None)
        raise InputDataError(f"Cannot tell the format of {unknown}: name data files *.csv, *.parquet or "
                             "*.tfrecord.gz.")
    if len(formats) > 1:
        raise InputDataError(f"'{data_uri}' mixes {' and '.join(sorted(formats))} files; keep one format per "
                             "dataset.")
    return files, formats.pop()


def plan(data_uri: str, rows_per_task: int) -> Plan:
    """Resolves ``data_uri``, fingerprints it and cuts it into tasks (see the module docstring)."""
    files, fmt = resolve(data_uri)
    sha, size = hashlib.sha256(), 0
    tasks: List[Task] = []
    columns: Optional[List[str]] = None
    rows: Optional[int] = 0
    for uri in files:
        if fmt == CSV and not uri.lower().endswith(".gz"):
            names, file_tasks, file_rows, n_bytes = _plan_csv(uri, rows_per_task, sha, len(tasks))
        elif fmt == CSV:
            n_bytes = _hash_file(uri, sha)
            names, file_tasks, file_rows = _csv_header(uri), [Task(len(tasks), uri, CSV, -1, -1, 1, 2)], None
        elif fmt == PARQUET:
            n_bytes = _hash_file(uri, sha)
            names, file_tasks, file_rows = _plan_parquet(uri, rows_per_task, len(tasks))
        else:
            n_bytes = _hash_file(uri, sha)
            names, file_tasks, file_rows = None, [Task(len(tasks), uri, TFRECORD, 0, -1, 1)], None
        size += n_bytes
        if names is not None:
            if columns is None:
                columns = names
            elif sorted(names) != sorted(columns):
                raise InputDataError(
                    f"{uri} does not have the columns of {files[0]}: missing {sorted(set(columns) - set(names))}, "
                    f"extra {sorted(set(names) - set(columns))}. All files of one dataset need the same header.")
        tasks += file_tasks
        rows = None if rows is None or file_rows is None else rows + file_rows
    return Plan(files, fmt, columns or [], tasks, sha.hexdigest(), size, rows)


def read_task(task: Task, chunk_rows: int) -> Iterator[Chunk]:
    """The rows of one task as chunks of at most ``chunk_rows`` rows (or fewer for CSV byte ranges)."""
    if task.format == CSV:
        yield from _read_csv(task, chunk_rows)
    elif task.format == PARQUET:
        yield from _read_parquet(task, chunk_rows)
    else:
        yield from _read_tfrecord(task, chunk_rows)


# ---- files ---------------------------------------------------------------------------------------

def _open(uri: str) -> BinaryIO:
    try:
        if dataio.is_local(uri):
            return open(dataio.local_path(uri), "rb")
        return dataio.gfile().GFile(uri, "rb")
    except OSError as e:
        raise InputDataError(f"Cannot open {uri}: {e.strerror or e}. Check that this process can read it.") from e


def _isdir(uri: str) -> bool:
    if dataio.is_local(uri):
        return os.path.isdir(dataio.local_path(uri))
    return dataio.gfile().isdir(uri)


def _glob(pattern: str) -> List[str]:
    if dataio.is_local(pattern):
        import glob

        return sorted(glob.glob(dataio.local_path(pattern)))
    return sorted(dataio.gfile().glob(pattern))


def _hash_file(uri: str, sha) -> int:
    size = 0
    with _open(uri) as f:
        while True:
            block = f.read(_BLOCK)
            if not block:
                return size
            sha.update(block)
            size += len(block)


# ---- CSV -----------------------------------------------------------------------------------------

def _record_ends(data: np.ndarray, quotes_before: int,
                 newlines: Optional[np.ndarray] = None) -> Tuple[np.ndarray, int]:
    """Offsets of the newlines that end a record in ``data``, and the parity of the quotes up to its end.

    ``newlines`` (the offsets of every newline in ``data``) saves finding them again.
    """
    if newlines is None:
        newlines = np.flatnonzero(data == _NEWLINE)
    is_quote = data == _QUOTE
    if not is_quote.any():
        return (newlines if quotes_before % 2 == 0 else newlines[:0]), quotes_before
    # Only the parity matters, so a uint8 running count (it wraps at 256, an even number) will do.
    quotes = np.cumsum(is_quote, dtype=np.uint8)
    ends = newlines[(quotes[newlines] + quotes_before) % 2 == 0]
    return ends, (quotes_before + int(quotes[-1])) % 2


def _blank(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Which records ``[start, end)`` (end at the newline) are blank lines."""
    length = ends - starts
    cr = np.zeros(len(starts), dtype=bool)
    one = length == 1
    cr[one] = data[starts[one]] == ord("\r")
    return (length == 0) | cr


def _plan_csv(uri: str, rows_per_task: int, sha, first_index: int):
    """Header names, tasks, data rows and size of an uncompressed CSV file, in one pass."""
    tasks: List[Task] = []
    names: Optional[List[str]] = None
    header = bytearray()
    offset = quotes = rows = lines = 0
    task_start = task_row = task_line = 0
    record_start = 0   # file offset where the current record starts
    with _open(uri) as f, _Hasher(sha) as hasher:
        while True:
            block = f.read(_BLOCK)
            if not block:
                break
            hasher.update(block)
            data = np.frombuffer(block, dtype=np.uint8)
            newline_pos = np.flatnonzero(data == _NEWLINE)
            ends, quotes = _record_ends(data, quotes, newline_pos)
            if names is None:
                header += block[: int(ends[0]) + 1] if len(ends) else block
                if len(ends):
                    names = _header_names(bytes(header), uri)
                    record_start = task_start = offset + int(ends[0]) + 1
                    task_row, task_line = 1, lines + int(np.searchsorted(newline_pos, ends[0], side="right")) + 1
                    ends = ends[1:]
            if names is not None and len(ends):
                starts = np.concatenate([[record_start - offset], ends[:-1] + 1])
                # A record that began in an earlier block (start < 0) is not blank.
                blank = _blank(data, np.maximum(starts, 0), ends) & (starts >= 0)
                kept = ends[~blank]
                # A task ends after every rows_per_task-th data row of the file (rows are numbered from 1).
                numbers = np.arange(rows + 1, rows + 1 + len(kept))
                last_of_task = numbers % rows_per_task == 0
                for end, number in zip(kept[last_of_task].tolist(), numbers[last_of_task].tolist()):
                    stop = offset + end + 1
                    tasks.append(Task(first_index + len(tasks), uri, CSV, task_start, stop, task_row, task_line))
                    task_start, task_row = stop, number + 1
                    task_line = lines + int(np.searchsorted(newline_pos, end, side="right")) + 1
                rows += len(kept)
                record_start = offset + int(ends[-1]) + 1
            lines += len(newline_pos)
            offset += len(block)
    if names is None:
        if not header.strip():
            raise InputDataError(f"{uri} is empty: it needs a header line and at least one row.")
        return _header_names(bytes(header), uri), [], 0, offset
    if record_start < offset and _has_record(uri, record_start, offset):
        rows += 1  # a last record without a newline
    if task_start < offset and rows >= task_row:
        tasks.append(Task(first_index + len(tasks), uri, CSV, task_start, offset, task_row, task_line))
    return names, tasks, rows, offset


class _Hasher:
    """Feeds blocks to a hash in a helper thread, so hashing overlaps with finding the records.

    hashlib releases the GIL on large blocks. At most one block is being hashed while the next is
    read, so memory stays at two blocks; the blocks reach the hash in order.
    """

    def __init__(self, sha):
        from concurrent.futures import ThreadPoolExecutor

        self._sha = sha
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prodml-sha256")
        self._pending = None

    def update(self, block: bytes) -> None:
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._sha.update, block)

    def __enter__(self) -> "_Hasher":
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._pending is not None and exc[0] is None:
                self._pending.result()
        finally:
            self._pool.shutdown(wait=True)


def _has_record(uri: str, start: int, end: int) -> bool:
    """True when bytes ``[start, end)`` of a file (its end, without a newline) are a record."""
    with _open(uri) as f:
        f.seek(start)
        return not _is_blank(f.read(end - start))


def _is_blank(record: bytes) -> bool:
    return record in (b"", b"\n", b"\r\n", b"\r")


def _header_names(header: bytes, uri: str) -> List[str]:
    try:
        text = header.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputDataError(f"The header of {uri} is not UTF-8 text ({e.reason}). Save the file as UTF-8 "
                             "CSV.") from e
    cells = next(csv.reader([text.rstrip("\r\n")]), [])
    names = []
    for position, cell in enumerate(cells, start=1):
        cell = cell.strip()
        names.append(sanitise(cell) if cell else f"column_{position}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputDataError(f"The header of {uri} names the column '{duplicates[0]}' twice. Rename one of them.")
    return names


def _csv_header(uri: str) -> List[str]:
    with _open(uri) as raw, gzip.GzipFile(fileobj=raw) as f:
        try:
            line = f.readline()
        except (OSError, EOFError) as e:
            raise InputDataError(f"Cannot read {uri} as gzip ({e}); the file is truncated or not gzipped.") from e
    if not line.strip():
        raise InputDataError(f"{uri} is empty: it needs a header line and at least one row.")
    return _header_names(line, uri)


def _read_csv(task: Task, chunk_rows: int) -> Iterator[Chunk]:
    if task.end >= 0:
        with _open(task.file) as f:
            f.seek(task.start)
            data = f.read(task.end - task.start)
        yield from _csv_chunks(task, [data], chunk_rows)
        return
    with _open(task.file) as raw, gzip.GzipFile(fileobj=raw) as f:
        try:
            f.readline()  # the header
            yield from _csv_chunks(task, iter(lambda: f.read(_BLOCK), b""), chunk_rows)
        except (OSError, EOFError) as e:
            raise InputDataError(f"Cannot read {task.file} as gzip ({e}); the file is truncated or not "
                                 "gzipped.") from e


def _csv_chunks(task: Task, blocks, chunk_rows: int) -> Iterator[Chunk]:
    """Splits CSV bytes into records and yields chunks of parsed rows (records may span blocks).

    Record boundaries, blank lines and line numbers are found with numpy over whole regions; no
    Python code runs per record unless a record breaks the format.
    """
    names = _task_names(task)
    pending = b""
    row, line = task.first_row, task.first_line
    for block in itertools.chain(blocks, [None]):
        if block is None:
            region, pending = pending, b""
            if _is_blank(region):
                break
            last = True
        else:
            region = pending + block
            last = False
        data = np.frombuffer(region, dtype=np.uint8)
        # A region starts at a record boundary, so its quote count starts even.
        ends, _ = _record_ends(data, 0)
        if last and (not len(ends) or ends[-1] != len(data) - 1):
            ends = np.append(ends, len(data))  # the last record has no newline
        if not len(ends):
            pending = region
            continue
        stop = int(ends[-1]) + 1
        pending = b"" if last else region[stop:]
        starts = np.concatenate([[0], ends[:-1] + 1])
        newlines = np.flatnonzero(data[:stop] == _NEWLINE)
        record_lines = line + np.searchsorted(newlines, starts)
        keep = ~_blank(data, starts, np.minimum(ends, len(data)))
        starts, ends, record_lines = starts[keep], ends[keep], record_lines[keep]
        for a in range(0, len(starts), chunk_rows):
            b = min(a + chunk_rows, len(starts))
            yield _parse_records(task, names, region, starts[a:b], ends[a:b], record_lines[a:b], row)
            row += b - a
        line += len(newlines)
        if last:
            break


_NAMES_CACHE: Dict[str, List[str]] = {}


def _task_names(task: Task) -> List[str]:
    if task.file not in _NAMES_CACHE:
        if task.file.lower().endswith(".gz"):
            _NAMES_CACHE[task.file] = _csv_header(task.file)
        else:
            with _open(task.file) as f:
                _NAMES_CACHE[task.file] = _header_names(f.readline(), task.file)
    return _NAMES_CACHE[task.file]


def _parse_records(task: Task, names: List[str], region: bytes, starts: np.ndarray, ends: np.ndarray,
                   lines: np.ndarray, first_row: int) -> Chunk:
    """Records ``[start, end]`` of ``region`` → a chunk: Arrow's CSV parser when every record is well
    formed, else record by record."""
    text = RecordText(region, starts, ends)
    rows = np.arange(first_row, first_row + len(starts))
    cells = _parse_with_arrow(names, region[int(starts[0]):int(ends[-1]) + 1], len(starts))
    if cells is not None:
        return Chunk(task.file, cells, text, rows, lines)
    return _parse_one_by_one(task, names, [text.record(i) for i in range(len(text))], lines, first_row)


def _parse_with_arrow(names: List[str], data: bytes, n_records: int):
    """Every cell as Arrow text (C speed); None when a record breaks the format (then it is found one by one).

    Blank lines between the records are skipped by Arrow as they are by the record splitter.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=names, use_threads=False,
                                          block_size=max(1 << 20, len(data) + 1)),
            parse_options=pcsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if table.num_rows != n_records:
        return None
    return {name: table.column(i).combine_chunks() for i, name in enumerate(names)}


class RecordText:
    """Each record's text as read, decoded only when asked (for a dead letter)."""

    def __init__(self, region: bytes, starts: np.ndarray, ends: np.ndarray):
        self._region, self._starts, self._ends = region, starts, ends

    def __len__(self) -> int:
        return len(self._starts)

    def record(self, i: int) -> bytes:
        return self._region[int(self._starts[i]):int(self._ends[i]) + 1]

    def __getitem__(self, i: int) -> str:
        return self.record(i).decode("utf-8", errors="replace").rstrip("\r\n")


def _parse_one_by_one(task: Task, names: List[str], records: List[bytes], lines: List[int],
                      first_row: int) -> Chunk:
    n, width = len(records), len(names)
    raw: List[str] = []
    broken: Dict[int, str] = {}
    fields: List[List[str]] = []
    for i, record in enumerate(records):
        try:
            text = record.decode("utf-8")
        except UnicodeDecodeError as e:
            text = record.decode("utf-8", errors="replace")
            broken[i] = f"the row is not UTF-8 text ({e.reason} at byte {e.start})"
        text = text.rstrip("\r\n")
        raw.append(text)
        if '"' in text:
            cells = next(csv.reader([text]), [])
        else:
            cells = text.split(",")
        if len(cells) != width and i not in broken:
            broken[i] = f"the row has {len(cells)} fields, the header {width}"
        fields.append(cells if len(cells) == width else [None] * width)
    columns = {}
    for j, name in enumerate(names):
        col = np.empty(n, dtype=object)
        col[:] = [f[j] for f in fields]
        columns[name] = col
    return Chunk(task.file, columns, raw, np.arange(first_row, first_row + n), np.array(lines), broken)


# ---- Parquet -------------------------------------------------------------------------------------

def _plan_parquet(uri: str, rows_per_task: int, first_index: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with _open(uri) as f:
            meta = pq.ParquetFile(f).metadata
            names = [sanitise(n) for n in meta.schema.to_arrow_schema().names]
    except (pa.ArrowException, OSError) as e:
        raise InputDataError(f"Cannot read {uri} as Parquet: {e}.") from e
    tasks, start, rows_in_task, row = [], 0, 0, 1
    for group in range(meta.num_row_groups):
        rows_in_task += meta.row_group(group).num_rows
        if rows_in_task >= rows_per_task or group == meta.num_row_groups - 1:
            tasks.append(Task(first_index + len(tasks), uri, PARQUET, start, group + 1, row))
            row += rows_in_task
            start, rows_in_task = group + 1, 0
    return names, tasks, meta.num_rows


def _read_parquet(task: Task, chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = task.first_row
    with _open(task.file) as f:
        try:
            parquet = pq.ParquetFile(f)
            names = [sanitise(n) for n in parquet.schema_arrow.names]
            for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=range(task.start, task.end)):
                cells = {n: as_string_array(batch.column(i), n, task.file, "batch prediction")
                         for i, n in enumerate(names)}
                yield Chunk(task.file, cells, LazyRaw(cells, batch.num_rows), np.arange(row, row + batch.num_rows))
                row += batch.num_rows
        except (pa.ArrowException, OSError) as e:
            raise InputDataError(f"Cannot read {task.file} as Parquet: {e}.") from e


class LazyRaw:
    """A row's raw text, built only when asked (for a dead letter): the row as a JSON object."""

    def __init__(self, cells: Dict[str, np.ndarray], n: int):
        self._cells, self._n = cells, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> str:
        return json.dumps({name: col[i].as_py() for name, col in self._cells.items()}, default=str)


# ---- TFRecord ------------------------------------------------------------------------------------

def _read_tfrecord(task: Task, chunk_rows: int) -> Iterator[Chunk]:
    """Gzipped (or plain) tf.Example records; an absent feature is an absent cell."""
    import tensorflow as tf
    from google.protobuf import json_format

    compression = "GZIP" if task.file.lower().endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset([task.file], compression_type=compression).batch(chunk_rows)
    row = task.first_row
    try:
        for batch in dataset.as_numpy_iterator():
            examples = [tf.train.Example.FromString(b) for b in batch]
            names = sorted({k for e in examples for k in e.features.feature})
            cells = {n: np.full(len(examples), None, dtype=object) for n in names}
            broken: Dict[int, str] = {}
            for i, example in enumerate(examples):
                for name, feature in example.features.feature.items():
                    kind = feature.WhichOneof("kind")
                    values = list(getattr(feature, kind).value) if kind else []
                    if len(values) > 1:
                        broken.setdefault(i, f"feature '{name}' has {len(values)} values; one is scored per row")
                    elif values:
                        value = values[0]
                        cells[name][i] = (value.decode("utf-8", errors="replace") if isinstance(value, bytes)
                                          else repr(value) if isinstance(value, float) else str(value))
            raw = [json_format.MessageToJson(e, indent=None) for e in examples]
            yield Chunk(task.file, cells, raw, np.arange(row, row + len(examples)), None, broken)
            row += len(examples)
    except tf.errors.DataLossError as e:
        raise InputDataError(f"Cannot read {task.file}: {e.message}. It must be a gzipped TFRecord file of "
                             "tf.Example, as ingest writes them.") from e
