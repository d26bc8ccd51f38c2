"""Crossing over to the serving environment, where the candidate must load and answer.

The component runs in the runtime environment (kfp's executor, TF 2.16, ML Metadata), which cannot
hold kserve (kfp pins protobuf<5, kserve needs >=5). As TFX's InfraValidator keeps the model server
apart from the component, the predictor runs as a separate process in the serving environment:
in a cluster the infra-validate image's second venv, ``/opt/serving``, named by
``$PRODML_SERVING_PYTHON`` (Dockerfile.runtime, target infra-validate); locally, under ``kfp.local``, the same
variable or the repository's ``.venv/serving``.
"""

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any, Dict

from prodml.components.common.errors import ConfigError, ProdmlError

SERVING_PYTHON_ENV = "PRODML_SERVING_PYTHON"
CHECK_MODULE = "prodml.components.infra_validate.serving_check"
# Beyond the load bound, what the requests and the shutdown may take before the check is stopped.
CHECK_MARGIN_SECONDS = 300.0


def serving_python() -> str:
    """``$PRODML_SERVING_PYTHON`` (set in the infra-validate image), this interpreter if it has kserve, else
    the repository's ``.venv/serving``."""
    explicit = os.environ.get(SERVING_PYTHON_ENV)
    if explicit:
        if not os.path.exists(explicit):
            raise ConfigError(f"{SERVING_PYTHON_ENV}={explicit} does not exist. Point it at the serving "
                              "environment's python (one with kserve installed), or unset it.")
        return explicit
    if importlib.util.find_spec("kserve") is not None:
        return sys.executable
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    python = os.path.join(repo, ".venv", "serving", "bin", "python")
    if not os.path.exists(python):
        raise ConfigError(f"infra_validate needs the serving environment, and it is missing ({python}). Run "
                          f"'make setup' in the repository, or set {SERVING_PYTHON_ENV} to a Python with kserve "
                          "and prodml installed (the infra-validate image sets it to /opt/serving/bin/python).")
    return python


class ServingCheck:
    """``serving_check`` running in the serving environment, in the background.

    Started first, so that the reference predictions are computed here while the predictor
    imports TensorFlow and loads the model there.
    """

    def __init__(self, model_dir: str, probe_path: str, result_path: str, max_load_seconds: float):
        self.python = serving_python()
        self.model_dir, self.result_path = model_dir, result_path
        self.timeout = max_load_seconds + CHECK_MARGIN_SECONDS
        self.process = subprocess.Popen(
            [self.python, "-m", CHECK_MODULE, "--model_dir", model_dir, "--probe", probe_path, "--result",
             result_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> Dict[str, Any]:
        """Waits for the check and returns its result; ProdmlError if the check itself broke."""
        try:
            stdout, stderr = self.process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            self.stop()
            raise ProdmlError(f"The serving check of {self.model_dir} did not finish within {self.timeout:g} s "
                              f"({self.python} -m {CHECK_MODULE}).") from e
        if self.process.returncode != 0 or not os.path.exists(self.result_path):
            tail = (stderr or stdout or "").strip().splitlines()[-5:]
            raise ProdmlError(f"The serving check ({self.python} -m {CHECK_MODULE}) failed with exit code "
                              f"{self.process.returncode}: {' | '.join(tail) or 'no output'}. Check that the "
                              "serving environment has kserve and prodml installed (make setup).")
        with open(self.result_path, encoding="utf-8") as f:
            return json.load(f)

    def stop(self) -> None:
        """Stops the check (it stops its predictor on SIGTERM) if it still runs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()
