"""Batch prediction: scores every row of CSV, Parquet or tf.Example files with a model version.

Everything the run needs is checked before any row is scored: the model and version, the
features against the input's header, the ID columns, the output location (empty, or
``overwrite``) and that it is writable. The input is then cut into tasks (:mod:`sources`), which
an engine scores in parallel (:mod:`beam_job`, :mod:`spark_job`, or in this process), each
through the same core (:mod:`core`). Rows that cannot be scored go to the dead-letter location;
when they are more than ``max_error_rate`` of the rows the run fails after writing them, and
nothing is published. Otherwise the predictions are published at ``output_uri`` in one step
(:mod:`outputs`).

Every output row carries the version that scored it (``model_version``) and a ``request_id``
that is stable across runs over the same input: the input's fingerprint, the file and the row
number (:func:`core.request_id_prefix`), so labels can be joined to batch predictions like to
logged online traffic.
"""

import math
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from prodml.components.batch_predict import core, dead_letters, outputs, sources, worker
from prodml.components.common import artifacts, dataio, defaults, heavy_imports, keys, lineage, registry
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.common.logs import get_logger
from prodml.components.common.names import check_model_name, check_version

log = get_logger(__name__)

BEAM, SPARK, LOCAL = "beam", "spark", "local"
ENGINES = (BEAM, SPARK, LOCAL)
LATEST = "latest"
ROWS_PER_TASK = 50_000      # rows a worker reads at once from the input: the unit of parallelism
CHUNK_ROWS = 25_000         # rows scored at a time within a task: bounds a worker's memory
DEAD_LETTER_SUFFIX = "-dead-letters"
PROGRESS_SECONDS = 10.0
COMPONENT = "batch_predict"
PIPELINE_NAME = defaults.BATCH_PIPELINE_NAME
PREDICTIONS_KEY = keys.PREDICTIONS_KEY
DATA_KEY = "data"


