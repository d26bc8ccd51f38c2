"""The Spark engine: the same prediction core as a ``mapInPandas`` function, and a ``spark-submit`` entry point.

Two ways in:

- **Your own DataFrame.** :func:`predict_frames` returns a function for ``df.mapInPandas``:
  raw input columns in, the carried columns plus the prediction columns, ``model_version`` and
  ``error`` out (one row per input row; a row that cannot be scored has null predictions and
  the reason in ``error``)::

      fn = predict_frames("/registry/chicago-taxi/3", id_columns=["trip_id"])
      scored = df.mapInPandas(fn, schema=output_schema("/registry/chicago-taxi/3", ["trip_id"]))

- **A whole batch job**, exactly as ``prodml run batch-predict --runner spark`` runs it (input
  fingerprint, dead letters, ``max_error_rate``, atomic publish)::

      spark-submit --master spark://HOST:7077 -m ... \\
        $(python -c 'import prodml.components.batch_predict.spark_job as j; print(j.__file__)') \\
        --data gs://b/trips/ --output gs://b/scored/2024-06-01 --model-dir gs://b/registry/chicago-taxi/3

  or ``python -m prodml.components.batch_predict.spark_job --master local[2] ...``. The job
  spreads :mod:`sources` tasks over the executors (an RDD of task descriptions); each executor reads its
  rows, scores them and writes its part itself (:func:`worker.run_task`), so only task
  descriptions pass through Spark.

Executors need prodml and its runtime libraries (the prodml runtime image, or the same
virtualenv): ``PYSPARK_PYTHON`` defaults to this interpreter.
"""

import argparse
import json
import os
import sys
from typing import Iterable, Iterator, List, Optional, Sequence

from prodml.components.batch_predict import core, sources, spark_jvm, worker

ERROR_COLUMN = "error"
DAEMON_MODULE = "prodml.components.batch_predict.spark_daemon"


def predict_frames(model_dir: str, id_columns: Sequence[str] = (), version: Optional[int] = None,
                   na_values: Optional[Iterable[str]] = None):
    """A ``mapInPandas`` function scoring raw rows with the model in ``model_dir`` (see the module docstring).

    Input columns may hold text or numbers (null is a missing value); every feature of the
    model must be a column. ``id_columns`` are carried through (all columns when empty).
    """
    from prodml.components.common import defaults

    na = tuple(defaults.NA_VALUES if na_values is None else na_values)
    version = core.version_of(model_dir) if version is None else version

    def score(frames: Iterator) -> Iterator:
        import numpy as np
        import pandas as pd

        model = worker.load_model(model_dir, version)
        for frame in frames:
            carried = list(id_columns) or list(frame.columns)
            cells = {name: _text(frame[name]) for name in frame.columns}
            raw = frame.astype(str).agg(",".join, axis=1).tolist() if len(frame) else []
            chunk = core.Chunk("dataframe", cells, raw, np.arange(1, len(frame) + 1))
            scored = core.score_chunk(model, chunk, carried, na)
            bad = {letter["row"] - 1: letter["reason"] for letter in scored.dead_letters}
            good = np.array([i not in bad for i in range(len(frame))], dtype=bool)
            out = pd.DataFrame({name: frame[name].astype(object).where(frame[name].notna(), None).map(
                lambda v: v if v is None else str(v)) for name in carried})
            for name in core.output_columns(model.label, carried)[len(carried):]:
                column = np.full(len(frame), None, dtype=object)
                if scored.rows:
                    column[good] = scored.columns[name]
                out[name] = column
            out[ERROR_COLUMN] = [bad.get(i) for i in range(len(frame))]
            yield out

    return score


def output_schema(model_dir: str, id_columns: Sequence[str]) -> str:
    """The Spark DDL schema of :func:`predict_frames`' output (``id_columns`` as strings)."""
    from prodml.components.common import artifacts

    label = artifacts.ModelInfo.read(model_dir).label
    columns = core.output_columns(label, list(id_columns))
    predicted = core.prediction_columns(label)
    floats = set(predicted if label.problem_type == "regression" else predicted[:-1])
    fields = [f"`{c}` {'float' if c in floats else 'long' if c == core.VERSION_COLUMN else 'string'}"
              for c in columns]
    return ", ".join(fields + [f"`{ERROR_COLUMN}` string"])


