"""Transform: fits the preprocessing on the train split and applies it to every split.

One Beam pipeline reads the examples with tfx_bsl, runs ``tft_beam.AnalyzeDataset`` on train
and ``tft_beam.TransformDataset`` on every split, and writes the transform graph (a
``tft.TFTransformOutput`` folder) and the transformed examples (gzipped ``tf.Example``).

The analysis reads the train split on its own and the transform reads it again: a PCollection
used both before and after the analysis would be held whole in memory by the DirectRunner (it
runs one stage at a time), so memory would grow with the data.
"""

import shlex
from typing import Callable, Mapping, Optional, Sequence, Union

from prodml.components.common import artifacts, dataio, keys, schemas
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.common.logs import get_logger, step
from prodml.components.common.user_modules import load_function

log = get_logger(__name__)

DEFAULT_BEAM_ARGS = ("--runner=DirectRunner", "--direct_running_mode=in_memory",
                     "--direct_num_workers=1")
RAW_METADATA_DIR = "metadata"  # where tft.TFTransformOutput.raw_metadata looks
TEMP_DIR = ".tft_tmp"
# Rows per Arrow record batch read from the examples, hence per TF call of the analysis and of
# the transform. tfx_bsl's default tunes it from 1 up to 1000 rows by timing, which costs many
# small TF calls and makes the batching depend on the machine's speed; a fixed size is cheaper
# and the same on every run.
READ_BATCH_SIZE = 4096
PROGRESS_SECONDS = 20.0  # at most one progress line per stage this often; none on short stages
_ROWS_COUNTER = "rows_{}"


def run_transform(examples_dir: str, schema_dir: str, transform_graph_dir: str,
                  transformed_examples_dir: str, preprocessing_module: str = "",
                  beam_args: Union[Sequence[str], str] = ()) -> dict:
    """Fits the preprocessing on train, writes the transform graph and transformed splits.

    Args:
        examples_dir: examples artifact (``Split-<name>/`` folders and ``data_version.json``).
        schema_dir: schema artifact (``schema.pbtxt``).
        transform_graph_dir: output ``tft.TFTransformOutput`` folder, plus ``label_info.json``
            and the raw schema under ``metadata/``.
        transformed_examples_dir: output ``Split-<name>/data-*.tfrecord.gz`` folders.
        preprocessing_module: path or URI of a Python file defining ``preprocessing_fn(inputs)``;
            empty for the default preprocessing (see ``default_preprocessing``). If its
            outputs lack the label, the label is encoded as in the default.
        beam_args: Beam pipeline options, e.g. ``["--runner=DataflowRunner", "--project=p"]``
            (a string is split like a shell command line); the default is the in-memory
            DirectRunner.

    Returns:
        ``{"features": [transformed feature names], "rows": {split: n}, "preprocessing":
        "default" or the module path}``.
    """
    data_version = artifacts.DataVersion.read(examples_dir)
    label = data_version.label
    label_info = label.to_dict()  # the label block, as preprocessing functions take it
    schema = schemas.load_schema(schema_dir)
    kinds = schemas.feature_kinds(schema)
    if label_info["name"] not in kinds:
        raise InputDataError(f"The label '{label_info['name']}' is not a feature of the schema in "
                             f"{schema_dir}: validate the examples that ingest wrote with that label.")
    splits = dataio.list_splits(examples_dir)
    if keys.TRAIN not in splits:
        raise InputDataError(f"No '{keys.SPLIT_PREFIX}{keys.TRAIN}' folder in {examples_dir}: "
                             "transform fits on the train split.")
    if preprocessing_module:
        preprocessing_fn = _user_preprocessing_fn(preprocessing_module, label_info)
    else:
        from prodml.components.transform.default_preprocessing import make_preprocessing_fn

        preprocessing_fn = make_preprocessing_fn(kinds, label_info)

    with step(log, f"transform {', '.join(splits)} ({preprocessing_module or 'default'})"):
        features, rows = _run_pipeline(examples_dir, splits, schema, preprocessing_fn, label_info,
                                       transform_graph_dir, transformed_examples_dir,
                                       preprocessing_module, beam_args, data_version.row_counts)
    _write_side_files(schema, label, transform_graph_dir)
    log.info("transformed %s rows into %d features", rows, len(features))
    return {"features": features, "rows": rows,
            "preprocessing": preprocessing_module or "default"}


def _user_preprocessing_fn(module_file: str, label_info: Mapping) -> Callable:
    from prodml.components.transform.default_preprocessing import encode_label

    user_fn = load_function(module_file, "preprocessing_fn")
    label = label_info["name"]

    def preprocessing_fn(inputs):
        outputs = dict(user_fn(dict(inputs)))
        if label not in outputs:
            outputs[label] = encode_label(inputs[label], label_info)
        return outputs

    return preprocessing_fn


