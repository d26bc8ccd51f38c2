"""TFDV statistics of every split, computed in one Beam pipeline, and their files."""

from typing import Dict, List

from prodml.components.common import dataio, keys
from prodml.components.common.errors import ConfigError


def generate(examples_dir: str, splits: List[str], statistics_dir: str) -> Dict[str, object]:
    """Writes the statistics of each split in one pipeline and returns ``{split: statistics}``.

    Records are decoded without a schema so that data of the wrong type shows up as an
    anomaly instead of failing the decoding.
    """
    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.public import tfxio

    options = PipelineOptions(["--direct_num_workers=1", "--direct_running_mode=in_memory"])
    with beam.Pipeline(runner="DirectRunner", options=options) as pipeline:
        for split in splits:
            source = tfxio.TFExampleRecord(dataio.split_files(examples_dir, split),
                                           telemetry_descriptors=["prodml", "validate"])
            _ = (pipeline
                 | f"Read[{split}]" >> source.BeamSource()
                 | f"Statistics[{split}]" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
                 | f"Write[{split}]" >> beam.Map(write, statistics_dir, split))
    return {split: tfdv.load_stats_binary(path(statistics_dir, split)) for split in splits}


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
