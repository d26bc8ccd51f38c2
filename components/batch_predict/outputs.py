"""The prediction set on disk: checked before work, written in parts, published atomically.

Layout of a published prediction set (``output_uri``)::

    part-00000.parquet   one file per task, in input order (or .csv / .jsonl)
    _SUCCESS             written last: the run's summary as JSON (rows, errors, model version, data SHA-256)

Workers write their parts into a staging folder beside the output (``.<name>.staging-<id>``),
each part under a temporary name renamed when whole. On a local disk the staging folder is then
renamed onto ``output_uri`` in one step, so consumers see no prediction set or a complete one. On
object stores (gs://, s3://), which cannot rename a folder, the parts are copied into
``output_uri`` and ``_SUCCESS`` is written last: consumers wait for ``_SUCCESS``, as they do for
Spark and Hadoop output. A failed or killed run leaves only a staging folder (``prodml gc``
material), never a partial set at ``output_uri``.
"""

import os
import posixpath
import shutil
import socket
import time
import uuid
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from prodml.components.batch_predict.core import REQUEST_ID_COLUMN
from prodml.components.common import dataio
from prodml.components.common.errors import ConfigError, InputDataError

PARQUET, CSV, JSONL = "parquet", "csv", "jsonl"
FORMATS = (PARQUET, CSV, JSONL)
EXTENSIONS = {PARQUET: ".parquet", CSV: ".csv", JSONL: ".jsonl"}
SUCCESS_FILE = "_SUCCESS"
TASKS_DIR = "_tasks"          # per-task summaries, in staging only
STAGING_INFIX = ".staging-"
OWNER_FILE = "owner.json"
UNIQUE_COLUMNS = (REQUEST_ID_COLUMN,)  # one value per row


def check_format(output_format: str) -> str:
    """The format name, lower case; ConfigError lists the formats."""
    fmt = (output_format or PARQUET).lower()
    if fmt == "json":
        fmt = JSONL
    if fmt not in FORMATS:
        raise ConfigError(f"Output format '{output_format}' is not supported: use {', '.join(FORMATS)}.")
    return fmt


def is_empty(uri: str) -> bool:
    """True when nothing is at ``uri``, or an empty folder."""
    if not dataio.exists(uri):
        return True
    if dataio.is_local(uri):
        path = dataio.local_path(uri)
        return os.path.isdir(path) and not os.listdir(path)
    return dataio.gfile().isdir(uri) and not dataio.gfile().listdir(uri)


def check_destination(output_uri: str, overwrite: bool, what: str = "output") -> None:
    """Refuses a non-empty ``output_uri`` unless ``overwrite``, and a file where a folder must go."""
    if not output_uri:
        raise ConfigError(f"No {what} location given: pass a folder for the predictions (--output).")
    if dataio.exists(output_uri) and not _isdir(output_uri):
        raise ConfigError(f"The {what} location {output_uri} is a file; batch prediction writes a folder of "
                          "part files there. Choose a folder path.")
    if not overwrite and not is_empty(output_uri):
        raise ConfigError(f"The {what} location {output_uri} exists and is not empty. Choose a new location, "
                          "or pass --overwrite (overwrite=True) to replace it when the new predictions are "
                          "complete.")


def _isdir(uri: str) -> bool:
    if dataio.is_local(uri):
        return os.path.isdir(dataio.local_path(uri))
    return dataio.gfile().isdir(uri)


def _parent_and_name(uri: str):
    uri = uri.rstrip("/")
    if dataio.is_local(uri):
        path = os.path.abspath(dataio.local_path(uri))
        return os.path.dirname(path), os.path.basename(path)
    return posixpath.dirname(uri), posixpath.basename(uri)


