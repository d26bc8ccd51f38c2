"""A server's life: not ready before the first version, rollover under load, SIGTERM draining.

The tests in this module share one server, started on an empty registry with ``--poll``, and
run in order: the last one stops it. Its request log goes to a CloudEvents sink in this process.
"""

import asyncio
import http.server
import json
import signal
import threading
import time

import grpc
import httpx
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest

from .serving_support import MODEL_NAME, columns_of, publish, run, start_server

pytestmark = pytest.mark.serving

PREDICT = f"/v1/models/{MODEL_NAME}:predict"


class _Sink(http.server.ThreadingHTTPServer):
    """Records the CloudEvents posted to it."""

    def __init__(self):
        self.events = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                sink.events.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="module")
def sink():
    server = _Sink()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def empty_registry(tmp_path_factory):
    return tmp_path_factory.mktemp("lifecycle-registry")


@pytest.fixture(scope="module")
def polling_server(empty_registry, sink, tmp_path_factory):
    srv = start_server(empty_registry, tmp_path_factory.mktemp("lifecycle"), "--poll", "0.3",
                       "--log_requests", f"http://127.0.0.1:{sink.server_address[1]}/events")
    try:
        srv.wait_live()
        yield srv
    finally:
        srv.stop()


def test_not_ready_until_a_version_is_published(polling_server, empty_registry, built_model, rows,
                                                 feature_kinds):
    url = polling_server.url
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    assert httpx.get(f"{url}/v2/health/ready").status_code == 503
    assert "Traceback" not in polling_server.stderr_file.read_text()  # probes are routine, not errors
    assert httpx.get(f"{url}/v2/models/{MODEL_NAME}/ready").status_code == 503
    reply = httpx.post(f"{url}{PREDICT}", json={"instances": rows[:1]})
    assert reply.status_code == 503 and "not ready" in reply.json()["error"]
    assert _grpc_code(polling_server, rows[:1], feature_kinds) == grpc.StatusCode.UNAVAILABLE

    assert publish(empty_registry, built_model) == 1
    polling_server.wait_ready(timeout=60)
    reply = httpx.post(f"{url}{PREDICT}", json={"instances": rows[:1]})
    assert reply.status_code == 200 and reply.json()["model_version"] == "1"


def test_rollover_under_load_fails_no_request(polling_server, empty_registry, built_model, rows):
    failures, versions, stop = [], [], threading.Event()

    def hammer():
        with httpx.Client(base_url=polling_server.url, timeout=30.0) as client:
            while not stop.is_set():
                try:
                    reply = client.post(PREDICT, json={"instances": rows[:4]})
                    if reply.status_code != 200:
                        failures.append(reply.text)
                    else:
                        versions.append(reply.json()["model_version"])
                except httpx.HTTPError as e:
                    failures.append(repr(e))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        assert publish(empty_registry, built_model) == 2
        deadline = time.monotonic() + 60
        while "2" not in versions[-20:] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    assert versions[0] == "1" and versions[-1] == "2"
    meta = httpx.get(f"{polling_server.url}/v2/models/{MODEL_NAME}").json()
    assert meta["versions"] == ["2"]
    # The rollover ends with a full garbage collection that holds the GIL for a while; the
    # tests after this one time their requests, so let it finish first.
    deadline = time.monotonic() + 30
    while "version 1 released" not in polling_server.stderr_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_cloudevents_sink_gets_kserve_logger_events(polling_server, sink, rows):
    marked = [{**row, "fare": 7777.25} for row in rows[:3]]
    reply = httpx.post(f"{polling_server.url}{PREDICT}", json={"instances": marked})
    assert reply.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = list(sink.events)
        requests = {h["ce-id"]: (h, body) for h, body in events
                    if h["ce-type"] == "org.kubeflow.serving.inference.request"}
        responses = {h["ce-id"]: body for h, body in events
                     if h["ce-type"] == "org.kubeflow.serving.inference.response"}
        ours = [key for key, (_, body) in requests.items() if key in responses
                and any(instance["features"]["fare"] == 7777.25 for instance in body["instances"])]
        if ours:
            break
        time.sleep(0.1)
    assert ours, f"no request/response event pair with the marked rows in {len(sink.events)} events"
    headers, body = requests[ours[-1]]
    response = responses[ours[-1]]
    assert headers["ce-specversion"] == "1.0" and headers["content-type"] == "application/json"
    assert headers["ce-source"] and headers["ce-time"]
    assert len(body["instances"]) == len(response["predictions"]) == len(response["request_ids"])
    assert sum(instance["features"]["fare"] == 7777.25 for instance in body["instances"]) == 3
    # Each instance is a request-log record (request_log.py); ce-id is the first request's id.
    assert set(body["instances"][0]["features"]) == set(rows[0])
    assert headers["ce-id"] == body["instances"][0]["request_id"] == response["request_ids"][0]
    ours = [instance for instance in body["instances"] if instance["features"]["fare"] == 7777.25]
    assert [instance["row"] for instance in ours] == [0, 1, 2]
    assert ours[0]["request_id"] == reply.headers["x-request-id"]
    assert response["model_version"] in ("1", "2")


def test_sigterm_lets_in_flight_requests_finish(polling_server, rows):
    big = {"instances": rows * 50}  # 2,000 rows: long enough to be in flight at the signal

    async def scenario():
        clients = [httpx.AsyncClient(base_url=polling_server.url, timeout=60.0) for _ in range(12)]
        try:
            # Open every connection first, so that the slow requests go over accepted connections.
            await asyncio.gather(*[c.post(PREDICT, json={"instances": rows[:1]}) for c in clients])
            in_flight = [asyncio.create_task(c.post(PREDICT, json=big)) for c in clients]
            await asyncio.sleep(0.05)
            polling_server.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            for c in clients:
                await c.aclose()

    replies = asyncio.run(scenario())
    assert all(not isinstance(r, Exception) and r.status_code == 200 for r in replies), \
        f"{replies}\n{polling_server.stderr()}"
    assert all(len(r.json()["predictions"]) == len(big["instances"]) for r in replies)
    assert polling_server.proc.wait(30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{polling_server.url}/v2/health/live", timeout=2.0)


def _grpc_code(server, rows, kinds):
    async def call():
        client = InferenceGRPCClient(server.grpc_target)
        inputs = []
        for name, column in columns_of(rows, kinds).items():
            datatype = {"INT": "FP64", "FLOAT": "FP32", "BYTES": "BYTES"}[kinds[name]]
            infer_input = InferInput(name, [len(rows)], datatype)
            infer_input.set_data_from_numpy(column, binary_data=False)
            inputs.append(infer_input)
        try:
            await client.infer(InferRequest(model_name=MODEL_NAME, infer_inputs=inputs))
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as e:
            return e.code()
        finally:
            await client.close()

    return run(call())
