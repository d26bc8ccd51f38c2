"""Metadata, health and metrics: what a client and an operator can learn from the server."""

import asyncio
import math

import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from .serving_support import MODEL_NAME, predict_in_process, run

pytestmark = pytest.mark.serving


def test_v2_metadata_lists_every_raw_input_from_the_signature(http, in_process):
    meta = http.get(f"/v2/models/{MODEL_NAME}").json()
    _, signature_inputs = in_process.signatures["serving_default"].structured_input_signature
    expected = {name: {"float64": "FP64", "float32": "FP32", "string": "BYTES"}[spec.dtype.name]
                for name, spec in signature_inputs.items()}
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == expected
    assert all(i["shape"] == [-1] for i in meta["inputs"])
    assert meta["outputs"] == [{"name": "predictions", "datatype": "FP32", "shape": [-1]}]
    assert meta["versions"] == ["1"]
    assert meta["name"] == MODEL_NAME


def test_request_built_from_metadata_alone(http, in_process, rows, feature_kinds):
    """A generic client: read the metadata, send one input per listed name and datatype."""
    meta = http.get(f"/v2/models/{MODEL_NAME}").json()
    row = rows[3]
    inputs = [{"name": i["name"], "datatype": i["datatype"], "shape": [1], "data": [row[i["name"]]]}
              for i in meta["inputs"]]
    reply = http.post(f"/v2/models/{MODEL_NAME}/infer", json={"inputs": inputs})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["outputs"][0]["data"],
                               predict_in_process(in_process, [row], feature_kinds), rtol=1e-6)


def test_grpc_metadata_and_health(server):
    async def call():
        client = InferenceGRPCClient(server.grpc_target)
        try:
            meta = await client._client_stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL_NAME))
            return (meta, await client.is_server_live(), await client.is_server_ready(),
                    await client.is_model_ready(MODEL_NAME))
        finally:
            await client.close()

    meta, live, ready, model_ready = run(call())
    assert list(meta.versions) == ["1"]
    assert {i.name for i in meta.inputs} and all(list(i.shape) == [-1] for i in meta.inputs)
    assert [o.name for o in meta.outputs] == ["predictions"]
    assert live and ready and model_ready


def test_runs_on_uvloop_by_default(server):
    assert "event loop: uvloop" in server.stderr_file.read_text()


def test_rest_health(http):
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get(f"/v2/models/{MODEL_NAME}/ready").json() == {"name": MODEL_NAME, "ready": True}
    assert http.get(f"/v1/models/{MODEL_NAME}").json() == {"name": MODEL_NAME, "ready": True}


def test_metrics_count_requests_batches_and_versions(server, http, rows):
    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0,
                                     limits=httpx.Limits(max_connections=64)) as client:
            replies = await asyncio.gather(*[
                client.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": [rows[i % len(rows)]]})
                for i in range(256)])
        assert all(r.status_code == 200 for r in replies)

    before = _metrics(http)
    run(burst())
    http.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": [{}]})
    after = _metrics(http)

    def delta(name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta(f'prodml_requests_total{{model_name="{MODEL_NAME}",outcome="ok",protocol="v1"}}') == 256
    assert delta(f'prodml_requests_total{{model_name="{MODEL_NAME}",outcome="invalid",protocol="v1"}}') == 1
    assert delta(f'prodml_predictions_total{{model_name="{MODEL_NAME}",model_version="1"}}') == 256
    assert delta(f'prodml_request_latency_seconds_count{{model_name="{MODEL_NAME}",protocol="v1"}}') == 256
    model_calls = delta(f'prodml_batch_size_rows_count{{model_name="{MODEL_NAME}"}}')
    assert delta(f'prodml_batch_size_rows_sum{{model_name="{MODEL_NAME}"}}') == 256
    assert 0 < model_calls < 256, "concurrent requests should share model calls"


def _metrics(http) -> dict:
    values = {}
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("prodml_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[_sorted_labels(name)] = float(value) if value != "NaN" else math.nan
    return values


def _sorted_labels(name: str) -> str:
    if "{" not in name:
        return name
    base, labels = name[:-1].split("{", 1)
    return base + "{" + ",".join(sorted(labels.split(","))) + "}"