def run_batch_predict(data_uri: str, output_uri: str, model_dir: str = "", registry_uri: str = "",
                      model_name: str = "", version: Union[int, str, None] = LATEST,
                      output_format: str = outputs.PARQUET, id_columns: Iterable[str] = (),
                      engine: str = BEAM, beam_args: Sequence[str] = (), spark_master: str = "local[2]",
                      max_error_rate: float = 0.0, overwrite: bool = False, dead_letter_uri: str = "",
                      na_values: Optional[Iterable[str]] = None, rows_per_task: int = ROWS_PER_TASK,
                      chunk_rows: int = CHUNK_ROWS, summary_path: str = "",
                      progress_seconds: float = PROGRESS_SECONDS) -> Dict[str, Any]:
    """Scores ``data_uri`` with a model and publishes one output row per scored input row at ``output_uri``.

    Args:
        data_uri: CSV, Parquet or gzipped tf.Example files: a file, a folder or a glob (local or gfile URI).
        output_uri: the folder to publish the predictions in; it must not exist or be empty, unless
            ``overwrite``.
        model_dir: a model folder (train's output, or a registry version). Or, instead:
        registry_uri, model_name, version: a registry version; ``version`` is a number ≥ 1 or "latest".
        output_format: parquet (default), csv or jsonl.
        id_columns: input columns to carry into the output; empty carries every input column.
        engine: beam (default; ``beam_args`` choose the runner), spark (``spark_master``) or local
            (this process, one core).
        max_error_rate: the share of rows that may fail to score (0 to 1). Default 0: any bad row
            fails the run, after the dead letters are written.
        dead_letter_uri: where rows that cannot be scored go (default ``<output_uri>-dead-letters``);
            every run replaces it.
        na_values: cells read as missing (default: the training default ``defaults.NA_VALUES``).
        summary_path: if given, the run's summary as Markdown is written there.

    Returns:
        ``{"output_uri", "dead_letter_uri", "rows", "scored", "errors", "error_rate", "model_uri",
        "model_name", "model_version", "data_uri", "data_sha256", "data_size_bytes", "engine",
        "worker_processes", "output_format", "seconds", "rows_per_second", "columns", "first_errors"}``.
    """
    fmt = outputs.check_format(output_format)
    engine = _check_engine(engine)
    max_error_rate = _check_rate(max_error_rate)
    id_columns = _id_columns(id_columns)
    for name, value in (("rows_per_task", rows_per_task), ("chunk_rows", chunk_rows)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a whole number ≥ 1, got {value!r}.")
    na = tuple(defaults.NA_VALUES if na_values is None else na_values)
    model_uri, model_version = resolve_model(model_dir, registry_uri, model_name, version)
    info = artifacts.ModelInfo.read(model_uri)
    outputs.check_destination(output_uri, overwrite)
    dead_letter_uri = dead_letter_uri or output_uri.rstrip("/") + DEAD_LETTER_SUFFIX

    start = time.perf_counter()
    plan = sources.plan(data_uri, rows_per_task)
    carried = _carried(plan, info, id_columns, data_uri)
    columns = core.output_columns(info.label, carried)
    staging = outputs.Staging(output_uri, fmt).create()
    settings = worker.Settings(model_dir=model_uri, model_version=model_version, carried=tuple(carried),
                               na_values=na, output_format=fmt, staging_uri=staging.uri, chunk_rows=chunk_rows,
                               data_sha256=plan.sha256, files=tuple(plan.files))
    log.info("scoring %s (%s, %d task%s, sha256 %s) with %s on %s", data_uri, plan.format, len(plan.tasks),
             "" if len(plan.tasks) == 1 else "s", plan.sha256[:12], _describe_model(model_uri, model_version),
             engine)
    try:
        with _Progress(staging, plan.rows, progress_seconds):
            _run_engine(engine, plan.tasks, settings, beam_args, spark_master)
        summaries = staging.task_summaries()
        missing = sorted({t.index for t in plan.tasks} - {s["task"] for s in summaries})
        if missing:
            raise InputDataError(f"Tasks {missing[:10]} of the run left no result in {staging.uri}; the engine "
                                 "lost them. Run again.")
        rows = sum(s["rows"] for s in summaries)
        scored = sum(s["scored"] for s in summaries)
        errors = sum(s["errors"] for s in summaries)
        first_errors = [e for s in summaries for e in s["first_errors"]][:dead_letters.FIRST]
        _publish_dead_letters(staging, dead_letter_uri, errors)
        rate = errors / rows if rows else 0.0
        if errors and rate > max_error_rate:
            raise InputDataError(_too_many_errors(errors, rows, max_error_rate, first_errors, dead_letter_uri))
        seconds = time.perf_counter() - start
        result = {
            "output_uri": output_uri, "dead_letter_uri": dead_letter_uri if errors else "",
            "rows": rows, "scored": scored, "errors": errors, "error_rate": rate, "model_uri": model_uri,
            "model_name": model_name, "model_version": model_version, "data_uri": data_uri,
            "data_sha256": plan.sha256, "data_size_bytes": plan.size_bytes, "data_files": len(plan.files),
            "engine": engine, "worker_processes": len({s.get("pid") for s in summaries}),
            "output_format": fmt, "columns": columns, "first_errors": first_errors,
            "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds, 1) if seconds else 0.0}
        staging.publish(result, overwrite=overwrite)
    except BaseException:
        staging.abort()
        raise
    log.info("scored %d of %d rows (%d dead letters) in %.1fs (%.0f rows/s) → %s", scored, rows, errors,
             result["seconds"], result["rows_per_second"], output_uri)
    if summary_path:
        dataio.write_text_atomic(summary_path, render_markdown(result))
    return result


# ---- the model -----------------------------------------------------------------------------------

def resolve_model(model_dir: str, registry_uri: str, model_name: str, version: Union[int, str, None]):
    """(model folder, registry version or None) of what the user named; ConfigError lists what exists."""
    if model_dir and (registry_uri or model_name):
        raise ConfigError("Give either a model folder (model_dir) or a registry model (registry_uri and "
                          f"model_name), not both (got model_dir='{model_dir}', model_name='{model_name}').")
    if model_dir:
        if not dataio.exists(dataio.join(model_dir, "saved_model.pb")):
            raise ConfigError(f"{model_dir} holds no saved_model.pb: give the model folder that train wrote, or "
                              "a registry version.")
        return model_dir, core.version_of(model_dir)
    if not registry_uri or not model_name:
        raise ConfigError("No model given: pass a registry model (--model-name, with the registry of --root) "
                          "or a model folder (model_dir).")
    check_model_name(model_name, "--model-name")
    wanted = parse_version(version)
    versions = registry.list_versions(registry_uri, model_name)
    if not versions:
        models = _registry_models(registry_uri)
        listed = f"It holds: {', '.join(models)}." if models else "It holds no model yet."
        raise ConfigError(f"Model '{model_name}' has no pushed version in the registry {registry_uri}. {listed} "
                          "Check --model-name, or push the model first (prodml run training).")
    chosen = versions[-1] if wanted is None else wanted
    if chosen not in versions:
        raise ConfigError(f"Model '{model_name}' has no version {chosen} in {registry_uri}; its versions are "
                          f"{', '.join(map(str, versions))}. Give one of those, or 'latest'.")
    return registry.version_uri(registry_uri, model_name, chosen), chosen


def parse_version(version: Union[int, str, None]) -> Optional[int]:
    """None for the latest; a version number ≥ 1 otherwise (ConfigError for anything else)."""
    if version is None or (isinstance(version, str) and version.strip().lower() in (LATEST, "")):
        return None
    if isinstance(version, str):
        try:
            version = int(version.strip())
        except ValueError:
            raise ConfigError(f"--version '{version}' is not a model version: give a number ≥ 1 or "
                              "'latest'.") from None
    return check_version(version)


def _registry_models(registry_uri: str) -> List[str]:
    if not dataio.exists(registry_uri):
        return []
    if dataio.is_local(registry_uri):
        import os

        names = os.listdir(dataio.local_path(registry_uri))
    else:
        names = [n.rstrip("/") for n in dataio.gfile().listdir(registry_uri)]
    return sorted(n for n in names if _is_name(n) and registry.list_versions(registry_uri, n))


def _is_name(name: str) -> bool:
    try:
        check_model_name(name)
        return True
    except ConfigError:
        return False


def _describe_model(model_uri: str, version: Optional[int]) -> str:
    return f"version {version} ({model_uri})" if version is not None else model_uri


# ---- parameters ----------------------------------------------------------------------------------

def _check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ConfigError(f"Engine '{engine}' is not known: use {', '.join(ENGINES)} (--runner).")
    return engine


def _check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or math.isnan(rate) or not 0 <= rate <= 1:
        raise ConfigError(f"max_error_rate must be a number from 0 to 1 (the share of rows allowed to fail), "
                          f"got {rate!r}.")
    return float(rate)


def _id_columns(id_columns: Iterable[str]) -> List[str]:
    if isinstance(id_columns, str):
        id_columns = [c.strip() for c in id_columns.split(",")]
    return [c for c in id_columns if c]


def _carried(plan: sources.Plan, info: artifacts.ModelInfo, id_columns: List[str], data_uri: str) -> List[str]:
    """The input columns to carry, after checking that the input has every feature the model needs."""
    if plan.format == sources.TFRECORD:
        # tf.Example files have no header: a feature absent from an example is a missing value.
        return id_columns or sorted(set(info.raw_features) | {info.label.name})
    available = set(plan.columns)
    missing = sorted(f for f in info.raw_features if f not in available)
    if missing:
        first = plan.files[0]
        raise InputDataError(
            f"{first} has no column {', '.join(repr(m) for m in missing)}, which the model needs (it was trained "
            f"on {', '.join(sorted(info.raw_features))}). Add the column (empty cells are missing values), or "
            "score with a model trained without it.")
    unknown = [c for c in id_columns if c not in available]
    if unknown:
        raise ConfigError(f"ID column '{unknown[0]}' is not a column of {data_uri} (its columns are "
                          f"{', '.join(plan.columns)}). Check --id-columns.")
    return id_columns or list(plan.columns)


# ---- running -------------------------------------------------------------------------------------

def _run_engine(engine: str, tasks: Sequence[sources.Task], settings: worker.Settings,
                beam_args: Sequence[str], spark_master: str) -> None:
    if not tasks:
        return
    try:
        if engine == LOCAL:
            for task in tasks:
                worker.run_task(task, settings)
        elif engine == BEAM:
            with heavy_imports.frozen_imports():
                from prodml.components.batch_predict import beam_job

            beam_job.run(tasks, settings, beam_args)
        else:
            from prodml.components.batch_predict import spark_job

            spark_job.run(tasks, settings, spark_master)
    except Exception:
        # A worker's user error comes back wrapped in the engine's own exception: show the original.
        worker.reraise_task_error(settings.staging_uri)
        raise


class _Progress:
    """Logs rows done and rows/s every ``seconds`` while the engine runs (from the task summaries)."""

    def __init__(self, staging: outputs.Staging, total: Optional[int], seconds: float):
        self.staging, self.total, self.seconds = staging, total, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._start = time.perf_counter()

    def __enter__(self):
        if self.seconds > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _watch(self):
        while not self._stop.wait(self.seconds):
            try:
                done = sum(s["rows"] for s in self.staging.task_summaries())
            except Exception:  # noqa: BLE001 - a summary being renamed; the next poll sees it
                continue
            elapsed = time.perf_counter() - self._start
            of = f" of {self.total:,}" if self.total else ""
            log.info("%s rows done%s (%.0f rows/s)", f"{done:,}", of, done / elapsed if elapsed else 0.0)


def _publish_dead_letters(staging: outputs.Staging, dead_letter_uri: str, errors: int) -> None:
    """Replaces the dead-letter folder with this run's dead letters (removes it when there are none)."""
    folder = dataio.join(staging.uri, dead_letters.FOLDER)
    if dataio.exists(dead_letter_uri):
        outputs.remove_tree(dead_letter_uri)
    if errors:
        for name in dataio.list_files(folder):
            if ".tmp-" not in name:
                dataio.copy_file(dataio.join(folder, name), dataio.join(dead_letter_uri, name))
    outputs.remove_tree(folder)


def _too_many_errors(errors: int, rows: int, max_error_rate: float, first: List[dict], uri: str) -> str:
    shown = "; ".join(dead_letters.describe(e) for e in first)
    allowed = ("any bad row fails the run (max_error_rate 0)" if max_error_rate == 0
               else f"at most {max_error_rate:.2%} may fail (max_error_rate {max_error_rate:g})")
    return (f"{errors:,} of {rows:,} rows ({errors / rows:.2%}) could not be scored, and {allowed}. First: {shown}. "
            f"Every bad row is in {uri} with its raw text and reason. Nothing was published: correct those rows, "
            "or raise --max-error-rate to publish the predictions of the rest.")


# ---- reporting -----------------------------------------------------------------------------------

def render_markdown(result: Dict[str, Any]) -> str:
    """The run as a Markdown card: counts, model, data, output and the first dead letters."""
    version = result["model_version"]
    lines = [
        "# Batch prediction", "",
        "| | |", "|---|---|",
        f"| Model | {result['model_name'] or '-'} version {version if version is not None else '-'} "
        f"(`{result['model_uri']}`) |",
        f"| Data | `{result['data_uri']}` (sha256 `{result['data_sha256']}`) |",
        f"| Output | `{result['output_uri']}` ({result['output_format']}) |",
        f"| Rows | {result['rows']:,} read, {result['scored']:,} scored, {result['errors']:,} dead letters "
        f"({result['error_rate']:.2%}) |",
        f"| Engine | {result['engine']}, {result['seconds']:.1f} s, {result['rows_per_second']:,.0f} rows/s |",
        f"| Columns | {', '.join(result['columns'])} |",
    ]
    if result["errors"]:
        lines += ["", f"## Dead letters (`{result['dead_letter_uri']}`)", ""]
        lines += [f"- {dead_letters.describe(e)}" for e in result["first_errors"]]
    return "\n".join(lines) + "\n"


def lineage_records(result: Dict[str, Any]):
    """(inputs, outputs, parameters) of a run for ``lineage.record_execution`` / the wrapper.

    The model version is matched by URI to what push recorded, the input data by URI and SHA-256
    to what ingest recorded (or recorded anew); the output is a ``system.Dataset`` with the counts.
    """
    inputs = {
        keys.MODEL_KEY: lineage.ArtifactRecord(result["model_uri"], lineage.MODEL),
        DATA_KEY: lineage.ArtifactRecord(result["data_uri"], lineage.DATASET,
                                         {"sha256": result["data_sha256"],
                                          "size_bytes": result["data_size_bytes"]}),
    }
    output_props = {"rows": result["rows"], "scored": result["scored"], "errors": result["errors"],
                    "output_uri": result["output_uri"], "dead_letter_uri": result["dead_letter_uri"],
                    "format": result["output_format"], "model_name": result["model_name"],
                    "model_version": result["model_version"] if result["model_version"] is not None else 0,
                    "data_sha256": result["data_sha256"]}
    outputs_ = {PREDICTIONS_KEY: lineage.ArtifactRecord(result["output_uri"], lineage.DATASET, output_props)}
    parameters = {"engine": result["engine"], "output_format": result["output_format"],
                  "model_name": result["model_name"], "model_version": output_props["model_version"]}
    return inputs, outputs_, parameters
