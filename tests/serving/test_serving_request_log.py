"""Request logging to a JSON-lines file: raw features, prediction, version, timestamp per row; mode 0600.

Rotation by size is tested on ``RequestLogger`` directly (``test_serving_units.py``)."""

import json
import stat
import time

import pytest

from .serving_support import MODEL_NAME

pytestmark = pytest.mark.serving


def test_file_log_has_one_record_per_served_row(server, http, rows):
    marked = [{**row, "fare": 9000.0 + i / 4} for i, row in enumerate(rows[:5])]
    marked[0]["company"] = None
    reply = http.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": marked})
    assert reply.status_code == 200, reply.text
    predictions = reply.json()["predictions"]

    records = _wait_for(server.log_file, lambda r: (r["features"]["fare"] or 0) >= 9000.0, len(marked))
    records.sort(key=lambda r: r["features"]["fare"])
    for sent, record, prediction in zip(marked, records, predictions):
        assert record["features"].keys() == sent.keys()
        for name, value in sent.items():  # FLOAT features went through float32
            expected = pytest.approx(value, rel=1e-6) if isinstance(value, float) else value
            assert record["features"][name] == expected
        assert record["prediction"] == pytest.approx(prediction, rel=1e-6)
        assert record["model_name"] == MODEL_NAME and record["model_version"] == 1
        assert record["timestamp"].endswith("Z")
    assert records[0]["features"]["company"] is None
    assert stat.S_IMODE(server.log_file.stat().st_mode) == 0o600  # request data: owner only


def _wait_for(path, keep, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    found = []
    while time.monotonic() < deadline:
        if path.exists():
            found = [r for r in map(json.loads, path.read_text().splitlines()) if keep(r)]
            if len(found) >= count:
                return found
        time.sleep(0.1)
    raise AssertionError(f"{len(found)} of {count} records in {path} after {timeout}s")
