"""Served traffic, streamed: request-log JSON lines, CloudEvents files or batch-prediction outputs.

Whatever the source, the reader yields :class:`Chunk` objects of at most ``chunk_rows`` rows: one
flat Arrow array per raw feature (null = missing), the predictions, the timestamps, the join keys
(``request_id`` and every pass-through key) and the model name and version of each row. Memory is
bounded by the chunk, never by the window.

Sources (``traffic_uri``, a local path or any ``tf.io.gfile`` URI):

- a file, together with its rotated siblings ``path.1``, ``path.2``... (older first);
- a folder (every file in it but hidden ones and ``_SUCCESS``);
- a glob (``logs/*.jsonl``).

Formats, by extension and then by the first line:

- request log (Contract 1 of issue 10): one JSON object per line with ``timestamp``, ``model_name``,
  ``model_version``, ``request_id``, ``row``, ``passthrough``, ``features``, ``prediction``; parsed
  with Arrow's JSON reader a chunk of lines at a time. A chunk Arrow refuses is parsed line by line:
  a line that is not a JSON object is skipped, counted, and named (file and line number);
- CloudEvents files: the events a sink received, one per line in structured mode (``id``, ``type``,
  ``time``, ``data``; ``ce-`` prefixed attribute names are read too). A request event
  (``{"instances": [...]}``) and the response event with the same id (``{"predictions": [...],
  "model_name", "model_version", "request_ids"}``) make the rows. Instances are whole request-log
  records when prodml's server sent them (``serving/request_log.py``), or the raw feature dicts of
  KServe's own logger (name, version, time and ids then come from the events);
- batch-prediction outputs (``.parquet``, ``.csv``, or JSON lines without ``features``): the carried
  input columns are the features (a feature batch_predict did not carry is absent, and the report
  says so), ``probability_<class>`` / ``predicted_<label>`` the prediction, ``model_version`` and
  ``request_id`` as written by batch_predict. Batch outputs have no timestamps: a time window does
  not apply to them.
"""

import dataclasses
import glob as globlib
import io
import os
import re
from typing import Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import pyarrow as pa

from prodml.components.common import artifacts, dataio, keys
from prodml.components.common.errors import InputDataError

REQUEST_LOG, CLOUDEVENTS, BATCH = "request log", "CloudEvents", "batch predictions"
REQUEST_ID = "request_id"
ROW = "row"                     # index of the row inside its request
_SKIPPED_FILES = ("_SUCCESS",)
_ROTATED = re.compile(r"\.(\d+)$")
_PROBE_BYTES = 64 << 10      # the first read, to learn the average line length
_MIN_BLOCK_BYTES = 64 << 10
# Arrow's JSON reader parses ISO 8601 times into this (an offset is applied, none means UTC); a block
# with a time it cannot parse goes to the line-by-line reader, which keeps it as a string (_times).
_TIMESTAMP = pa.timestamp("ns", tz="UTC")


@dataclasses.dataclass
class Chunk:
    """Up to ``chunk_rows`` served rows, column-wise."""

    features: Dict[str, pa.Array]          # raw feature -> flat array (int64, float32 or string), null = missing
    predictions: np.ndarray                # [n] float64, or [n, classes] for multiclass
    times: Optional[np.ndarray]            # [n] datetime64[ns] UTC, or None (batch outputs)
    join_keys: Dict[str, np.ndarray]       # request_id and pass-through keys -> object array of str or None
    model_names: np.ndarray                # [n] object
    versions: np.ndarray                   # [n] int64 (-1 when unknown)

    @property
    def rows(self) -> int:
        return len(self.versions)

    def in_window(self, start: Optional[np.datetime64], end: Optional[np.datetime64]) -> Optional[np.ndarray]:
        """Which rows were logged in [start, end) (UTC; either bound may be None); None when rows have no time."""
        if self.times is None:
            return None
        inside = ~np.isnat(self.times)
        if start is not None:
            inside &= self.times >= start
        if end is not None:
            inside &= self.times < end
        return inside

    def take(self, mask: np.ndarray) -> "Chunk":
        """The rows where ``mask`` is true."""
        where = pa.array(mask)
        return Chunk({k: v.filter(where) for k, v in self.features.items()}, self.predictions[mask],
                     None if self.times is None else self.times[mask],
                     {k: v[mask] for k, v in self.join_keys.items()}, self.model_names[mask], self.versions[mask])


