"""The loop, end to end: a served model drifts, the monitor sees it, retraining replaces it, the server rolls over.

1. v1 is trained by the real pipeline (kfp.local) on the first half of the year of the taxi sample.
2. The real predictor (``python -m prodml.serving`` in .venv/serving) serves it with the request log,
   ``trip_id`` as a pass-through key, and ``--poll``.
3. Trips of the second half of the year are replayed as real HTTP traffic after a fare rise: fares are
   50 % higher plus a $2 surcharge while riders tip what they tipped before. The label ("tip above 20 %
   of the fare") is recomputed from the new fare, so the concept really shifts: a big tipper is rarer
   and depends on the fare in a way v1 never saw.
4. The labels arrive late, as a CSV of (trip_id, big_tipper).
5. ``prodml monitor --with-old-data`` names the drifted fare and the quality drop, decides to retrain,
   retrains on the logged rows joined with the labels plus v1's own data (kept out of the eval split),
   blesses the candidate against v1 on the new data and pushes v2.
6. Traffic keeps flowing during all of this: not one request fails, and the responses switch to v2.
   v2 beats v1 on trips neither was trained or evaluated on.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from conftest import REPO, TAXI_FULL

from prodml.components.common import defaults
from prodml.pipelines import demo_loop as story

pytestmark = pytest.mark.e2e

MODEL = "taxi"
LABEL = story.LABEL
V1_ROWS, TRAFFIC_ROWS, HOLDOUT_ROWS = 2000, 2000, 1500
EPOCHS = "1"  # retraining takes v1's configuration, so v2 trains one epoch too
PRODML = os.path.join(os.path.dirname(sys.executable), "prodml")


def _serving_support():
    """tests/serving/serving_support.py (the serving tests' server handle), loaded by path from this environment."""
    path = REPO / "tests" / "serving" / "serving_support.py"
    spec = importlib.util.spec_from_file_location("serving_support", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    from prodml.pipelines.cli import serving_python

    support = _serving_support()
    work = tmp_path_factory.mktemp("loop")
    root = work / "home"
    early, traffic, holdout = story.taxi_slices(str(TAXI_FULL), V1_ROWS, TRAFFIC_ROWS, HOLDOUT_ROWS)
    v1_data = work / "v1.csv"
    early.to_csv(v1_data, index=False)

    trained = subprocess.run([PRODML, "run", "training", "--data", str(v1_data), "--label", LABEL,
                              "--model-name", MODEL, "--drop-columns", f"tips,{story.JOIN_KEY}", "--epochs", EPOCHS,
                              "--root", str(root), "--json"], capture_output=True, text=True, timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    v1 = json.loads(trained.stdout.strip().splitlines()[-1])
    assert v1["pushed"]["version"] == 1
    kinds = json.loads((root / "registry" / MODEL / "1" / "prodml_model.json").read_text())["raw_features"]

    log, stderr_file = work / "requests.jsonl", work / "server.log"
    http_port, grpc_port = support.free_port(), support.free_port()
    proc = story.start_server(serving_python(), str(root / "registry"), MODEL, str(log), str(stderr_file),
                              http_port, grpc_port, poll_seconds=1)
    server = support.Server(proc, http_port, grpc_port, log, stderr_file)
    client = httpx.Client()
    background = None
    try:
        server.wait_ready(timeout=120)
        # The shifted trips, served by v1 and logged with their trip_id.
        _, versions = story.score(client, server.url, MODEL, story.instances(traffic, kinds))
        assert versions == {1}
        assert story.wait_for_log(str(log), TRAFFIC_ROWS) == TRAFFIC_ROWS, server.stderr()
        # Ground truth, days later.
        labels = work / "labels.csv"
        traffic[[story.JOIN_KEY, LABEL]].to_csv(labels, index=False)
        holdout_rows = story.instances(holdout, kinds)
        v1_holdout, _ = story.score(client, server.url, MODEL, holdout_rows)

        # Requests keep coming while the monitor decides, retraining runs and the server rolls over.
        background = story.Traffic(server.url, MODEL, holdout_rows).start()
        monitored = subprocess.run(
            [PRODML, "monitor", "--model-name", MODEL, "--traffic", str(log), "--labels", str(labels),
             "--join-key", story.JOIN_KEY, "--with-old-data", "--root", str(root), "--json"],
            capture_output=True, text=True, timeout=900)
        assert monitored.returncode == 0, monitored.stderr[-3000:] + monitored.stdout[-3000:]
        outcome = json.loads(monitored.stdout.strip().splitlines()[-1])
        rolled_over = background.wait_for_version(2, timeout=90)
        time.sleep(1.0)  # a few more requests on the new version
        background.stop()
        v2_holdout, v2_versions = story.score(client, server.url, MODEL, holdout_rows)
        yield {"v1": v1, "outcome": outcome, "stdout": monitored.stdout, "background": background,
               "rolled_over": rolled_over, "holdout": holdout, "v1_holdout": v1_holdout, "v2_holdout": v2_holdout,
               "v2_versions": v2_versions, "server": server}
    finally:
        if background is not None:
            background.stop()
        client.close()
        server.stop()


def test_the_monitor_names_the_drifted_fare_and_the_quality_drop(loop):
    monitoring = loop["outcome"]["monitoring"]
    assert monitoring["version"] == 1 and monitoring["retrain"] is True
    assert monitoring["rows"] >= TRAFFIC_ROWS
    assert "fare" in monitoring["drifted_features"], monitoring["drift"]
    live, then = monitoring["quality"]["auc"], monitoring["evaluation"]["auc"]
    assert live < then - defaults.MONITOR_QUALITY_TOLERANCE, (live, then)
    reasons = " ".join(monitoring["reasons"])
    assert "fare" in reasons and "auc" in reasons, monitoring["reasons"]
    [drifted_line] = [line for line in loop["stdout"].splitlines() if line.startswith("Drifted features:")]
    assert "fare" in drifted_line
    assert os.path.exists(os.path.join(monitoring["monitoring_dir"], "report.html"))


def test_retraining_pushes_v2_trained_on_the_logged_rows_and_v1s_data(loop):
    retraining = loop["outcome"]["retraining"]
    assert retraining["blessed"] is True, retraining["reasons"]
    assert retraining["pushed"]["version"] == 2
    data = retraining["data"]
    assert data["new_rows"] == TRAFFIC_ROWS and data["old_rows"] == V1_ROWS
    assert data["traffic"]["labelled_rows"] == TRAFFIC_ROWS
    version = retraining["data_version"]
    assert version["source_uri"] == data["path"]  # lineage leads to the prepared bytes
    # The eval split holds new rows only: about a fifth of them, none of v1's.
    assert 0.1 * TRAFFIC_ROWS < version["row_counts"]["eval"] < 0.3 * TRAFFIC_ROWS
    assert version["row_counts"]["train"] + version["row_counts"]["eval"] == TRAFFIC_ROWS + V1_ROWS


def test_v2_beats_v1_on_the_new_data(loop):
    retraining = loop["outcome"]["retraining"]
    # On the eval split of the retraining run (new rows only), as evaluate blessed it ...
    [compared] = [re.match(r"auc ([0-9.]+) vs pushed v1 ([0-9.]+)", reason) for reason in retraining["reasons"]
                  if "vs pushed v1" in reason]
    assert float(compared.group(1)) > float(compared.group(2)), retraining["reasons"]
    # ... and on trips neither version was trained or evaluated on, scored by the server itself.
    labels = loop["holdout"][LABEL].to_numpy()
    v1_auc, v2_auc = story.auc(labels, loop["v1_holdout"]), story.auc(labels, loop["v2_holdout"])
    assert loop["v2_versions"] == {2}
    assert v2_auc > v1_auc, (v1_auc, v2_auc)
    assert v1_auc < loop["v1"]["metrics"]["auc"] - defaults.MONITOR_QUALITY_TOLERANCE  # v1 really degraded


def test_the_server_rolls_over_with_zero_failed_requests(loop):
    background = loop["background"]
    assert background.failures == []
    assert loop["rolled_over"], loop["server"].stderr()
    versions = background.versions
    switch = versions.index(2)
    assert switch > 0 and set(versions[:switch]) == {1} and set(versions[switch:]) == {2}
