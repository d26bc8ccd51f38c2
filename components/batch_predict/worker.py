"""One task, end to end, the same on every engine: read it, score it, write its part and dead letters.

Beam's DoFn, the Spark job's partitions and the in-process runner all call
:func:`run_task`. It is idempotent: a retried task rewrites the same part file, dead-letter file
and summary, each published by rename, so an engine's retries never duplicate rows.
"""

import atexit
import dataclasses
import os
import threading
import time
from typing import Dict, List, Optional, Tuple

from prodml.components.batch_predict import core, dead_letters, outputs, sources
from prodml.components.common import dataio, errors


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every task of a job shares (picklable: it travels to Beam and Spark workers)."""

    model_dir: str
    model_version: Optional[int]
    carried: Tuple[str, ...]
    na_values: Tuple[str, ...]
    output_format: str
    staging_uri: str
    chunk_rows: int
    data_sha256: str = ""       # the input's fingerprint: with files, makes each row's request_id
    files: Tuple[str, ...] = ()  # the input's files, in the plan's order


_MODELS: Dict[Tuple[str, Optional[int]], core.Model] = {}
# Beam's multi-threaded DirectRunner calls setup() from several threads at once: load once.
_LOADING = threading.Lock()
# Drop the models before the interpreter tears TensorFlow down (else its finalizers print errors).
atexit.register(_MODELS.clear)


def load_model(model_dir: str, version: Optional[int]) -> core.Model:
    """The model, loaded once per worker process (a SavedModel load takes seconds)."""
    key = (model_dir, version)
    with _LOADING:
        if key not in _MODELS:
            _MODELS[key] = core.Model(model_dir, version)
        return _MODELS[key]


def schema_for(model: core.Model, carried) -> object:
    columns = core.output_columns(model.label, carried)
    predicted = core.prediction_columns(model.label)
    floats = predicted if model.label.problem_type == "regression" else predicted[:-1]
    return outputs.arrow_schema(columns, floats, [core.VERSION_COLUMN])


def run_task(task: sources.Task, settings: Settings) -> dict:
    """Scores one task; returns (and writes to staging) its summary ``{task, rows, scored, errors, ...}``."""
    start = time.perf_counter()
    model = load_model(settings.model_dir, settings.model_version)
    staging = outputs.Staging("", settings.output_format, uri=settings.staging_uri)
    writer = outputs.PartWriter(staging.part_uri(task.index), settings.output_format,
                                schema_for(model, settings.carried))
    rows = 0
    letters: List[dict] = []
    id_prefix = (core.request_id_prefix(settings.data_sha256, settings.files.index(task.file))
                 if settings.data_sha256 and task.file in settings.files else "")
    try:
        for chunk in sources.read_task(task, settings.chunk_rows):
            scored = core.score_chunk(model, chunk, settings.carried, settings.na_values, id_prefix)
            rows += len(chunk)
            letters += scored.dead_letters
            if scored.rows:
                writer.write(scored.columns)
        writer.close()
    except BaseException:
        writer.discard()
        raise
    if letters:
        dead_letters.write(dead_letters.task_file(settings.staging_uri, task.index), letters)
    summary = {"task": task.index, "file": task.file, "rows": rows, "scored": writer.rows,
               "errors": len(letters), "first_errors": letters[:dead_letters.FIRST],
               "seconds": round(time.perf_counter() - start, 3), "pid": os.getpid()}
    dataio.write_json(staging.task_summary_uri(task.index), summary)
    return summary


def run_task_reporting_errors(task: sources.Task, settings: Settings) -> dict:
    """:func:`run_task`, leaving a user error (ProdmlError) in staging for the driver to re-raise.

    Engines wrap a worker's exception in their own (with a remote traceback); the driver reads
    ``_tasks/error-<task>.json`` to show the user the original one-paragraph message instead.
    """
    try:
        return run_task(task, settings)
    except errors.ProdmlError as e:
        uri = dataio.join(settings.staging_uri, outputs.TASKS_DIR, f"error-{task.index:05d}.json")
        dataio.write_json(uri, {"task": task.index, "error": type(e).__name__, "message": str(e)})
        raise


def reraise_task_error(staging_uri: str) -> None:
    """Raises the first user error a task left in staging, if any (the class it had in the worker)."""
    folder = dataio.join(staging_uri, outputs.TASKS_DIR)
    if not dataio.exists(folder):
        return
    names = sorted(n for n in dataio.list_files(folder) if n.startswith("error-") and ".tmp-" not in n)
    if names:
        record = dataio.read_json(dataio.join(folder, names[0]))
        kind = getattr(errors, record.get("error", ""), None)
        if not (isinstance(kind, type) and issubclass(kind, errors.ProdmlError)):
            kind = errors.InputDataError
        raise kind(record["message"])
