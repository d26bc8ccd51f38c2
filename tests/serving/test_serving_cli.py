"""``python -m prodml.serving`` fails fast, naming what is wrong, when there is nothing to serve;
``python -m prodml.serving.demo`` (the end of ``make demo``) predicts raw rows over V1 and V2."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import httpx
import pytest

from .serving_support import MODEL_NAME, free_port, start_server

pytestmark = pytest.mark.serving


def _serve(*args, timeout=120):
    command = [sys.executable, "-m", "prodml.serving", "--http_port", str(free_port()),
               "--grpc_port", str(free_port()), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_empty_registry_is_a_registry_error(tmp_path):
    done = _serve("--model_name", MODEL_NAME, "--registry", str(tmp_path))
    assert done.returncode == 3  # a data/pipeline error, as `prodml lineage` says for the same registry
    assert f"No version of model '{MODEL_NAME}'" in done.stderr and "--poll" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_registry_or_model_dir_is_required_once(tmp_path):
    done = _serve("--model_name", MODEL_NAME, "--registry", str(tmp_path), "--model_dir", str(tmp_path))
    assert done.returncode == 2 and "not allowed with argument" in done.stderr
    done = _serve("--model_name", MODEL_NAME)
    assert done.returncode == 2 and "--registry" in done.stderr and "--model_dir" in done.stderr


def test_missing_pinned_version_names_what_exists(registry):
    done = _serve("--model_name", MODEL_NAME, "--registry", str(registry), "--version", "7")
    assert done.returncode == 3
    assert "Version 7" in done.stderr and "[1]" in done.stderr


def test_unloadable_version_stops_the_server(tmp_path):
    from prodml.components.common import registry

    def fill(staging):
        os.makedirs(staging)
        with open(os.path.join(staging, "saved_model.pb"), "wb") as f:
            f.write(b"not a SavedModel")

    assert registry.publish(str(tmp_path), MODEL_NAME, fill) == 1
    done = _serve("--model_name", MODEL_NAME, "--registry", str(tmp_path))
    assert done.returncode == 1
    assert "error: model chicago-taxi:" in done.stderr


def test_demo_predicts_raw_csv_rows_over_v1_and_v2(registry):
    data = pathlib.Path(__file__).parents[1] / "testdata" / "taxi_small.csv"
    command = [sys.executable, "-m", "prodml.serving.demo", "--rows", str(data), "--",
               "--model_name", MODEL_NAME, "--model_dir", str(registry / MODEL_NAME),
               "--http_port", str(free_port()), "--grpc_port", str(free_port())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    v1 = next(line for line in lines if line.startswith("V1 POST"))
    v2 = next(line for line in lines if line.startswith("V2 POST"))
    assert "→ 200 " in v1 and "→ 200 " in v2
    v1_predictions = json.loads(v1.split("→ 200 ", 1)[1])["predictions"]
    v2_outputs = json.loads(v2.split("→ 200 outputs ", 1)[1])
    assert len(v1_predictions) == 2
    assert v2_outputs[0]["data"] == pytest.approx(v1_predictions, rel=1e-6)


@pytest.mark.slow
def test_sigterm_while_the_version_loads_exits_cleanly(registry, tmp_path):
    """Listening but not ready yet (TensorFlow still loading): SIGTERM stops the server with code 0."""
    srv = start_server(registry, tmp_path)
    try:
        srv.wait_live()
        assert httpx.get(f"{srv.url}/v2/health/ready", timeout=5).status_code == 503, "ready too soon to test"
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(60) == 0, srv.stderr()
    finally:
        srv.stop()
