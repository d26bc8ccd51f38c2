"""Running the training pipeline on this machine through ``kfp.local``.

One folder (``--root``, default ``$PRODML_HOME`` or ``~/.prodml``) holds everything a local
run makes: ``pipeline_root/`` (KFP artifacts), ``registry/`` (pushed versions),
``metadata.sqlite`` (ML Metadata) and ``logs/`` (the full log of each run).
"""

import contextlib
import dataclasses
import io
import os
import re
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, Optional, TextIO

from prodml.components.common import dataio
from prodml.components.common.errors import ConfigError, InputDataError, ProdmlError
from prodml.components.common.logs import silence_tensorflow
from prodml.components.common.task import ERROR_FILE_ENV


class PipelineFailed(ProdmlError):
    """A pipeline step failed; the message is that step's own error."""


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


def check_data_uri(data_uri: str) -> None:
    """Fails early, naming the path, when the input data does not exist."""
    if any(ch in data_uri for ch in "*?["):
        return
    if not dataio.exists(data_uri):
        raise InputDataError(f"The data file {data_uri} does not exist. Check the path given to --data "
                             "(a CSV or Parquet file, a folder of them, a glob, or a gs:// / s3:// URI).")


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
    and log_file. A failing step raises :class:`PipelineFailed` with that step's message.
    """
    silence_tensorflow()
    from kfp import local

    from prodml.pipelines.training import training_pipeline

    local_root = prepare_root(root)
    check_data_uri(data_uri)
    for key in ("preprocessing_module", "trainer_module", "user_schema_uri"):
        if params.get(key) and not dataio.exists(params[key]):
            raise ConfigError(f"The file {params[key]} given as {key} does not exist.")
    data_uri = os.path.abspath(data_uri) if dataio.is_local(data_uri) else data_uri
    for key in ("preprocessing_module", "trainer_module", "user_schema_uri", "baseline_statistics_uri"):
        if params.get(key) and dataio.is_local(params[key]):
            params[key] = os.path.abspath(params[key])

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
                    raise PipelineFailed(_failure_message(error_file, log_path, e)) from e
    finally:
        if previous_error_env is None:
            os.environ.pop(ERROR_FILE_ENV, None)
        else:
            os.environ[ERROR_FILE_ENV] = previous_error_env
        if os.path.exists(error_file):
            os.remove(error_file)
    summary = _restore_integers(dict(task.output))
    summary.update(metadata_db=local_root.metadata_db, log_file=log_path, registry=local_root.registry,
                   step_seconds=stream.step_seconds, total_seconds=round(time.perf_counter() - started, 3))
    return summary


def _restore_integers(summary: Dict[str, Any]) -> Dict[str, Any]:
    """KFP passes dict outputs as protobuf Structs, whose numbers are all floats; counts are ints."""
    if summary.get("pushed"):
        summary["pushed"]["version"] = int(summary["pushed"]["version"])
    data_version = summary.get("data_version") or {}
    data_version["row_counts"] = {k: int(v) for k, v in data_version.get("row_counts", {}).items()}
    if "example_count" in summary.get("metrics", {}):
        summary["metrics"]["example_count"] = int(summary["metrics"]["example_count"])
    return summary


def _failure_message(error_file: str, log_path: str, error: RuntimeError) -> str:
    if os.path.exists(error_file):
        with open(error_file, encoding="utf-8") as f:
            reason = f.read().strip()
        return f"{reason} (full log: {log_path})"
    plain = ProgressStream._ANSI.sub("", str(error))
    return f"{plain} See the full log with the traceback: {log_path}"
