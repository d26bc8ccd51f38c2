"""``python -m prodml.serving`` fails fast, naming what is wrong, when there is nothing to serve."""

import subprocess
import sys

import pytest

from .serving_support import MODEL_NAME, free_port

pytestmark = pytest.mark.serving


def _serve(*args, timeout=120):
    command = [sys.executable, "-m", "prodml.serving", "--http_port", str(free_port()),
               "--grpc_port", str(free_port()), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_empty_registry_is_a_config_error(tmp_path):
    done = _serve("--model_name", MODEL_NAME, "--model_dir", str(tmp_path))
    assert done.returncode == 2
    assert f"No version of model '{MODEL_NAME}'" in done.stderr and "--poll" in done.stderr


def test_missing_pinned_version_names_what_exists(registry):
    done = _serve("--model_name", MODEL_NAME, "--model_dir", str(registry), "--version", "7")
    assert done.returncode == 2
    assert "Version 7" in done.stderr and "[1]" in done.stderr


def test_unloadable_version_stops_the_server(tmp_path):
    version = tmp_path / MODEL_NAME / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"not a SavedModel")
    done = _serve("--model_name", MODEL_NAME, "--model_dir", str(tmp_path))
    assert done.returncode == 1
    assert "error: model chicago-taxi:" in done.stderr
