"""TFDV statistics of every split, computed in this process chunk by chunk, and their files.

Each split's gzipped tf.Example files are decoded ``BATCH_ROWS`` records at a time into Arrow
RecordBatches and fed to TFDV's own in-memory statistics generators
(``common.tfdv_accumulator.StatsAccumulator``): memory is bounded by one batch and the sketches,
whatever the number of rows, and no Beam pipeline is started. The statistics are TFDV's
(``tfdv.GenerateStatistics`` gives the same counts, missing, min, max and mean; quantile
histograms agree within the sketch's error: tests/components/test_validate_statistics.py).
"""

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Deque, Dict, Iterator, List

from prodml.components.common import dataio, keys
from prodml.components.common.errors import ConfigError
from prodml.components.common.logs import RowProgress, get_logger
from prodml.components.common.tfdv_accumulator import StatsAccumulator

log = get_logger(__name__)

# Records decoded per RecordBatch: large enough that TFDV's per-batch Python work is small
# beside the vectorised part, small enough that a batch of wide rows is a few MB.
BATCH_ROWS = 20_000
DECODE_THREADS = 4       # at most; fewer on a machine with fewer cores
LEARN_ROWS = 1_000       # decoded by tfx-bsl to learn the features before the first batch
PROGRESS_SECONDS = 15.0  # a progress line at most this often, and none for a split done sooner


def generate(examples_dir: str, splits: List[str], statistics_dir: str) -> Dict[str, object]:
    """Writes the statistics of each split and returns ``{split: statistics}``.

    Records are decoded without a schema so that data of the wrong type shows up as an
    anomaly instead of failing the decoding.
    """
    found = {}
    for split in splits:
        found[split] = compute(dataio.split_files(examples_dir, split), split)
        write(found[split], statistics_dir, split)
    return found


def compute(files: List[str], split: str, batch_rows: int = BATCH_ROWS):
    """The DatasetFeatureStatisticsList of the tf.Example ``files`` (one dataset, named ``split``)."""
    accumulator = StatsAccumulator()
    progress = RowProgress(log, f"Statistics of {split}", PROGRESS_SECONDS)
    for batch in record_batches(files, batch_rows):
        accumulator.add(batch)
        progress.add(batch.num_rows)
    return accumulator.result(split)