class Staging:
    """A staging folder beside ``output_uri``; :meth:`publish` puts it in place, :meth:`abort` removes it."""

    def __init__(self, output_uri: str, fmt: str, uri: str = ""):
        parent, name = _parent_and_name(output_uri)
        self.output_uri = output_uri
        self.format = fmt
        self.uri = uri or dataio.join(parent, f".{name}{STAGING_INFIX}{uuid.uuid4().hex[:12]}")

    def create(self) -> "Staging":
        """Creates the folder, owned by this process; ConfigError names the location if it is not writable.

        The owner record (``_tasks/owner.json``: pid, host, start time) lets ``prodml gc`` tell the
        staging folder of a killed run from one still being written.
        """
        try:
            dataio.makedirs(dataio.join(self.uri, TASKS_DIR))
            dataio.write_json(dataio.join(self.uri, TASKS_DIR, OWNER_FILE),
                              {"pid": os.getpid(), "host": socket.gethostname(), "created": time.time(),
                               "output_uri": self.output_uri})
        except Exception as e:  # OSError locally, tf.errors.* on gfile schemes
            raise ConfigError(f"Cannot write beside the output location {self.output_uri} ({self.uri}): "
                              f"{getattr(e, 'strerror', None) or getattr(e, 'message', None) or e}. Choose a "
                              "location this process can write to.") from e
        return self

    def part_uri(self, index: int) -> str:
        return dataio.join(self.uri, f"part-{index:05d}{EXTENSIONS[self.format]}")

    def task_summary_uri(self, index: int) -> str:
        return dataio.join(self.uri, TASKS_DIR, f"task-{index:05d}.json")

    def task_summaries(self) -> List[dict]:
        folder = dataio.join(self.uri, TASKS_DIR)
        names = sorted(n for n in dataio.list_files(folder)
                       if n.startswith("task-") and n.endswith(".json") and ".tmp-" not in n)
        return [dataio.read_json(dataio.join(folder, n)) for n in names]

    def parts(self) -> List[str]:
        return sorted(n for n in dataio.list_files(self.uri)
                      if n.startswith("part-") and "/" not in n and ".tmp-" not in n)

    def publish(self, summary: Mapping, overwrite: bool = False) -> None:
        """Puts the staged parts at ``output_uri`` with ``_SUCCESS`` (summary JSON) written last.

        Without ``overwrite``, a prediction set that another run published at ``output_uri`` while
        this one ran is kept, and this run's is not published (InputDataError).
        """
        if not overwrite and not is_empty(self.output_uri):
            raise _published_meanwhile(self.output_uri)
        remove_tree(dataio.join(self.uri, TASKS_DIR))
        if dataio.is_local(self.uri):
            dataio.write_json(dataio.join(self.uri, SUCCESS_FILE), dict(summary))
            target = os.path.abspath(dataio.local_path(self.output_uri))
            old = None
            if os.path.exists(target):
                # Overwrite (checked before the run) or an empty folder: move it aside, then swap.
                old = f"{os.path.dirname(target)}/.{os.path.basename(target)}.old-{uuid.uuid4().hex[:8]}"
                os.rename(target, old)
            try:
                os.rename(dataio.local_path(self.uri), target)
            except OSError as e:  # another run's set landed between the move and this rename
                if old:
                    shutil.rmtree(old, ignore_errors=True)
                raise _published_meanwhile(self.output_uri) from e
            if old:
                shutil.rmtree(old, ignore_errors=True)
            return
        if dataio.exists(self.output_uri):
            remove_tree(self.output_uri)
        for name in self.parts():
            dataio.copy_file(dataio.join(self.uri, name), dataio.join(self.output_uri, name))
        dataio.write_json(dataio.join(self.output_uri, SUCCESS_FILE), dict(summary))
        remove_tree(self.uri)

    def abort(self) -> None:
        remove_tree(self.uri)


def _published_meanwhile(output_uri: str) -> InputDataError:
    return InputDataError(
        f"Another run published predictions at {output_uri} while this one ran, so this run's predictions "
        "were not published (the other set is kept whole). Run again with a new --output, or with "
        "--overwrite to replace that set.")


def read_owner(staging_uri: str) -> dict:
    """The owner record of a staging folder (empty when it has none)."""
    uri = dataio.join(staging_uri, TASKS_DIR, OWNER_FILE)
    return dataio.read_json(uri) if dataio.exists(uri) else {}


def _remove(uri: str) -> None:
    if dataio.is_local(uri):
        os.remove(dataio.local_path(uri))
    else:
        dataio.gfile().remove(uri)