@dataclasses.dataclass
class Counts:
    """What the reader saw besides the rows it yields."""

    files: List[str] = dataclasses.field(default_factory=list)
    formats: Dict[str, str] = dataclasses.field(default_factory=dict)   # file -> format
    lines: int = 0                         # records read (and every line of a block parsed line by line)
    malformed: int = 0
    malformed_examples: List[str] = dataclasses.field(default_factory=list)
    type_mismatches: Dict[str, int] = dataclasses.field(default_factory=dict)  # feature -> values of the wrong type
    features_absent: List[str] = dataclasses.field(default_factory=list)  # batch outputs that did not carry them
    unpaired_events: int = 0

    def bad_line(self, where: str, problem: str, keep: int) -> None:
        self.malformed += 1
        if len(self.malformed_examples) < keep:
            self.malformed_examples.append(f"{where}: {problem}")


def list_files(traffic_uri: str) -> List[str]:
    """The files of a traffic source, oldest first; InputDataError when there are none."""
    fs = _FileSystem(traffic_uri)
    if any(c in traffic_uri for c in "*?["):
        files = sorted(fs.glob(traffic_uri))
    elif dataio.exists(traffic_uri) and fs.isdir(traffic_uri):
        files = [dataio.join(traffic_uri, name) for name in sorted(fs.listdir(traffic_uri))
                 if not name.startswith((".", "_")) and name not in _SKIPPED_FILES
                 and not fs.isdir(dataio.join(traffic_uri, name))]
        files = _rotation_order(files)
    elif dataio.exists(traffic_uri):
        folder, name = traffic_uri.rsplit("/", 1) if "/" in traffic_uri else (".", traffic_uri)
        rotated = [dataio.join(folder, n) for n in fs.listdir(folder)
                   if n.startswith(name + ".") and _ROTATED.search(n[len(name):])]
        files = _rotation_order(rotated + [traffic_uri])
    else:
        files = []
    if not files:
        raise InputDataError(f"No traffic at {traffic_uri}: give a request-log file (its rotated files path.1, "
                             "path.2... are read too), a folder, a glob such as 'logs/*.jsonl', or a batch "
                             "prediction output folder.")
    return files


class _FileSystem:
    """Listing a local path with os (no TensorFlow import), any other URI with tf.io.gfile."""

    def __init__(self, uri: str):
        self.local = dataio.is_local(uri)

    def glob(self, pattern: str) -> List[str]:
        return globlib.glob(dataio.local_path(pattern)) if self.local else dataio.gfile().glob(pattern)

    def isdir(self, uri: str) -> bool:
        return os.path.isdir(dataio.local_path(uri)) if self.local else dataio.gfile().isdir(uri)

    def listdir(self, uri: str) -> List[str]:
        return os.listdir(dataio.local_path(uri)) if self.local else dataio.gfile().listdir(uri)


def _rotation_order(files: List[str]) -> List[str]:
    """Rotated files (``x.3``, ``x.2``, ``x.1``) before ``x``: oldest first; other files by name."""
    def key(path: str) -> Tuple[str, int]:
        match = _ROTATED.search(path)
        return (path[:match.start()], -int(match.group(1))) if match else (path, 0)
    return sorted(files, key=key)


def detect_format(path: str) -> str:
    """REQUEST_LOG, CLOUDEVENTS or BATCH, from the extension and then the first non-empty line."""
    lower = _ROTATED.sub("", path.lower())
    if lower.endswith((".parquet", ".csv")):
        return BATCH
    with _open(path) as f:
        first = b""
        for line in f:
            if line.strip():
                first = line.strip()
                break
    if not first:
        return REQUEST_LOG  # empty: yields nothing either way
    import orjson

    try:
        record = orjson.loads(first)
    except orjson.JSONDecodeError:
        return REQUEST_LOG  # the line-by-line reader names it
    if isinstance(record, dict) and ("specversion" in record or "ce-specversion" in record):
        return CLOUDEVENTS
    if isinstance(record, dict) and "features" not in record and "prediction" not in record:
        return BATCH
    return REQUEST_LOG


