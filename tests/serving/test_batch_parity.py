"""Batch prediction gives the online predictor's numbers for the same raw rows (V1, ≤ 1e-6).

The batch job runs in the runtime environment (``prodml run batch-predict`` in a subprocess, on
the session's registry); the predictor is the session's real server. Missing values are written
the ways a CSV holds them (empty, ``NA``, ``null``) and sent to the server as JSON ``null``.
"""

import csv
import json
import os
import subprocess

import numpy as np
import pytest

from .serving_support import MODEL_NAME, TAXI_SMALL, parse_value, runtime_python

pytestmark = pytest.mark.serving

ROWS = 120
# Missing-value markers put into numeric and text cells of the batch CSV: (row, column, marker).
MARKERS = [(3, "fare", "NA"), (5, "trip_miles", "null"), (8, "trip_start_hour", ""), (9, "company", "NA"),
           (11, "payment_type", "N/A"), (13, "pickup_latitude", "NaN")]


@pytest.fixture(scope="module")
def batch_file(tmp_path_factory):
    with open(TAXI_SMALL, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[: ROWS + 1]
    header = rows[0]
    for row, column, marker in MARKERS:
        rows[row][header.index(column)] = marker
    path = tmp_path_factory.mktemp("batch") / "trips.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path, header, rows[1:]


@pytest.fixture(scope="module")
def batch_predictions(batch_file, registry, tmp_path_factory):
    """``prodml run batch-predict`` in the runtime environment, JSON lines out."""
    path = batch_file[0]
    home = tmp_path_factory.mktemp("home")
    os.symlink(registry, home / "registry")  # the session registry as the local home's registry
    out = home / "scored"
    done = subprocess.run(
        [runtime_python(), "-m", "prodml.pipelines.cli", "run", "batch-predict", "--data", str(path),
         "--model-name", MODEL_NAME, "--root", str(home), "--output", str(out), "--format", "jsonl",
         "--runner", "local", "--json"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for part in sorted(out.glob("part-*.jsonl")) for line in part.read_text().splitlines()]
    return summary, rows


def test_batch_equals_the_online_predictor_over_v1(batch_file, batch_predictions, http, feature_kinds):
    _, header, raw_rows = batch_file
    summary, scored = batch_predictions
    assert summary["rows"] == summary["scored"] == ROWS and summary["model_version"] == 1
    markers = {"NA", "null", "", "N/A", "NaN"}
    instances = [{name: None if row[header.index(name)] in markers
                  else parse_value(row[header.index(name)], kind) for name, kind in feature_kinds.items()}
                 for row in raw_rows]
    reply = http.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": instances})
    assert reply.status_code == 200, reply.text
    online = np.asarray(reply.json()["predictions"], dtype=np.float64)
    batch = np.array([row["probability_1"] for row in scored], dtype=np.float64)
    assert len(batch) == ROWS
    np.testing.assert_allclose(batch, online, rtol=0, atol=1e-6)
    assert {row["model_version"] for row in scored} == {1}
    assert [row["predicted_big_tipper"] for row in scored] == ["1" if p >= 0.5 else "0" for p in online]
