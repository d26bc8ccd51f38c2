"""Running the training pipeline on this machine through ``kfp.local``.

One folder (``--root``, default ``$PRODML_HOME`` or ``~/.prodml``) holds everything a local
run makes: ``pipeline_root/`` (KFP artifacts), ``registry/`` (pushed versions),
``metadata.sqlite`` (ML Metadata) and ``logs/`` (the full log of each run).
"""

import contextlib
import dataclasses
import io
import json
import os
import re
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, Optional, TextIO

from prodml.components.common import dataio
from prodml.components.common.errors import EXIT_DATA, EXIT_USAGE, ConfigError, ProdmlError
from prodml.components.common.logs import silence_tensorflow
from prodml.components.common.task import ERROR_FILE_ENV
from prodml.pipelines import preflight
from prodml.pipelines.run_summary import summarize_run

# The parameters run_training sets itself rather than taking from its caller.
_SET_BY_RUN = ("data_uri", "label", "model_name", "registry_uri", "metadata_connection")


class PipelineFailed(ProdmlError):
    """A pipeline step failed; the message is that step's own error.

    ``step`` is the failing component and ``error`` the class name of its error, when the step
    reported one. ``exit_code`` is the step's: 2 when the step failed on a usage error (e.g. a
    user module that does not import), 3 otherwise.
    """

    def __init__(self, message: str, step: str = "", error: str = "", exit_code: int = EXIT_DATA):
        super().__init__(message)
        self.step, self.error = step, error
        self.exit_code = exit_code if exit_code in (EXIT_USAGE, EXIT_DATA) else EXIT_DATA


@dataclasses.dataclass(frozen=True)
class LocalRoot:
    """The folders of one local prodml home."""

    path: str

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.path, "pipeline_root")

    @property
    def registry(self) -> str:
        return os.path.join(self.path, "registry")

    @property
    def metadata_db(self) -> str:
        return os.path.join(self.path, "metadata.sqlite")

    @property
    def metadata_connection(self) -> str:
        return f"sqlite://{self.metadata_db}"

    @property
    def logs(self) -> str:
        return os.path.join(self.path, "logs")


def default_root() -> str:
    return os.environ.get("PRODML_HOME") or os.path.join(os.path.expanduser("~"), ".prodml")


def prepare_root(path: Optional[str] = None) -> LocalRoot:
    """Creates the local home and checks that it is writable, naming it if it is not."""
    root = LocalRoot(os.path.abspath(path or default_root()))
    try:
        for folder in (root.path, root.pipeline_root, root.registry, root.logs):
            os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root.path):
            pass
    except OSError as e:
        raise ConfigError(f"The root folder {root.path} is not writable ({e.strerror or e}). "
                          "Pass --root with a folder you can write to, or set PRODML_HOME.") from e
    return root


class ProgressStream(io.TextIOBase):
    """Receives kfp.local's output: everything goes to the run log, progress lines to the terminal."""

    _PROGRESS = re.compile(r"(\d\d:\d\d:\d\d prodml )|(Executing task)|(finished with status)")
    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, log_file: TextIO, terminal: TextIO, verbose: bool = False):
        self._log, self._terminal, self._verbose = log_file, terminal, verbose
        self._pending = ""
        self._started: Dict[str, float] = {}
        self.step_seconds: Dict[str, float] = {}

    def write(self, text: str) -> int:
        self._log.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if self._PROGRESS.search(line):
                formatted = self._format(line)
                self._terminal.write((line if self._verbose else formatted) + "\n")
            elif self._verbose:
                self._terminal.write(line + "\n")
        self._terminal.flush()
        return len(text)

    def flush(self) -> None:
        self._log.flush()
        self._terminal.flush()

    def _format(self, line: str) -> str:
        line = self._ANSI.sub("", line).strip()
        match = re.search(r"Executing task '([\w-]+)'", line)
        if match:
            self._started[match.group(1)] = time.perf_counter()
            return f"▶ {match.group(1)}"
        match = re.search(r"Task '([\w-]+)' finished with status (\w+)", line)
        if match:
            task, status = match.groups()
            seconds = time.perf_counter() - self._started.get(task, time.perf_counter())
            self.step_seconds[task] = round(seconds, 3)
            mark = "✔" if status == "SUCCESS" else "✘"
            return f"{mark} {task} {status.lower()} in {seconds:.1f}s"
        return "  " + line