def read(files: List[str], model: artifacts.ModelInfo, chunk_rows: int, counts: Counts,
         keep_examples: int, join_key: str = "") -> Iterator[Chunk]:
    """Every row of ``files`` in chunks (see the module docstring); ``counts`` collects the rest.

    ``join_key`` names the key labels are joined on: request logs are parsed for it (request_id and
    row, or the pass-through keys) only when it is given, which keeps the parse lean otherwise.
    """
    for path in files:
        fmt = detect_format(path)
        counts.files.append(path)
        counts.formats[path] = fmt
        if fmt == REQUEST_LOG:
            yield from _read_request_log(path, model, chunk_rows, counts, keep_examples, join_key)
        elif fmt == CLOUDEVENTS:
            yield from _read_cloudevents(path, model, chunk_rows, counts, keep_examples)
        else:
            yield from _read_batch(path, model, chunk_rows, counts)


# ---- request log -------------------------------------------------------------------------------

def _arrow_type(kind: str) -> pa.DataType:
    return pa.string() if kind == keys.BYTES else pa.float64()


def _log_schema(model: artifacts.ModelInfo, with_request_ids: bool) -> pa.Schema:
    prediction = pa.list_(pa.float64()) if model.label.problem_type == keys.MULTICLASS else pa.float64()
    ids = [(REQUEST_ID, pa.string()), (ROW, pa.int64())] if with_request_ids else []
    return pa.schema([
        ("timestamp", _TIMESTAMP), ("model_name", pa.string()), ("model_version", pa.int64()), *ids,
        ("features", pa.struct([(name, _arrow_type(kind)) for name, kind in model.raw_features.items()])),
        ("prediction", prediction)])


def _open(path: str):
    """A local file natively (fast reads), anything else through tf.io.gfile."""
    return open(dataio.local_path(path), "rb") if dataio.is_local(path) else dataio.gfile().GFile(path, "rb")


def _line_blocks(path: str, chunk_rows: int) -> Iterator[Tuple[int, bytes]]:
    """(byte offset, block of whole lines), about ``chunk_rows`` lines each.

    Blocks are cut by size (from the average length of the first lines), always at a line end, so no
    line is split and memory is bounded by the block. A local file is read block by block at known
    offsets (each byte copied once, as Arrow's own file reader would); other URIs through tf.io.gfile.
    """
    if dataio.is_local(path):
        yield from _local_blocks(dataio.local_path(path), chunk_rows)
        return
    offset, buffer, block_bytes = 0, b"", 0
    with _open(path) as f:
        while True:
            data = f.read(max((block_bytes or _PROBE_BYTES) - len(buffer), 1 << 16))
            buffer = buffer + data if buffer else data
            if not block_bytes and buffer:
                block_bytes = _block_bytes(buffer, chunk_rows)
            if not data:
                if buffer.strip():
                    yield offset, buffer if buffer.endswith(b"\n") else buffer + b"\n"
                return
            if len(buffer) < block_bytes:
                continue
            cut = buffer.rfind(b"\n") + 1
            if not cut:
                continue  # one line longer than a block: read on
            block, buffer = buffer[:cut], buffer[cut:]
            yield offset, block
            offset += cut


