"""Plain-library floors for the scale benchmark: what the libraries alone need on the same rows.

``tft_floor`` runs bare ``tft_beam.AnalyzeAndTransformDataset`` (tfx_bsl's reader with its
default batching, Beam's default DirectRunner) with the default preprocessing_fn on the
examples ingest wrote, and writes nothing but the transform fn: no transformed examples,
no progress, no lineage. ``benchmarks/scale.py`` compares the transform step with it.
"""

import json
import os
import time


def tft_floor(examples_dir: str, schema_dir: str, workdir: str) -> dict:
    """Analyzes the train split and transforms it with TFT alone; returns timing and size.

    Args:
        examples_dir: examples artifact (``Split-train/*.gz``, ``data_version.json``).
        schema_dir: schema artifact (``schema.pbtxt``).
        workdir: scratch folder; the transform fn goes to ``<workdir>/transform_fn``.

    Returns:
        ``{"seconds": wall time of the Beam pipeline, "rows": train rows (from data_version.json)}``.
    """
    import glob

    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.public import tfxio

    # The preprocessing_fn is the workload being measured, so it is the product's default one.
    from prodml.components.transform.default_preprocessing import make_preprocessing_fn

    with open(os.path.join(examples_dir, "data_version.json")) as f:
        data_version = json.load(f)
    schema = text_format.Parse(open(os.path.join(schema_dir, "schema.pbtxt")).read(),
                               schema_pb2.Schema())
    kinds = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
    preprocessing_fn = make_preprocessing_fn(kinds, data_version["label"])
    files = sorted(glob.glob(os.path.join(examples_dir, "Split-train", "*.gz")))
    source = tfxio.TFExampleRecord(file_pattern=files, schema=schema)

    start = time.perf_counter()
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=os.path.join(workdir, "tmp")):
        data = (pipeline | "Read" >> source.BeamSource(), source.TensorAdapterConfig())
        _, transform_fn = data | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn, output_record_batches=True)
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(workdir, "transform_fn"))
    return {"seconds": time.perf_counter() - start, "rows": data_version["row_counts"]["train"]}


def fit_floor(transform_graph_dir: str, transformed_examples_dir: str, model_dir: str, workdir: str) -> dict:
    """Seconds of a bare ``tf_keras`` ``model.fit`` of the default model, as the run in ``model_dir`` trained it.

    The same layers, bins and batch size as the run's model; the epochs the run trained (its
    history: early stopping may have ended it before ``epochs``); the steps per epoch of
    ``default_model.schedule``. A plain ``tf.data`` input (parallel read, batch, parse, prefetch) of the
    transformed train split, no validation, no callbacks. Building the model (its bins need one
    pass over the train split) is setup, not timed. ``workdir`` is unused (nothing is written).

    Returns ``{"seconds", "rows": train rows, "epochs", "steps_per_epoch", "batch_size", "final_loss"}``.
    """
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras

    from prodml.components.common import artifacts, dataio, defaults, keys
    from prodml.components.train import default_model
    from prodml.components.train.fn_args import FnArgs

    info = artifacts.ModelInfo.read(model_dir)
    label = artifacts.Label.read(transform_graph_dir)
    spec = tft.TFTransformOutput(transform_graph_dir).transformed_feature_spec()
    batch_size = int(info.params.get("batch_size") or defaults.BATCH_SIZE)
    epochs = len(info.history.get("loss", [])) or int(info.params.get("epochs") or defaults.EPOCHS)
    seed = int(info.params.get("seed", defaults.SEED))
    fn_args = FnArgs(train_files=dataio.split_files(transformed_examples_dir, keys.TRAIN),
                     eval_files=dataio.split_files(transformed_examples_dir, keys.EVAL),
                     transform_output=transform_graph_dir, transformed_feature_spec=spec, label=label.name,
                     problem_type=label.problem_type, classes=label.classes, epochs=epochs,
                     batch_size=batch_size, seed=seed, hyperparameters=dict(info.params.get("hyperparameters") or {}))
    hp = default_model.hyperparameters(fn_args.hyperparameters)
    tf_keras.utils.set_random_seed(seed)
    stats = default_model.train_stats(fn_args, int(hp["bins"]))
    model = default_model.build_model(fn_args, hp, stats)
    steps = default_model.schedule(stats.rows, batch_size, epochs, hp)["round_steps"]

    def parse(records):
        features = tf.io.parse_example(records, spec)
        return features, features.pop(label.name)

    data = (tf.data.TFRecordDataset(fn_args.train_files, compression_type="GZIP",
                                    num_parallel_reads=tf.data.AUTOTUNE).batch(batch_size)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE).repeat())
    start = time.perf_counter()
    history = model.fit(data, steps_per_epoch=steps, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "rows": stats.rows, "epochs": epochs, "steps_per_epoch": steps,
            "batch_size": batch_size, "final_loss": float(history.history["loss"][-1])}


FLOORS = {"tft": tft_floor, "fit": fit_floor}


def main(argv=None) -> int:
    """``scale_floors.py tft|fit ARGS...``: runs one floor and prints its result as one JSON line."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in FLOORS:
        print(f"usage: scale_floors.py {{{'|'.join(FLOORS)}}} ARGS...", file=sys.stderr)
        return 2
    from prodml.components.common.logs import silence_tensorflow

    silence_tensorflow()
    print(json.dumps(FLOORS[argv[0]](*argv[1:])), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