def run_training(data_uri: str, label: str, model_name: str, root: Optional[str] = None,
                 progress: TextIO = sys.stderr, verbose: bool = False, **params: Any) -> Dict[str, Any]:
    """Runs the training pipeline locally and returns its summary.

    ``params`` are further ``training_pipeline`` parameters (problem_type, drop_columns,
    preprocessing_module, trainer_module, epochs, thresholds, ...). The summary holds run_id,
    metrics, blessed, reasons, pushed (version and uri, or None), data_version, metadata_db
    and log_file.

    Before any step runs, every parameter and the data's header are checked
    (:func:`prodml.pipelines.preflight.check_training`): a bad one raises ``ConfigError`` (or
    ingest's ``InputDataError`` when the data cannot be read). A failing step raises
    :class:`PipelineFailed` with that step's message and exit code.
    """
    silence_tensorflow()
    from kfp import local

    from prodml.pipelines.training import training_pipeline

    data_uri = os.path.abspath(data_uri) if dataio.is_local(data_uri) else data_uri
    for key in ("preprocessing_module", "trainer_module", "user_schema_uri", "baseline_statistics_uri"):
        if params.get(key) and dataio.is_local(params[key]):
            params[key] = os.path.abspath(dataio.local_path(params[key]))
    known = [name for name in training_pipeline.component_spec.inputs if name not in _SET_BY_RUN]
    params = preflight.check_training(data_uri, label, model_name, params, known_parameters=known)
    local_root = prepare_root(root)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=local_root.pipeline_root,
               raise_on_error=True)
    log_path = os.path.join(local_root.logs, f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.log")
    error_file = log_path + ".error"
    previous_error_env = os.environ.get(ERROR_FILE_ENV)
    os.environ[ERROR_FILE_ENV] = error_file
    try:
        started = time.perf_counter()
        with open(log_path, "w", encoding="utf-8") as log_file:
            stream = ProgressStream(log_file, progress, verbose)
            with contextlib.redirect_stdout(stream):
                try:
                    task = training_pipeline(data_uri=data_uri, label=label, model_name=model_name,
                                             registry_uri=local_root.registry,
                                             metadata_connection=local_root.metadata_connection, **params)
                except RuntimeError as e:
                    raise _step_failure(error_file, log_path, e) from e
    finally:
        if previous_error_env is None:
            os.environ.pop(ERROR_FILE_ENV, None)
        else:
            os.environ[ERROR_FILE_ENV] = previous_error_env
        if os.path.exists(error_file):
            os.remove(error_file)
    summary = summarize_run(task.output)
    summary.update(metadata_db=local_root.metadata_db, log_file=log_path, registry=local_root.registry,
                   step_seconds=stream.step_seconds, total_seconds=round(time.perf_counter() - started, 3))
    return summary


def _step_failure(error_file: str, log_path: str, error: RuntimeError) -> PipelineFailed:
    """The failed step's own error (message, class, exit code) from the error file it wrote, if any."""
    records = []
    if os.path.exists(error_file):
        with open(error_file, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    record = {"message": line.strip()}
                if isinstance(record, dict) and record.get("message"):
                    records.append(record)
    if records:
        last = records[-1]  # steps run one at a time and the first failure stops the run
        return PipelineFailed(f"{last['message']} (full log: {log_path})", step=str(last.get("component", "")),
                              error=str(last.get("error", "")), exit_code=last.get("exit_code", EXIT_DATA))
    plain = ProgressStream._ANSI.sub("", str(error))
    return PipelineFailed(f"{plain} See the full log with the traceback: {log_path}")
