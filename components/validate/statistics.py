"""TFDV statistics of every split, computed in this process chunk by chunk, and their files.

Each split's gzipped tf.Example files are decoded ``BATCH_ROWS`` records at a time into Arrow
RecordBatches and fed to TFDV's own in-memory statistics generators
(``common.tfdv_accumulator.StatsAccumulator``): memory is bounded by one batch and the sketches,
whatever the number of rows, and no Beam pipeline is started. The statistics are TFDV's
(``tfdv.GenerateStatistics`` gives the same counts, missing, min, max and mean; quantile
histograms agree within the sketch's error: tests/components/test_validate_statistics.py).
"""

import os
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

    Decoding tf.Example protos is most of the work (about 20 us of CPU a row on taxi data, the
    statistics about 5) and tfx-bsl's decoder releases the GIL, so batches are decoded by a few threads while this one
    computes statistics; at most ``workers + 1`` batches are in flight, which bounds memory.
    """
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    def decode(serialized):  # a decoder per batch: no state shared between threads, and cheap
        return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(serialized)

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