def _local_blocks(path: str, chunk_rows: int) -> Iterator[Tuple[int, Union[bytes, pa.Buffer]]]:
    """Blocks of a local file as zero-copy slices of a memory map (Arrow parses them in place).

    Each block maps the file anew and closes the map once parsed (Arrow unmaps when its last slice
    is freed), so the pages read do not stay in the process's memory for the whole file.
    """
    with open(path, "rb", buffering=0) as f:
        fd, size = f.fileno(), os.fstat(f.fileno()).st_size
        block_bytes = _block_bytes(os.pread(fd, _PROBE_BYTES, 0), chunk_rows)
        offset = 0
        while offset < size:
            end = min(offset + block_bytes, size)
            while end < size:  # move the cut to the end of the line it falls in
                probe = os.pread(fd, 1 << 16, end)
                at = probe.find(b"\n")
                if at >= 0:
                    end += at + 1
                    break
                end += len(probe)
            if end == size and not os.pread(fd, 1, end - 1).endswith(b"\n"):
                block = os.pread(fd, end - offset, offset) + b"\n"  # the last line, unterminated: a copy once
                yield offset, block
            else:
                with pa.memory_map(path) as mapped:
                    mapped.seek(offset)
                    yield offset, mapped.read_buffer(end - offset)
            offset = end


def _block_bytes(head: bytes, chunk_rows: int) -> int:
    average = len(head) / max(head.count(b"\n"), 1)
    return max(_MIN_BLOCK_BYTES, int(average * chunk_rows))


def _line_number(path: str, offset: int) -> int:
    """The number of the line starting at byte ``offset`` (read again: only needed to name a bad line)."""
    newlines, read = 0, 0
    with _open(path) as f:
        while read < offset:
            data = f.read(min(8 << 20, offset - read))
            if not data:
                break
            newlines += data.count(b"\n")
            read += len(data)
    return newlines + 1


def _read_request_log(path: str, model: artifacts.ModelInfo, chunk_rows: int, counts: Counts,
                      keep: int, join_key: str) -> Iterator[Chunk]:
    import pyarrow.json as pj

    # Pass-through keys have no declared type: inferred, and only when labels are joined on one.
    passthrough = bool(join_key) and join_key not in (REQUEST_ID, ROW)
    options = pj.ParseOptions(explicit_schema=_log_schema(model, join_key in (REQUEST_ID, ROW)),
                              unexpected_field_behavior="infer" if passthrough else "ignore")
    for offset, block in _line_blocks(path, chunk_rows):
        try:
            table = pj.read_json(pa.BufferReader(block), parse_options=options)
            counts.lines += table.num_rows
        except pa.ArrowInvalid:
            # Arrow names neither the line nor keeps the good ones: find the bad lines one by one.
            block = block.to_pybytes() if isinstance(block, pa.Buffer) else block
            counts.lines += block.count(b"\n")
            table = _parse_lines(path, _line_number(path, offset), block, model, counts, keep)
        if table.num_rows:
            yield _chunk_from_log(table, model, counts)


def _parse_lines(path: str, first_line: int, block: bytes, model: artifacts.ModelInfo, counts: Counts,
                 keep: int) -> pa.Table:
    """The block's good records as a table; malformed lines counted and named."""
    import orjson

    records = []
    for offset, line in enumerate(block.split(b"\n")):
        if not line.strip():
            continue
        where = f"{path} line {first_line + offset}"
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            counts.bad_line(where, f"not JSON ({e}): {_preview(line)}", keep)
            continue
        if not isinstance(record, dict) or not isinstance(record.get("features"), dict):
            counts.bad_line(where, f"not a request-log record (no 'features' object): {_preview(line)}", keep)
            continue
        records.append(record)
    return _records_to_table(records, model, counts)