def record_batches(files: List[str], batch_rows: int = BATCH_ROWS) -> Iterator[object]:
    """The records of ``files`` decoded without a schema (types as written), in file order.

    Decoding tf.Example protos is most of the work (``_Decoder``), and it releases the GIL, so
    batches are decoded by a few threads while this one computes statistics; at most
    ``workers + 1`` batches are in flight, which bounds memory.
    """
    import tensorflow as tf

    decode = _Decoder().decode
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_rows).prefetch(1)
    workers = max(1, min(DECODE_THREADS, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        pending: Deque[Future] = deque()
        for serialized in records.as_numpy_iterator():
            pending.append(pool.submit(decode, serialized))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class _Decoder:
    """tf.Examples to the RecordBatch tfx-bsl's schema-less decoder gives, at a third of its CPU.

    tfx-bsl's ``ExamplesToRecordBatchDecoder`` takes about 15 us of CPU a row on taxi data, three
    quarters of validate. Once a batch decoded by tfx-bsl has shown the features and their types,
    later batches go through TensorFlow's ``parse_example`` (about 3 us a row), which cannot see
    a feature it was not asked for, an empty value list or a value list of no type. So each
    example's count of features is read too (``decode_proto``) and must equal its count of
    features with values; otherwise, or on a type parse_example rejects, tfx-bsl decodes the
    batch (and its features join the known ones). The result is then the same batch, column
    for column: names in tfx-bsl's (sorted) order, a missing feature a null list.
    """

    def __init__(self):
        self._types: Dict[str, object] = {}  # feature name: the Arrow list type tfx-bsl gave it
        self._lock = threading.Lock()

    def decode(self, serialized):
        from tfx_bsl.coders import example_coder

        with self._lock:
            types = dict(self._types)
        if not types:  # the first rows tell the features, for this batch and the next
            types = self._learn(example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(serialized[:LEARN_ROWS]))
        batch = _parse(serialized, types) if types else None
        if batch is None:
            batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(serialized)
            self._learn(batch)
        return batch

    def _learn(self, batch) -> Dict[str, object]:
        with self._lock:
            # A feature of no type (null column) stays unknown: its next batch goes to tfx-bsl.
            self._types.update((field.name, field.type) for field in batch.schema
                               if hasattr(field.type, "value_type"))
            return dict(self._types)


def _parse(serialized, types: Dict[str, object]):
    """The batch as tfx-bsl decodes it, or None when parse_example may not give the same."""
    import numpy as np
    import pyarrow as pa
    import tensorflow as tf

    rows = len(serialized)
    try:
        sizes, (features,) = tf.io.decode_proto(serialized, "tensorflow.Example", ["features"], [tf.string])
        if not np.all(sizes.numpy() == 1):  # an example without a features message
            return None
        entries, _ = tf.io.decode_proto(tf.reshape(features, [-1]), "tensorflow.Features", ["feature"],
                                        [tf.string])
        parsed = tf.io.parse_example(serialized, {name: tf.io.VarLenFeature(_tf_dtype(t.value_type))
                                                  for name, t in types.items()})
    except tf.errors.InvalidArgumentError:  # a value of another type than the known one
        return None
    with_values = np.zeros(rows, np.int64)
    arrays, names = [], []
    for name in sorted(parsed):
        sparse = parsed[name]
        row_of = sparse.indices.numpy()[:, 0]
        if not len(row_of):  # tfx-bsl has no column for a feature absent from the batch
            continue
        counts = np.bincount(row_of, minlength=rows)
        valid = counts > 0
        with_values += valid
        offsets = np.zeros(rows + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        values = sparse.values.numpy()
        values = pa.array(values.tolist() if values.dtype == object else values, type=types[name].value_type)
        arrays.append(pa.LargeListArray.from_arrays(pa.array(offsets), values, mask=pa.array(~valid)))
        names.append(name)
    if not np.array_equal(with_values, entries.numpy().reshape(-1)):
        return None  # an unknown feature, an empty value list, or one of no type
    return pa.RecordBatch.from_arrays(arrays, names)


def _tf_dtype(value_type):
    import pyarrow as pa
    import tensorflow as tf

    if pa.types.is_integer(value_type):
        return tf.int64
    if pa.types.is_floating(value_type):
        return tf.float32
    return tf.string


def path(statistics_dir: str, split: str) -> str:
    return dataio.join(dataio.split_dir(statistics_dir, split), keys.STATS_FILE)


def write(stats, statistics_dir: str, split: str) -> str:
    """Writes ``<statistics_dir>/Split-<split>/FeatureStats.pb`` (binary), the dataset named ``split``."""
    for dataset in stats.datasets:
        dataset.name = split
    target = path(statistics_dir, split)
    dataio.makedirs(dataio.split_dir(statistics_dir, split))
    tmp = target + ".tmp"
    with dataio.gfile().GFile(tmp, "wb") as f:
        f.write(stats.SerializeToString())
    dataio.gfile().rename(tmp, target, overwrite=True)
    return target


def load_baseline(baseline_statistics_dir: str):
    """The train statistics of an earlier run's statistics artifact."""
    import tensorflow_data_validation as tfdv

    target = path(baseline_statistics_dir, keys.TRAIN)
    if not dataio.exists(target):
        raise ConfigError(f"baseline_statistics_dir '{baseline_statistics_dir}' has no {target}. Pass the "
                          "statistics artifact of an earlier run, or leave it empty to skip drift checks.")
    return tfdv.load_stats_binary(target)