def _text(values):
    import numpy as np

    def cell(v):
        if v is None or (isinstance(v, float) and v != v):
            return None
        if isinstance(v, bytes):
            return v.decode("utf-8", errors="replace")
        return str(v)

    return np.array([cell(v) for v in values.tolist()], dtype=object)


def session(master: str = ""):
    """The Spark session of the job: ``master``, or spark-submit's, or local[2] outside spark-submit.

    Python workers run this interpreter (``PYSPARK_PYTHON``, unless set), so they import prodml.
    """
    return _session(master)


def _session(master: str, make_archive: bool = False):
    """:func:`session`; ``make_archive``: a local JVM may write the class archive (see :mod:`spark_jvm`)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    if not master and "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = "local[2]"  # not under spark-submit, which sets the gateway and its own master
    builder = SparkSession.builder.appName("prodml-batch-predict")
    if master:
        builder = builder.master(master)
    if master.startswith("local") and "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.config("spark.driver.extraJavaOptions", spark_jvm.driver_options(make_archive))
    # No web UI: a batch job has no one watching it, and it costs seconds of start-up.
    spark = (builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.python.daemon.module", DAEMON_MODULE)
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run(tasks: Sequence[sources.Task], settings: worker.Settings, master: str = "local[2]") -> None:
    """Runs every task on Spark (``master``, or the one spark-submit set) and waits for the end.

    The task descriptions go out as a plain RDD, one partition per core: a DataFrame would add
    an Arrow round trip and seconds of start-up for a handful of small records. With a local
    master and no Spark session yet, a warm daemon imports TensorFlow while the JVM starts
    (:mod:`spark_daemon`).
    """
    from prodml.components.batch_predict import spark_daemon

    starts_local = _starts_local_session(master)
    warm = spark_daemon.WarmDaemon() if starts_local else None
    try:
        spark = _session(master, make_archive=starts_local)
        context = spark.sparkContext
        if warm:
            # Sent with the job's Python function: the daemon Spark starts for it finds the warm one.
            context.environment[spark_daemon.WARM_ENV] = warm.socket_path
        payload = [json.dumps(_task_dict(t)) for t in tasks]
        parallelism = max(1, min(len(tasks), context.defaultParallelism))
        context.parallelize(payload, parallelism).mapPartitions(_run_tasks(settings)).collect()
    finally:
        if warm:
            from pyspark import SparkContext

            if SparkContext._active_spark_context is not None:
                SparkContext._active_spark_context.environment.pop(spark_daemon.WARM_ENV, None)
            warm.stop()


def _starts_local_session(master: str) -> bool:
    """True when :func:`session` will start a local Spark (outside spark-submit, no session running yet)."""
    if "PYSPARK_GATEWAY_PORT" in os.environ or not (master or "local").startswith("local"):
        return False
    from pyspark import SparkContext

    return SparkContext._active_spark_context is None


def _task_dict(task: sources.Task) -> dict:
    import dataclasses

    return dataclasses.asdict(task)


def _run_tasks(settings: worker.Settings):
    def run_tasks(payloads):
        for payload in payloads:
            result = worker.run_task_reporting_errors(sources.Task(**json.loads(payload)), settings)
            yield {k: result[k] for k in ("task", "rows", "scored", "errors", "pid")}

    return run_tasks


def main(argv: Optional[List[str]] = None) -> int:
    """``spark-submit`` entry point: the batch job with engine spark (flags as ``prodml run batch-predict``)."""
    from prodml.components.batch_predict.executor import run_batch_predict
    from prodml.components.common.errors import ProdmlError
    from prodml.components.common.logs import silence_tensorflow

    silence_tensorflow()
    parser = argparse.ArgumentParser(prog="spark_job", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--model-dir", default="")
    parser.add_argument("--registry", default="")
    parser.add_argument("--model-name", default="")
    parser.add_argument("--version", default="latest")
    parser.add_argument("--format", default="parquet")
    parser.add_argument("--id-columns", default="")
    parser.add_argument("--max-error-rate", type=float, default=0.0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--master", default="", help="default: the master spark-submit was given")
    args = parser.parse_args(argv)
    try:
        result = run_batch_predict(args.data, args.output, model_dir=args.model_dir, registry_uri=args.registry,
                                   model_name=args.model_name, version=args.version, output_format=args.format,
                                   id_columns=args.id_columns, engine="spark", spark_master=args.master,
                                   max_error_rate=args.max_error_rate, overwrite=args.overwrite)
    except ProdmlError as e:
        print(f"batch prediction failed: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps({k: v for k, v in result.items() if k != "columns"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
