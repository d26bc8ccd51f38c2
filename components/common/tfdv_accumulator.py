"""TFDV statistics computed in this process, chunk by chunk, with memory bounded by the chunk size.

This is TFDV's own in-memory path (``stats_impl.get_generators(..., in_memory=True)``, the
generators ``tfdv.generate_statistics_in_memory`` uses), fed one Arrow RecordBatch per chunk
instead of one batch for the whole data: the accumulators are TFDV's combiner states (sketches
for quantiles and top values), so memory stays bounded and the result is what TFDV computes for
the same rows with the same ``StatsOptions``. Validate (examples files) and monitor (served
rows) both use it, with the default options.

Against ``tfdv.GenerateStatistics`` on Beam: counts, missing, min, max, mean and standard
deviation are the same (up to float summation order); quantiles come from the same sketch, so
histograms and the median agree within its error. Top values and unique counts come from
TFDV's sketches (Misra-Gries with 1,024 buckets, KMV with 16,384) instead of Beam's exact
count, which gives the same numbers while a feature has fewer distinct values than that.
"""

from typing import Dict

import numpy as np
import pyarrow as pa


def to_record_batch(columns: Dict[str, pa.Array]) -> pa.RecordBatch:
    """Flat columns (null = missing) as TFDV's input: one list per row, a missing value a null list."""
    arrays, names = [], []
    for name, values in columns.items():
        valid = values.is_valid().to_numpy(zero_copy_only=False)
        offsets = np.zeros(len(values) + 1, np.int32)
        np.cumsum(valid, out=offsets[1:])
        arrays.append(pa.ListArray.from_arrays(pa.array(offsets), values.drop_null(), mask=pa.array(~valid)))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names)


class StatsAccumulator:
    """TFDV's combiner statistics generators, fed batch by batch."""

    def __init__(self, options=None):
        import tensorflow_data_validation as tfdv
        from tensorflow_data_validation.statistics import stats_impl

        self._options = options or tfdv.StatsOptions()
        self._generators = stats_impl.get_generators(self._options, in_memory=True)
        self._accumulators = [g.create_accumulator() for g in self._generators]
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._accumulators = [g.add_input(a, batch) for g, a in zip(self._generators, self._accumulators)]
            self.rows += batch.num_rows

    def result(self, name: str = "serving"):
        """The DatasetFeatureStatisticsList of everything added (one dataset, named ``name``)."""
        from tensorflow_data_validation.statistics import stats_impl

        stats = stats_impl.extract_statistics_output(self._accumulators, self._generators)
        for dataset in stats.datasets:
            dataset.name = name
        return stats
