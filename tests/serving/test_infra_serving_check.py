"""infra_validate's serving side, run where it runs: the serving environment with a real predictor.

``serving_check`` measures and reports, never raises on what the server answers: a request the
predictor rejects is recorded per protocol. Stopping it (the caller gives up) stops its predictor.
"""

import json
import signal
import subprocess
import sys
import time

import httpx
import pytest

from prodml.components.infra_validate import serving_check

pytestmark = [pytest.mark.serving, pytest.mark.slow]


def _probe(rows, feature_kinds, requests=16):
    return {"features": feature_kinds, "rows": rows, "concurrency": 8, "requests": requests,
            "max_load_seconds": 120.0}


def test_rejected_requests_are_recorded_per_protocol(built_model, rows, feature_kinds):
    bad = [dict(row, fare="a lot") for row in rows[:3]]
    result = serving_check.check(str(built_model), _probe(bad, feature_kinds))

    assert result["ready"] and result["failure"] is None
    assert 0 < result["load_seconds"] < result["ready_seconds"]
    assert result["predictions"] == {}
    assert set(result["errors"]) == {"v1", "v2", "grpc"}
    assert result["errors"]["v1"].startswith("RuntimeError: HTTP 400: ") and "fare" in result["errors"]["v1"]
    assert result["errors"]["v2"].startswith("RuntimeError: HTTP 400: ")
    assert "'a lot'" in result["errors"]["grpc"]  # a gRPC FP32 tensor cannot even carry it
    assert result["latency"]["errors"] == 16 and result["latency"]["first_error"].startswith("HTTP 400")
    assert "serving version 1" in result["server_log"]


def test_stopping_the_check_stops_its_predictor(built_model, rows, feature_kinds, tmp_path):
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(_probe(rows[:2], feature_kinds, requests=100_000)))
    check = subprocess.Popen([sys.executable, "-m", serving_check.__name__, "--model_dir", str(built_model),
                              "--probe", str(probe), "--result", str(tmp_path / "result.json")])
    try:
        port = _predictor_port(check.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _ready(port):  # then busy with the latency requests
            time.sleep(0.2)
        check.send_signal(signal.SIGTERM)
        assert check.wait(60) == 128 + signal.SIGTERM
    finally:
        if check.poll() is None:
            check.kill()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2)
    assert not (tmp_path / "result.json").exists()  # no half result


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _predictor_port(parent_pid: int, timeout: float = 30.0) -> int:
    """The --http_port of the predictor that ``parent_pid`` started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = subprocess.run(["pgrep", "-P", str(parent_pid)], capture_output=True, text=True).stdout.split()
        for child in children:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                args = f.read().decode().split("\0")
            if "--http_port" in args:
                return int(args[args.index("--http_port") + 1])
        time.sleep(0.1)
    raise AssertionError(f"process {parent_pid} started no predictor within {timeout}s")