def remove_tree(uri: str) -> None:
    """Removes a folder and everything under it (local path or gfile URI); nothing if it is absent."""
    if dataio.is_local(uri):
        shutil.rmtree(dataio.local_path(uri), ignore_errors=True)
    elif dataio.exists(uri):
        dataio.gfile().rmtree(uri)


def arrow_schema(columns: Sequence[str], float_columns: Sequence[str], int_columns: Sequence[str]):
    """The output schema: float32 probabilities/values, int64 model_version, text for the rest."""
    import pyarrow as pa

    return pa.schema([(name, pa.float32() if name in float_columns else pa.int64() if name in int_columns
                       else pa.string()) for name in columns])


class PartWriter:
    """Streams the output rows of one task into one part file; :meth:`close` makes it visible."""

    def __init__(self, uri: str, fmt: str, schema):
        self.uri, self.format, self.schema = uri, fmt, schema
        self.tmp = f"{uri}.tmp-{uuid.uuid4().hex[:8]}"
        self.rows = 0
        self._file = _open_write(self.tmp)
        self._writer = None
        if fmt == PARQUET:
            import pyarrow.parquet as pq

            # Dictionary encoding pays off for repeated values only: not for a column of unique ids,
            # where Arrow would build a dictionary, find it too large and fall back, on every page.
            dictionary = [name for name in schema.names if name not in UNIQUE_COLUMNS]
            self._writer = pq.ParquetWriter(self._file, schema, use_dictionary=dictionary)
        elif fmt == CSV:
            import pyarrow.csv as pcsv

            self._writer = pcsv.CSVWriter(self._file, schema)

    def write(self, columns: Mapping[str, np.ndarray]) -> None:
        table = self._table(columns)
        self.rows += table.num_rows
        if self.format == JSONL:
            self._file.write(_jsonl(table).encode("utf-8"))
        else:
            self._writer.write_table(table)

    def _table(self, columns: Mapping[str, np.ndarray]):
        import pyarrow as pa

        return pa.Table.from_arrays([_arrow(columns[f.name], f.type) for f in self.schema], schema=self.schema)

    def close(self) -> str:
        if self._writer is not None:
            self._writer.close()
        self._file.close()
        if dataio.is_local(self.uri):
            os.replace(dataio.local_path(self.tmp), dataio.local_path(self.uri))
        else:
            dataio.gfile().rename(self.tmp, self.uri, overwrite=True)
        return self.uri

    def discard(self) -> None:
        try:
            self._file.close()
        finally:
            if dataio.exists(self.tmp):
                _remove(self.tmp)


def _arrow(values, kind):
    """A column as an Arrow array of ``kind`` (carried text columns are Arrow already)."""
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values if values.type == kind else values.cast(kind)
    return pa.array(values, type=kind, from_pandas=True)


def _open_write(uri: str):
    if dataio.is_local(uri):
        os.makedirs(os.path.dirname(dataio.local_path(uri)) or ".", exist_ok=True)
        return open(dataio.local_path(uri), "wb")
    return dataio.gfile().GFile(uri, "wb")


def _jsonl(table) -> str:
    import json

    rows = table.to_pylist()
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def read_predictions(output_uri: str, columns: Optional[List[str]] = None):
    """The published prediction set as a pandas DataFrame, in input order (for tests and notebooks)."""
    import pandas as pd
    import pyarrow.parquet as pq

    names = sorted(n for n in dataio.list_files(output_uri) if n.startswith("part-"))
    frames = []
    for name in names:
        uri = dataio.join(output_uri, name)
        if name.endswith(EXTENSIONS[PARQUET]):
            frames.append(pq.read_table(dataio.local_path(uri), columns=columns).to_pandas())
        elif name.endswith(EXTENSIONS[CSV]):
            frames.append(pd.read_csv(dataio.local_path(uri), dtype=dict.fromkeys(columns or [], str)))
        else:
            frames.append(pd.read_json(dataio.local_path(uri), lines=True, dtype=False))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns or [])


def summary_of(output_uri: str) -> Dict:
    """The ``_SUCCESS`` summary of a published prediction set."""
    return dataio.read_json(dataio.join(output_uri, SUCCESS_FILE))
