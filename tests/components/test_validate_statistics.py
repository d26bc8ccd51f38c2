"""Validate's in-process statistics against TFDV's Beam pipeline, and its progress lines."""

import logging

import numpy as np
import pytest

from prodml.components.common import dataio, keys
from prodml.components.common.logs import get_logger
from prodml.components.validate import statistics

EPSILON = 0.01  # TFDV's default quantile sketch error (StatsOptions.epsilon), as a fraction of the rows


def _beam_statistics(files, folder):
    """What validate computed before: tfdv.GenerateStatistics on Beam's DirectRunner, schema-less decoding."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.public import tfxio

    options = PipelineOptions(["--direct_num_workers=1", "--direct_running_mode=in_memory"])
    with beam.Pipeline(runner="DirectRunner", options=options) as pipeline:
        _ = (pipeline
             | tfxio.TFExampleRecord(files, telemetry_descriptors=["prodml", "test"]).BeamSource()
             | tfdv.GenerateStatistics(tfdv.StatsOptions())
             | beam.Map(statistics.write, str(folder), keys.TRAIN))
    return tfdv.load_stats_binary(statistics.path(str(folder), keys.TRAIN)).datasets[0]


def _features(dataset):
    return {f.path.step[0]: f for f in dataset.features}


def _values(files):
    """``{feature: numpy array of every value}`` of the numeric features, decoded independently."""
    import pyarrow as pa

    table = pa.Table.from_batches(list(statistics.record_batches(files)))
    return {name: np.asarray(table.column(name).combine_chunks().flatten(), np.float64)
            for name in table.column_names
            if pa.types.is_integer(table.schema.field(name).type.value_type)
            or pa.types.is_floating(table.schema.field(name).type.value_type)}


def _within_sketch_error(values, a, b, rows):
    """Whether no more than the sketch's error of the values lies strictly between a and b."""
    low, high = min(a, b), max(a, b)
    return np.count_nonzero((values > low) & (values < high)) <= 2 * EPSILON * rows


@pytest.mark.slow  # 8-14 s: one Beam pipeline
def test_in_process_statistics_equal_the_beam_pipeline(ingested, tmp_path):
    files = dataio.split_files(str(ingested), keys.TRAIN)
    beam = _beam_statistics(files, tmp_path)
    # Small batches: many of them, through the decoding threads, as at scale.
    ours = statistics.compute(files, keys.TRAIN, batch_rows=300).datasets[0]
    values = _values(files)

    assert ours.name == keys.TRAIN and ours.num_examples == beam.num_examples > 2000
    expected, got = _features(beam), _features(ours)
    assert set(got) == set(expected) and len(got) > 10
    numeric = 0
    for name, b in expected.items():
        g = got[name]
        assert g.type == b.type and g.WhichOneof("stats") == b.WhichOneof("stats"), name
        if b.HasField("num_stats"):
            numeric += 1
            bn, gn = b.num_stats, g.num_stats
            assert gn.common_stats == bn.common_stats, name  # counts, missing, values per example
            assert (gn.min, gn.max, gn.num_zeros) == (bn.min, bn.max, bn.num_zeros), name
            assert gn.mean == pytest.approx(bn.mean, rel=1e-12), name
            assert gn.std_dev == pytest.approx(bn.std_dev, rel=1e-9), name
            rows = len(values[name])
            assert _within_sketch_error(values[name], gn.median, bn.median, rows), name
            assert len(gn.histograms) == len(bn.histograms) == 2, name  # STANDARD and QUANTILES
            for bh, gh in zip(bn.histograms, gn.histograms):
                assert gh.type == bh.type and len(gh.buckets) == len(bh.buckets), name
                assert sum(x.sample_count for x in gh.buckets) == pytest.approx(
                    sum(x.sample_count for x in bh.buckets)), name
                for bb, gb in zip(bh.buckets, gh.buckets):
                    assert _within_sketch_error(values[name], gb.low_value, bb.low_value, rows), name
                    assert _within_sketch_error(values[name], gb.high_value, bb.high_value, rows), name
        else:
            bs, gs = b.string_stats, g.string_stats
            assert gs.common_stats == bs.common_stats, name
            assert (gs.unique, gs.avg_length) == (bs.unique, pytest.approx(bs.avg_length)), name
            assert [(t.value, t.frequency) for t in gs.top_values] == \
                [(t.value, t.frequency) for t in bs.top_values], name
    assert numeric > 5


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_progress_lines_only_for_a_long_split(ingested, monkeypatch):
    files = dataio.split_files(str(ingested), keys.EVAL)
    lines = _Lines()
    logger = get_logger()
    logger.addHandler(lines)
    try:
        quiet = statistics.compute(files, keys.EVAL, batch_rows=500)
        assert lines.lines == []  # seconds of work: nothing beyond the step's own start and end
        monkeypatch.setattr(statistics, "PROGRESS_SECONDS", 0.0)
        statistics.compute(files, keys.EVAL, batch_rows=500)
    finally:
        logger.removeHandler(lines)
    rows = quiet.datasets[0].num_examples
    assert len(lines.lines) == -(-rows // 500)
    assert lines.lines[0].startswith("Statistics of eval: 500 rows (")
    assert lines.lines[-1].startswith(f"Statistics of eval: {rows} rows (")