def _records_to_table(records: List[dict], model: artifacts.ModelInfo, counts: Counts) -> pa.Table:
    """Request-log records as the table Arrow's reader would give; a value of the wrong type is missing."""
    features = {}
    for name, kind in model.raw_features.items():
        values = []
        for record in records:
            value = record["features"].get(name)
            if value is not None and not _fits(value, kind):
                counts.type_mismatches[name] = counts.type_mismatches.get(name, 0) + 1
                value = None
            values.append(value)
        features[name] = pa.array(values, _arrow_type(kind))
    multiclass = model.label.problem_type == keys.MULTICLASS
    predictions = [_number_or_none(r.get("prediction"), multiclass) for r in records]
    columns = {
        "timestamp": pa.array([_str_or_none(r.get("timestamp")) for r in records], pa.string()),  # see _times
        "model_name": pa.array([_str_or_none(r.get("model_name")) for r in records], pa.string()),
        "model_version": pa.array([r.get("model_version") if isinstance(r.get("model_version"), int) else None
                                   for r in records], pa.int64()),
        REQUEST_ID: pa.array([_str_or_none(r.get(REQUEST_ID)) for r in records], pa.string()),
        ROW: pa.array([r.get(ROW) if isinstance(r.get(ROW), int) else None for r in records], pa.int64()),
        "features": pa.StructArray.from_arrays(list(features.values()), list(features)) if features
        else pa.array([{}] * len(records)),
        "prediction": pa.array(predictions, pa.list_(pa.float64()) if multiclass else pa.float64()),
    }
    passthrough = sorted({k for r in records if isinstance(r.get("passthrough"), dict) for k in r["passthrough"]})
    if passthrough:
        columns["passthrough"] = pa.StructArray.from_arrays(
            [pa.array([_str_or_none((r.get("passthrough") or {}).get(k)) for r in records], pa.string())
             for k in passthrough], passthrough)
    return pa.table(columns)


def _fits(value, kind: str) -> bool:
    if kind == keys.BYTES:
        return isinstance(value, str)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_or_none(value, multiclass: bool):
    if multiclass:
        return [float(v) for v in value] if isinstance(value, list) and all(
            isinstance(v, (int, float)) for v in value) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str_or_none(value) -> Optional[str]:
    return None if value is None else str(value)


def _preview(line: bytes, limit: int = 80) -> str:
    text = line.decode("utf-8", "replace").strip()
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _chunk_from_log(table: pa.Table, model: artifacts.ModelInfo, counts: Counts) -> Chunk:
    table = table.combine_chunks()
    struct = table.column("features").chunk(0) if table.column("features").num_chunks else None
    flat = dict(zip([f.name for f in struct.type], struct.flatten())) if struct is not None else {}
    features = {name: _typed(flat.get(name), kind, name, table.num_rows, counts)
                for name, kind in model.raw_features.items()}
    join_keys = {name: _strings(table.column(name)) for name in (REQUEST_ID, ROW) if name in table.column_names}
    if "passthrough" in table.column_names:
        column = table.column("passthrough")
        if column.num_chunks and pa.types.is_struct(column.type):
            struct = column.chunk(0)
            for field, values in zip(struct.type, struct.flatten()):
                join_keys[field.name] = _strings(values)
    return Chunk(features, _predictions(table.column("prediction"), model), _times(table.column("timestamp")),
                 join_keys, np.asarray(table.column("model_name").to_numpy(), dtype=object),
                 np.asarray(table.column("model_version").fill_null(-1).to_numpy(), np.int64))


def _typed(values: Optional[pa.Array], kind: str, name: str, n: int, counts: Counts) -> pa.Array:
    """A flat feature column as TFDV should see it: int64 for INT, float32 for FLOAT, "" strings missing."""
    import pyarrow.compute as pc

    if values is None:
        return pa.nulls(n, pa.string() if kind == keys.BYTES else (pa.int64() if kind == keys.INT else pa.float32()))
    if kind == keys.BYTES:
        values = values.cast(pa.string())
        return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    values = values.cast(pa.float64())
    if kind == keys.FLOAT:
        # As a tf.Example float_list (and TFDV's CSV decoder) holds them: the training statistics saw float32.
        return values.cast(pa.float32(), safe=False)
    try:
        return pc.cast(values, pa.int64())  # whole numbers (the usual case): Arrow casts, nulls kept
    except pa.ArrowInvalid:
        pass  # a fraction: counted and made missing below
    numbers = values.to_numpy(zero_copy_only=False)
    fractional = np.isfinite(numbers) & (numbers != np.round(numbers))
    if fractional.any():
        counts.type_mismatches[name] = counts.type_mismatches.get(name, 0) + int(fractional.sum())
    missing = ~np.isfinite(numbers) | fractional
    return pa.array(np.where(missing, 0, numbers).astype(np.int64), pa.int64(), mask=missing)


