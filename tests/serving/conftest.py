"""Serving test fixtures: a real model from the real pipeline, a real server, real clients.

The model is built once per session by running the executor chain (ingest, validate, transform,
train) in the runtime environment (``PRODML_RUNTIME_PYTHON``, default
``<repo>/.venv/runtime/bin/python``) on ``tests/testdata/taxi_small.csv`` and publishing it to a
temporary registry. The server is ``python -m prodml.serving`` in a subprocess on free loopback
ports. Set ``PRODML_SERVING_TEST_MODEL`` to an existing model folder to publish that instead of
training (faster local iteration).
"""

import json
import os
import pathlib
import shutil
import subprocess
from typing import Dict, List

import pytest

try:  # the runtime environment has no KServe: it collects nothing here
    import httpx
    import kserve  # noqa: F401
except ImportError:
    collect_ignore_glob = ["test_*.py"]
else:
    from .serving_support import (
        EPOCHS,
        HERE,
        MODEL_NAME,
        PASSTHROUGH,
        TAXI_SMALL,
        parse_value,
        publish,
        runtime_python,
        start_server,
    )


@pytest.fixture(scope="session")
def built_model(tmp_path_factory) -> pathlib.Path:
    """The trained model folder (SavedModel + prodml_model.json), built by the runtime env."""
    work = tmp_path_factory.mktemp("pipeline")
    scratch_registry = work / "registry"
    given = os.environ.get("PRODML_SERVING_TEST_MODEL")
    if given:
        shutil.copytree(given, work / "model")
    python = runtime_python()
    if not os.path.exists(python):
        pytest.fail(f"The runtime environment's python ({python}) does not exist: run `make setup` or set "
                    "PRODML_RUNTIME_PYTHON.")
    done = subprocess.run(
        [python, str(HERE / "build_model.py"), str(TAXI_SMALL), str(work), str(scratch_registry), MODEL_NAME,
         "0" if given else str(EPOCHS)],
        capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"Building the test model failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return work / "model"


@pytest.fixture(scope="session")
def registry(built_model, tmp_path_factory) -> pathlib.Path:
    """A registry holding the built model as version 1."""
    root = tmp_path_factory.mktemp("registry")
    assert publish(root, built_model) == 1
    return root


@pytest.fixture(scope="session")
def in_process(built_model):
    """The SavedModel loaded in this process: the reference the server must agree with."""
    import tensorflow as tf

    return tf.saved_model.load(str(built_model))


@pytest.fixture(scope="session")
def feature_kinds(built_model) -> Dict[str, str]:
    with open(built_model / "prodml_model.json", encoding="utf-8") as f:
        return json.load(f)["raw_features"]


@pytest.fixture(scope="session")
def rows(feature_kinds) -> List[dict]:
    """40 raw taxi rows as JSON objects (null where the CSV has no value)."""
    import csv

    out = []
    with open(TAXI_SMALL, newline="", encoding="utf-8") as f:
        for i, record in enumerate(csv.DictReader(f)):
            if i >= 40:
                break
            out.append({name: parse_value(record[name], feature_kinds[name]) for name in feature_kinds})
    return out


@pytest.fixture(scope="session")
def server(registry, tmp_path_factory):
    """The shared server: version 1, request log to a file with two pass-through keys, 1 MB request limit."""
    srv = start_server(registry, tmp_path_factory.mktemp("server"), "--max_request_bytes", "1000000",
                       "--log_passthrough", ",".join(PASSTHROUGH))
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client
