"""Batch prediction under real faults: a SIGKILL in the middle of a run, and two runs publishing to one place.

Both run ``prodml run batch-predict`` as a user does (a subprocess, the default Beam engine) on
300,000 taxi rows resampled from the vendored sample, into a local prodml home.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from prodml.components.batch_predict import outputs
from prodml.components.common import registry

MODEL = "taxi-faults"
ROWS = 300_000
TAXI_FULL = os.path.join(os.path.dirname(__file__), "..", "..", "data", "chicago_taxi", "data.csv")

pytestmark = pytest.mark.slow  # each test starts TensorFlow in one or two CLI processes (15-40 s)


@pytest.fixture(scope="module")
def home(trained, tmp_path_factory):
    from prodml.pipelines.local import prepare_root

    root = prepare_root(str(tmp_path_factory.mktemp("home")))
    registry.publish(root.registry, MODEL, lambda staging: shutil.copytree(trained, staging))
    return root


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory):
    sample = pd.read_csv(TAXI_FULL, dtype=str, keep_default_na=False)
    path = tmp_path_factory.mktemp("data") / "trips.csv"
    sample.iloc[np.random.default_rng(7).integers(0, len(sample), ROWS)].to_csv(path, index=False)
    return path


def _batch(home, data, out, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "prodml.pipelines.cli", "run", "batch-predict", "--data", str(data),
                             "--model-name", MODEL, "--root", home.path, "--output", str(out), "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _gc(home, *args):
    done = subprocess.run([sys.executable, "-m", "prodml.pipelines.cli", "gc", "--root", home.path, "--json", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _staging_with_a_part(folder):
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        if outputs.STAGING_INFIX in name and any(n.startswith("part-") and ".tmp-" not in n for n in os.listdir(path)):
            return path
    return None


def test_a_run_killed_mid_way_publishes_nothing_and_gc_clears_it(home, big_csv):
    folder = os.path.join(home.path, "predictions", MODEL)
    out = os.path.join(folder, "nightly")
    proc = _batch(home, big_csv, out)
    staging, deadline = None, time.monotonic() + 240
    while staging is None and time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        staging = _staging_with_a_part(folder)
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert staging, "no part was ever staged"

    assert not os.path.exists(out), "a killed run must leave nothing where consumers look"
    assert outputs.read_owner(staging)["pid"] == proc.pid

    found = _gc(home, "--dry-run", "--older-than", "3600")  # the owner is dead: no need to wait for age
    assert [(f["kind"], f["uri"], f["action"]) for f in found] == [("batch_staging", staging, "would remove")]
    assert [f["action"] for f in _gc(home, "--older-than", "3600")] == ["removed"]
    assert not os.path.exists(staging)

    again = _batch(home, big_csv, out)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["scored"] == ROWS
    assert outputs.summary_of(out)["rows"] == ROWS
    assert len(outputs.read_predictions(out, columns=["model_version"])) == ROWS


def test_two_runs_to_one_output_publish_one_whole_set_and_the_other_says_why(home, big_csv, tmp_path):
    out = tmp_path / "scored"
    runs = [_batch(home, big_csv, out, "--runner", "local") for _ in range(2)]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 3], results
    loser = next(stderr for code, _, stderr in results if code == 3)
    assert f"Another run published predictions at {out} while this one ran" in loser
    assert "Traceback" not in loser
    assert outputs.summary_of(str(out))["rows"] == ROWS
    assert len(outputs.read_predictions(str(out), columns=["model_version"])) == ROWS
    assert not [n for n in os.listdir(tmp_path) if outputs.STAGING_INFIX in n], "the loser's staging is removed"