def _strings(values) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    return values.cast(pa.string()).to_numpy(zero_copy_only=False)


def _predictions(column: pa.ChunkedArray, model: artifacts.ModelInfo) -> np.ndarray:
    if model.label.problem_type == keys.MULTICLASS:
        n_classes = len(model.label.classes or [])
        rows = column.to_pylist()
        return np.array([r if r is not None and len(r) == n_classes else [np.nan] * n_classes for r in rows],
                        np.float64).reshape(len(rows), n_classes)
    return column.to_numpy().astype(np.float64) if column.null_count == 0 else np.asarray(
        column.to_pandas(), np.float64)


def _times(column: pa.ChunkedArray) -> np.ndarray:
    """datetime64[ns] UTC (NaT = none): parsed by Arrow's reader already, or strings from the line-by-line one."""
    import pandas as pd

    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("ns")).to_numpy()
    values = pd.to_datetime(column.to_pandas(), utc=True, errors="coerce")
    return values.dt.tz_localize(None).to_numpy("datetime64[ns]")


# ---- CloudEvents -------------------------------------------------------------------------------

def _read_cloudevents(path: str, model: artifacts.ModelInfo, chunk_rows: int, counts: Counts,
                      keep: int) -> Iterator[Chunk]:
    """Request and response events paired by id; each pair's rows become request-log records."""
    import orjson

    requests: Dict[str, Tuple[dict, str]] = {}
    responses: Dict[str, dict] = {}
    records: List[dict] = []
    with dataio.gfile().GFile(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            counts.lines += 1
            where = f"{path} line {number}"
            try:
                event = orjson.loads(line)
                attributes = {k[3:] if k.startswith("ce-") else k: v for k, v in event.items()}
                event_id, event_type, data = str(attributes["id"]), str(attributes["type"]), attributes["data"]
                if isinstance(data, (str, bytes)):
                    data = orjson.loads(data)
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                counts.bad_line(where, f"not a CloudEvent with id, type and data ({type(e).__name__}: {e}): "
                                       f"{_preview(line)}", keep)
                continue
            if event_type.endswith(".request"):
                requests[event_id] = (data, str(attributes.get("time", "")))
            elif event_type.endswith(".response"):
                responses[event_id] = data
            for done in requests.keys() & responses.keys():
                records += _event_rows(done, *requests.pop(done), responses.pop(done), model)
            if len(records) >= chunk_rows:
                yield _chunk_from_log(_records_to_table(records, model, counts), model, counts)
                records = []
    counts.unpaired_events += len(requests) + len(responses)
    if records:
        yield _chunk_from_log(_records_to_table(records, model, counts), model, counts)


def _event_rows(event_id: str, request: dict, time: str, response: dict, model: artifacts.ModelInfo) -> List[dict]:
    """Request-log records of one request/response pair.

    prodml's server sends each instance as a whole request-log record (see serving/request_log.py);
    KServe's logger sends the raw instances, which are the features, and the rest comes from the events.
    """
    instances = request.get("instances") or []
    predictions = response.get("predictions") or []
    ids = response.get("request_ids") or []
    rows = []
    for i, (instance, prediction) in enumerate(zip(instances, predictions)):
        instance = instance if isinstance(instance, dict) else {}
        record = isinstance(instance.get("features"), dict)
        version = instance.get("model_version") if record else None
        version = version if version is not None else response.get("model_version")
        rows.append({"timestamp": (instance.get("timestamp") if record else None) or time,
                     "model_name": (instance.get("model_name") if record else None) or response.get("model_name"),
                     "model_version": int(version) if str(version).isdigit() else None,
                     REQUEST_ID: (instance.get(REQUEST_ID) if record else None)
                     or (ids[i] if i < len(ids) else event_id),
                     ROW: instance.get(ROW, i) if record else i,
                     "passthrough": (instance.get("passthrough") if record else None) or {},
                     "features": instance["features"] if record else instance, "prediction": prediction})
    return rows


# ---- batch predictions -------------------------------------------------------------------------

def _read_batch(path: str, model: artifacts.ModelInfo, chunk_rows: int, counts: Counts) -> Iterator[Chunk]:
    lower = _ROTATED.sub("", path.lower())
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        # A local part is read batch by batch; a remote one (one batch_predict task's rows) is fetched whole.
        if dataio.is_local(path):
            source = dataio.local_path(path)
        else:
            with dataio.gfile().GFile(path, "rb") as f:
                source = pa.BufferReader(f.read())
        for batch in pq.ParquetFile(source).iter_batches(batch_size=chunk_rows):
            counts.lines += batch.num_rows
            yield _chunk_from_batch(pa.Table.from_batches([batch]), model, counts)
        return
    if lower.endswith(".csv"):
        import pyarrow.csv as pcsv

        types = {name: _arrow_type(kind) for name, kind in model.raw_features.items()}
        types[REQUEST_ID] = pa.string()
        with dataio.gfile().GFile(path, "rb") as f:
            stream = dataio.local_path(path) if dataio.is_local(path) else io.BufferedReader(_RawGFile(f))
            reader = pcsv.open_csv(stream, read_options=pcsv.ReadOptions(block_size=1 << 22),
                                   convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True))
            for batch in reader:
                counts.lines += batch.num_rows
                yield _chunk_from_batch(pa.Table.from_batches([batch]), model, counts)
        return
    import pyarrow.json as pj

    for _, block in _line_blocks(path, chunk_rows):
        table = pj.read_json(pa.BufferReader(block))
        counts.lines += table.num_rows
        yield _chunk_from_batch(table, model, counts)


