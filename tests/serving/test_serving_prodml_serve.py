"""``prodml serve`` as a user runs it: the runtime environment's CLI launching the serving env's server.

One server for the module, started with ``--poll`` on a root whose registry is empty, then, in
order: it turns ready after the first push and predicts; a 100,000-row request does not starve
readiness probes; its start-up output has no TensorFlow/CUDA noise; a SIGTERM to the CLI stops the
server gracefully and the CLI exits with the server's code.
"""

import os
import signal
import subprocess
import threading
import time

import httpx
import pytest

from .serving_support import MODEL_NAME, free_port, publish, runtime_cli

pytestmark = [pytest.mark.serving, pytest.mark.slow]

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
NOISE = ("cuda", "absl", "onednn", "warning: all log messages before absl")
BIG_ROWS = 100_000


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory):
    """``prodml serve --poll`` on an empty root: (process, base URL, root, stderr file)."""
    cli = runtime_cli()
    if not os.path.exists(cli):
        pytest.fail(f"The runtime environment's prodml command ({cli}) does not exist: run `make setup`.")
    root = tmp_path_factory.mktemp("prodml-home")
    http_port, grpc_port = free_port(), free_port()
    stderr_file = root / "serve.stderr"
    with open(stderr_file, "wb") as err:
        proc = subprocess.Popen([cli, "serve", "--model-name", MODEL_NAME, "--root", str(root), "--poll",
                                 "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
                                stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{http_port}"
    try:
        yield proc, url, root, stderr_file
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait(url: str, path: str, proc, stderr_file, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"prodml serve exited ({proc.returncode}):\n{stderr_file.read_text()[-3000:]}"
        try:
            if httpx.get(url + path, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{path} not 200 after {timeout}s:\n{stderr_file.read_text()[-3000:]}")


def test_serve_before_the_first_push_becomes_ready_after_it(cli_server, built_model, rows):
    proc, url, root, stderr_file = cli_server
    _wait(url, "/v2/health/live", proc, stderr_file)
    assert httpx.get(f"{url}/v2/health/ready").status_code == 503
    assert publish(root / "registry", built_model) == 1
    _wait(url, "/v2/health/ready", proc, stderr_file)
    reply = httpx.post(url + PREDICT, json={"instances": rows[:3]}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["predictions"]) == 3 and reply.json()["model_version"] == "1"


def test_a_big_request_does_not_starve_readiness_probes(cli_server, feature_kinds):
    proc, url, _, _ = cli_server
    datatypes = {"INT": "FP64", "FLOAT": "FP32", "BYTES": "BYTES"}
    # Compact values (0 and "") keep 100k rows under the default 8 MiB request limit.
    inputs = [{"name": name, "datatype": datatypes[kind], "shape": [BIG_ROWS],
               "data": [""] * BIG_ROWS if kind == "BYTES" else [0] * BIG_ROWS}
              for name, kind in feature_kinds.items()]
    probes, done = [], threading.Event()

    def probe():
        with httpx.Client(base_url=url, timeout=10.0) as client:
            while not done.is_set():
                start = time.perf_counter()
                status = client.get("/v2/health/ready").status_code
                probes.append((status, time.perf_counter() - start))
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        time.sleep(0.2)
        reply = httpx.post(f"{url}/v2/models/{MODEL_NAME}/infer", json={"inputs": inputs}, timeout=120)
    finally:
        done.set()
        prober.join()
    assert reply.status_code == 200, reply.text[:500]
    assert reply.json()["outputs"][0]["shape"] == [BIG_ROWS]
    assert len(probes) >= 5
    slow = [seconds for status, seconds in probes if status != 200 or seconds > 1.0]
    assert not slow, f"readiness probes over 1 s (or not 200) during the big request: {slow}"


def test_start_up_output_has_no_tensorflow_noise(cli_server):
    _, _, _, stderr_file = cli_server
    lines = stderr_file.read_text(errors="replace").splitlines()[:40]
    assert any("serving version 1" in line for line in lines), lines
    noisy = [line for line in lines if any(marker in line.lower() for marker in NOISE)]
    assert not noisy, noisy


def test_sigterm_to_the_cli_stops_the_server_gracefully(cli_server):
    proc, url, _, stderr_file = cli_server
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, stderr_file.read_text()[-3000:]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v2/health/live", timeout=2.0)
    assert "Shutting down" in stderr_file.read_text()
