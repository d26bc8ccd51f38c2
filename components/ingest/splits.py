"""Deterministic hash splits and the sharded, gzipped tf.Example files of each split."""

import re
import uuid
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from prodml.components.common import dataio, keys
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.common.logs import get_logger
from prodml.components.ingest.columns import Cells

log = get_logger(__name__)

BUCKETS = 10_000
_MISSING_HASH = np.uint64(np.iinfo(np.uint64).max)  # pandas' hash of a missing cell
# Several shards per big split, so that Beam (transform, validate) and tf.data read them in parallel:
# a gzip file is read by one worker from start to end.
ROWS_PER_SHARD = 250_000
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")


def normalise_ratios(split_ratios: Optional[Mapping[str, float]]) -> Dict[str, float]:
    """Split ratios summing to 1, ``train`` first, then ``eval``, then any others by name."""
    ratios = dict(keys.DEFAULT_SPLIT_RATIOS if split_ratios is None else split_ratios)
    if keys.TRAIN not in ratios or keys.EVAL not in ratios:
        raise ConfigError(f"split_ratios {ratios} needs both '{keys.TRAIN}' and '{keys.EVAL}'.")
    for name, ratio in ratios.items():
        if not _SPLIT_NAME.match(str(name)):
            raise ConfigError(f"Split name '{name}' in split_ratios may hold only letters, digits, _ and -.")
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not ratio >= 0:
            raise ConfigError(f"split_ratios['{name}'] = {ratio!r}; ratios are numbers >= 0.")
    if not ratios[keys.TRAIN] > 0 or not ratios[keys.EVAL] > 0:
        raise ConfigError(f"split_ratios {ratios} gives no rows to train or eval; both need a ratio > 0.")
    total = float(sum(ratios.values()))
    order = [keys.TRAIN, keys.EVAL] + sorted(n for n in ratios if n not in (keys.TRAIN, keys.EVAL))
    return {name: ratios[name] / total for name in order}


def assign(raw: Union[pd.DataFrame, Sequence[Cells]], ratios: Dict[str, float]) -> np.ndarray:
    """The split index (position in ``ratios``) of each row, from a stable hash of its raw strings.

    The hash covers the row's values only, so a row lands in the same split whatever the file
    order, the chunking or the columns dropped later. ``raw`` is a frame (strings, NaN where
    missing) or its columns as Cells, which hash alike.
    """
    if isinstance(raw, pd.DataFrame):
        hashes = pd.util.hash_pandas_object(raw, index=False).to_numpy()
    else:
        hashes = hash_rows(raw)
    bounds = np.round(np.cumsum(list(ratios.values())) * BUCKETS).astype(np.uint64)
    bounds[-1] = BUCKETS
    return np.searchsorted(bounds, hashes % np.uint64(BUCKETS), side="right")


def hash_rows(columns: Sequence[Cells]) -> np.ndarray:
    """``pd.util.hash_pandas_object(frame, index=False)`` of the frame these columns make, NaN where missing.

    pandas hashes each distinct string of a column (SipHash of its UTF-8), a missing cell as the
    largest uint64, and combines a row's column hashes as below; here each distinct string of a
    chunk is hashed once.
    """
    out = None
    mult = np.uint64(1000003)
    for i, cells in enumerate(columns):
        per_value = (pd.util.hash_array(cells.values, categorize=False) if len(cells.values)
                     else np.zeros(0, dtype=np.uint64))
        hashed = cells.take(per_value, _MISSING_HASH)
        if out is None:
            out = np.zeros_like(hashed) + np.uint64(0x345678)
        remaining = len(columns) - i
        out ^= hashed
        out *= mult
        mult += np.uint64(82520 + remaining + remaining)
    return out + np.uint64(97531)


def pinned(values: Union[pd.Series, Cells], ratios: Dict[str, float], hashed: np.ndarray, where,
           column: str = "") -> np.ndarray:
    """The split index of each row: the split its ``values`` cell names, or ``hashed`` where it is empty.

    ``where(i)`` names row ``i`` (file and line) for the error about a value that is not a split;
    ``column`` names the column (default: the Series' name).
    """
    names = list(ratios)
    cells = values if isinstance(values, Cells) else Cells.of(values)
    column = column or getattr(values, "name", "")
    given = [str(value).strip() for value in cells.values]
    known = np.array([name in ratios for name in given], dtype=bool)
    if not known.all():
        i = cells.first(~known)
        raise InputDataError(f"On {where(i)}, the split column '{column}' holds '{given[cells.index[i]]}', which is "
                             f"not a split ({', '.join(names)}). Name one of those, or leave the cell empty for a "
                             "hash split.")
    split_of_value = np.array([names.index(name) for name in given], dtype=hashed.dtype)
    present = cells.index >= 0
    result = hashed.copy()
    result[present] = split_of_value[cells.index[present]]
    return result