class _RawGFile(io.RawIOBase):
    """A tf.io.gfile file as a stream Arrow can read from (GFile lacks ``closed`` and ``readinto``)."""

    def __init__(self, gfile):
        self._file = gfile

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._file.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _chunk_from_batch(table: pa.Table, model: artifacts.ModelInfo, counts: Counts) -> Chunk:
    table = table.combine_chunks()
    n = table.num_rows
    absent = [name for name in model.raw_features if name not in table.column_names]
    for name in absent:
        if name not in counts.features_absent:
            counts.features_absent.append(name)
    features = {name: _typed(_column(table, name), kind, name, n, counts)
                for name, kind in model.raw_features.items()}
    join_keys = {name: _strings(table.column(name)) for name in table.column_names
                 if name not in model.raw_features and not name.startswith(("probability_", "predicted_"))
                 and name != "model_version"}
    versions = (np.asarray(table.column("model_version").cast(pa.int64()).fill_null(-1).to_numpy())
                if "model_version" in table.column_names else np.full(n, -1, np.int64))
    return Chunk(features, batch_predictions(table, model.label), None, join_keys,
                 np.full(n, None, dtype=object), versions.astype(np.int64))


def _column(table: pa.Table, name: str) -> Optional[pa.Array]:
    if name not in table.column_names:
        return None
    column = table.column(name)
    return column.chunk(0) if column.num_chunks else pa.array([], column.type)


def batch_predictions(table: pa.Table, label: artifacts.Label) -> np.ndarray:
    """The model's predictions back from batch_predict's columns (see batch_predict's core.prediction_columns)."""
    def numbers(name: str) -> np.ndarray:
        if name not in table.column_names:
            raise InputDataError(f"The batch predictions have no column '{name}': they are not the output of "
                                 f"batch_predict for a model of label '{label.name}' ({label.problem_type}).")
        return np.asarray(table.column(name).cast(pa.float64()).to_pandas(), np.float64)

    if label.problem_type == keys.REGRESSION:
        return numbers(f"predicted_{label.name}")
    if label.problem_type == keys.BINARY:
        return numbers(f"probability_{label.classes[1]}")
    return np.stack([numbers(f"probability_{c}") for c in label.classes], axis=1)


def columns_seen(chunk: Chunk) -> Mapping[str, int]:
    """Rows with a value, per feature."""
    return {name: len(values) - values.null_count for name, values in chunk.features.items()}