def _run_pipeline(examples_dir, splits, schema, preprocessing_fn, label_info, graph_dir,
                  output_dir, module_file, beam_args, row_counts):
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from prodml.components.transform.beam_progress import Progress

    temp_dir = dataio.join(graph_dir, TEMP_DIR)
    if isinstance(beam_args, str):
        beam_args = shlex.split(beam_args)
    try:
        pipeline = beam.Pipeline(options=PipelineOptions([*DEFAULT_BEAM_ARGS, *beam_args]))
    except ValueError as e:
        raise ConfigError(f"beam_args {list(beam_args)} are not valid Beam options: {e}") from e
    with tft_beam.Context(temp_dir=temp_dir):
        raw = {split: _read(pipeline, examples_dir, split, schema, f"Read[{split}]") for split in splits}
        analysis_input = _read(pipeline, examples_dir, keys.TRAIN, schema, "Read[train-analyze]",
                               Progress("analyzing train: rows read", row_counts.get(keys.TRAIN),
                                        PROGRESS_SECONDS))
        try:
            transform_fn = analysis_input | "Analyze[train]" >> tft_beam.AnalyzeDataset(preprocessing_fn)
        except Exception as e:
            if not module_file:
                raise
            raise ConfigError(f"preprocessing_fn in {module_file} failed: {type(e).__name__}: {e}. "
                              "Fix the function and run again.") from e
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(graph_dir)
        metadata = None
        for split in splits:
            data, metadata = ((raw[split], transform_fn) | f"Transform[{split}]"
                              >> tft_beam.TransformDataset(output_record_batches=True))
            _write_examples((data, metadata), split, output_dir, row_counts.get(split))
        _check_label(metadata.dataset_metadata.schema, label_info, module_file)
        result = pipeline.run()
        result.wait_until_finish()
    if dataio.exists(temp_dir):
        dataio.gfile().rmtree(temp_dir)
    features = sorted(f.name for f in metadata.dataset_metadata.schema.feature)
    return features, {split: _counted_rows(result, split) for split in splits}


def _read(pipeline, examples_dir: str, split: str, schema, label: str, progress=None):
    import apache_beam as beam

    from prodml.components.transform.example_io import read_split

    batches, config = read_split(pipeline, dataio.split_files(examples_dir, split), schema,
                                 READ_BATCH_SIZE, label)
    if progress is not None:
        batches = batches | f"{label}/Progress" >> beam.ParDo(progress)
    return batches, config


def _write_examples(dataset, split: str, output_dir: str, total: Optional[int]) -> None:
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam

    from prodml.components.transform.beam_progress import Progress
    from prodml.components.transform.example_io import GzipTFRecordSink

    data, metadata = dataset
    counted = data | f"Count[{split}]" >> beam.ParDo(Progress(
        f"transforming {split}: rows written", total, PROGRESS_SECONDS, _ROWS_COUNTER.format(split)))
    _ = ((counted, metadata)
         | f"Encode[{split}]" >> tft_beam.EncodeTransformedDataset()
         | f"Write[{split}]" >> beam.io.Write(
             GzipTFRecordSink(dataio.join(dataio.split_dir(output_dir, split), "data"))))


def _counted_rows(result, split: str) -> int:
    from apache_beam.metrics.metric import MetricsFilter

    query = result.metrics().query(MetricsFilter().with_name(_ROWS_COUNTER.format(split)))
    counters = query["counters"]
    return int(sum((c.committed if c.committed is not None else c.attempted) for c in counters))


def _check_label(transformed_schema, label_info: Mapping, module_file: str) -> None:
    """A user preprocessing_fn may output the label itself; it must keep the contract."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    label = label_info["name"]
    kind = {f.name: f.type for f in transformed_schema.feature}.get(label)
    expected = schema_pb2.FLOAT if label_info["problem_type"] == keys.REGRESSION else schema_pb2.INT
    if kind != expected:
        raise ConfigError(
            f"preprocessing_fn in {module_file or 'the default preprocessing'} outputs the label "
            f"'{label}' as {schema_pb2.FeatureType.Name(kind) if kind else 'nothing'}; a "
            f"{label_info['problem_type']} label must be "
            f"{'a float32 value' if expected == schema_pb2.FLOAT else 'an int64 class index'}. "
            "Return it encoded that way, or leave it out and prodml encodes it.")


def _write_side_files(schema, label: artifacts.Label, graph_dir: str) -> None:
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema),
                               dataio.join(graph_dir, RAW_METADATA_DIR))
    label.write(graph_dir)