def encode(features: Dict[str, Tuple[str, Cells, np.ndarray]]) -> List[bytes]:
    """Serialized tf.Example records of a chunk's rows, features in this order; a missing cell is an absent feature.

    ``features`` maps a name to ``(kind, cells, typed)``, ``typed`` holding the value of each of
    ``cells.values`` in ``kind`` (``columns.typed_values``). Each distinct value's map entry is
    serialized once; a row's record is its entries joined under the Example's header.
    """
    parts = []
    lengths = None
    for name, (kind, cells, typed) in features.items():
        entries = np.empty(len(typed) + 1, dtype=object)
        entries[:-1] = _entries(name, kind, typed)
        entries[-1] = b""  # a missing cell (index -1): no entry
        sizes = np.fromiter(map(len, entries), dtype=np.int64, count=len(entries))
        parts.append(entries[cells.index].tolist())
        lengths = sizes[cells.index] if lengths is None else lengths + sizes[cells.index]
    distinct, inverse = np.unique(lengths, return_inverse=True)
    heads = np.array([b"\n" + _varint(int(n)) for n in distinct], dtype=object)[inverse].tolist()
    return [b"".join(row) for row in zip(heads, *parts)]


_ONE_BYTE_VARINTS = [bytes([n]) for n in range(0x80)]


def _varint(n: int) -> bytes:
    """A protobuf base-128 varint: the length of a record's Features field."""
    if n < 0x80:
        return _ONE_BYTE_VARINTS[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _entries(name: str, kind: str, typed: np.ndarray) -> List[bytes]:
    """The ``Features.feature`` map entry of ``name`` holding each value of ``typed``, as tfx_bsl encodes it.

    tfx_bsl's encoder writes a one-feature Example per value. Such an Example is its field 1 (the
    Features message) alone, and that message is the one map entry, so the entry is what follows
    the field's tag and length.
    """
    import pyarrow as pa
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    if kind in (keys.FLOAT, keys.INT):
        values = pa.array(typed, type=pa.float32() if kind == keys.FLOAT else pa.int64())
    else:  # tfx_bsl encodes binary, not string, columns
        values = pa.array(typed, type=pa.string()).cast(pa.binary())
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
    batch = pa.RecordBatch.from_arrays([pa.ListArray.from_arrays(offsets, values)], [name])
    return [record[_header_size(record):] for record in RecordBatchToExamplesEncoder().encode(batch)]


def _header_size(record: bytes) -> int:
    """Bytes of an Example's field 1 tag and length varint."""
    size = 2
    while record[size - 1] & 0x80:
        size += 1
    return size


class SplitWriter:
    """Writes each split's records under temporary names; ``commit`` gives them their final names.

    Until ``commit``, no ``data-*`` file exists, so a failed ingest leaves no partial split.
    """

    def __init__(self, output_dir: str, splits: List[str]):
        import tensorflow as tf

        self._tf = tf
        self._options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=dataio.EXAMPLES_GZIP_LEVEL)
        self._dirs = {s: dataio.split_dir(output_dir, s) for s in splits}
        self._rows_per_shard = ROWS_PER_SHARD
        self._tag = uuid.uuid4().hex[:8]
        self._shards: Dict[str, List[str]] = {s: [] for s in splits}
        self._writers: Dict[str, object] = {}
        self.row_counts = dict.fromkeys(splits, 0)
        for folder in self._dirs.values():
            dataio.makedirs(folder)
            for stale in dataio.gfile().glob(dataio.join(folder, keys.EXAMPLES_PATTERN)):
                log.info("Removing %s of an earlier run.", stale)
                dataio.gfile().remove(stale)

    def write(self, split: str, records: List[bytes]) -> None:
        start = 0
        while start < len(records):
            if self.row_counts[split] % self._rows_per_shard == 0:
                self._next_shard(split)
            shard = records[start:start + self._rows_per_shard - self.row_counts[split] % self._rows_per_shard]
            write = self._writers[split].write
            for record in shard:
                write(record)
            self.row_counts[split] += len(shard)
            start += len(shard)

    def _next_shard(self, split: str) -> None:
        if split in self._writers:
            self._writers.pop(split).close()
        path = dataio.join(self._dirs[split], f".tmp-{self._tag}-{len(self._shards[split]):05d}")
        self._shards[split].append(path)
        self._writers[split] = self._tf.io.TFRecordWriter(path, self._options)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def commit(self) -> None:
        """Renames the shards to ``data-<i>-of-<n>.tfrecord.gz``."""
        self.close()
        for split, shards in self._shards.items():
            for i, tmp in enumerate(shards):
                final = dataio.join(self._dirs[split], f"data-{i:05d}-of-{len(shards):05d}.tfrecord.gz")
                dataio.gfile().rename(tmp, final, overwrite=True)
        self._shards = {s: [] for s in self._shards}

    def abort(self) -> None:
        """Closes and removes the temporary shards (best effort: the original error matters more)."""
        try:
            self.close()
        finally:
            for shards in self._shards.values():
                for tmp in shards:
                    try:
                        dataio.gfile().remove(tmp)
                    except Exception:  # noqa: BLE001 - cleanup must not hide the original error
                        log.warning("Could not remove %s", tmp)
