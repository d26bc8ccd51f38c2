"""Every protocol returns the SavedModel's own predictions for the same raw rows."""

import concurrent.futures

import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

from .serving_support import MODEL_NAME, columns_of, predict_in_process, run, start_server

pytestmark = pytest.mark.serving

V2_DATATYPES = {"INT": "FP64", "FLOAT": "FP32", "BYTES": "BYTES"}


def v2_inputs(rows, kinds, binary: bool):
    inputs = []
    for name, column in columns_of(rows, kinds).items():
        infer_input = InferInput(name, [len(rows)], V2_DATATYPES[kinds[name]])
        infer_input.set_data_from_numpy(column, binary_data=binary)
        inputs.append(infer_input)
    return inputs


def grpc_infer(target: str, infer_inputs):
    """One ``ModelInfer`` call with KServe's gRPC client."""
    async def call():
        client = InferenceGRPCClient(target)
        try:
            return await client.infer(InferRequest(model_name=MODEL_NAME, infer_inputs=infer_inputs))
        finally:
            await client.close()

    return run(call())


@pytest.fixture(scope="module")
def expected(in_process, rows, feature_kinds):
    return predict_in_process(in_process, rows, feature_kinds)


def test_v1_rows_match_in_process(http, rows, expected):
    reply = http.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": rows})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6, atol=1e-7)
    assert body["model_version"] == "1"
    assert reply.headers["x-model-version"] == "1"


def test_v1_columnar_matches_in_process(http, rows, expected, feature_kinds):
    inputs = {name: [row[name] for row in rows] for name in feature_kinds}
    reply = http.post(f"/v1/models/{MODEL_NAME}:predict", json={"inputs": inputs})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-6, atol=1e-7)


def test_v1_with_kserve_rest_client(server, rows, expected):
    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v1"))
        try:
            return await client.infer(server.url, {"instances": rows}, model_name=MODEL_NAME)
        finally:
            await client.close()

    np.testing.assert_allclose(run(call())["predictions"], expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_rest_with_kserve_client(server, rows, expected, feature_kinds, binary):
    headers = {}

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            request = InferRequest(model_name=MODEL_NAME, infer_inputs=v2_inputs(rows, feature_kinds, binary))
            return await client.infer(server.url, request, model_name=MODEL_NAME, response_headers=headers)
        finally:
            await client.close()

    response = run(call())
    # InferResponse.from_bytes drops the body's model_version; the header carries it too.
    assert headers["x-model-version"] == "1"
    np.testing.assert_allclose(response.outputs[0].as_numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("binary", [False, True], ids=["contents", "raw"])
def test_v2_grpc_with_kserve_client(server, rows, expected, feature_kinds, binary):
    response = grpc_infer(server.grpc_target, v2_inputs(rows, feature_kinds, binary))
    assert response.model_version == "1"
    np.testing.assert_allclose(response.outputs[0].as_numpy(), expected, rtol=1e-6, atol=1e-7)


def test_v2_rest_json_nulls(http, rows, expected, feature_kinds):
    """Plain JSON V2 with null for missing values, as a client without numpy would send."""
    inputs = [{"name": name, "datatype": V2_DATATYPES[kind], "shape": [len(rows)],
               "data": [row[name] for row in rows]} for name, kind in feature_kinds.items()]
    reply = http.post(f"/v2/models/{MODEL_NAME}/infer", json={"id": "r-1", "inputs": inputs})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == "r-1" and body["model_version"] == "1"
    assert reply.headers["x-model-version"] == "1"
    np.testing.assert_allclose(body["outputs"][0]["data"], expected, rtol=1e-6, atol=1e-7)


def test_v2_column_shapes_and_integer_datatypes(server, http, rows, expected, feature_kinds):
    """Shape [rows, 1] (nested JSON data) and INT features sent as INT64 give the same predictions."""
    complete = [i for i, row in enumerate(rows)
                if all(row[n] is not None for n, k in feature_kinds.items() if k == "INT")][:8]
    assert len(complete) >= 2
    chosen = [rows[i] for i in complete]
    datatypes = {"INT": "INT64", "FLOAT": "FP32", "BYTES": "BYTES"}
    inputs = [{"name": name, "datatype": datatypes[kind], "shape": [len(chosen), 1],
               "data": [[row[name]] for row in chosen]} for name, kind in feature_kinds.items()]
    reply = http.post(f"/v2/models/{MODEL_NAME}/infer", json={"inputs": inputs})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["outputs"][0]["data"], expected[complete].reshape(-1),
                               rtol=1e-6, atol=1e-7)

    infer_inputs = []
    for name, column in columns_of(chosen, feature_kinds).items():
        kind = feature_kinds[name]
        infer_input = InferInput(name, [len(chosen), 1], datatypes[kind])
        column = (column.astype(np.int64) if kind == "INT" else column).reshape(-1, 1)
        infer_input.set_data_from_numpy(column, binary_data=False)
        infer_inputs.append(infer_input)
    response = grpc_infer(server.grpc_target, infer_inputs)
    np.testing.assert_allclose(response.outputs[0].as_numpy().reshape(-1), expected[complete].reshape(-1),
                               rtol=1e-6, atol=1e-7)


def test_null_equals_example_without_the_feature(http, in_process, rows, feature_kinds):
    """A null feature is predicted like a tf.Example that lacks the feature (the pipeline's view)."""
    import tensorflow as tf

    nulled = []
    for i, row in enumerate(rows[:12]):
        row = dict(row)
        for j, name in enumerate(sorted(feature_kinds)):
            if (i + j) % 3 == 0:
                row[name] = None
        nulled.append(row)
    reply = http.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": nulled})
    assert reply.status_code == 200, reply.text
    examples = [_example(row, feature_kinds).SerializeToString() for row in nulled]
    from_examples = in_process.signatures["serving_examples"](examples=tf.constant(examples))["predictions"]
    np.testing.assert_allclose(reply.json()["predictions"], from_examples.numpy(), rtol=1e-5, atol=1e-6)


def _example(row, kinds):
    import tensorflow as tf

    feature = {}
    for name, value in row.items():
        if value is None:
            continue
        if kinds[name] == "BYTES":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif kinds[name] == "INT":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def test_extra_keys_are_ignored(http, rows, expected):
    extra = [{**row, "tips": 1.5, "not_a_feature": "x"} for row in rows[:3]]
    reply = http.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": extra})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["predictions"], expected[:3], rtol=1e-6, atol=1e-7)


def test_concurrent_callers_get_their_own_rows(server, rows, expected):
    """Requests of different sizes, sent at once, are batched together and split back correctly."""
    import httpx

    def call(i):
        chosen = [(i * 7 + k) % len(rows) for k in range(1 + i % 4)]
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            reply = client.post(f"/v1/models/{MODEL_NAME}:predict",
                                json={"instances": [rows[k] for k in chosen]})
        return chosen, reply

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(96)))
    for chosen, reply in results:
        assert reply.status_code == 200, reply.text
        np.testing.assert_allclose(reply.json()["predictions"], expected[chosen], rtol=1e-6, atol=1e-7)


def test_asyncio_event_loop_serves_the_same(registry, tmp_path, rows, expected, feature_kinds):
    """``--event-loop asyncio`` (instead of the default uvloop) answers every protocol alike."""
    srv = start_server(registry, tmp_path, "--event-loop", "asyncio")
    try:
        srv.wait_ready()
        assert "event loop: asyncio" in srv.stderr_file.read_text()
        reply = httpx.post(f"{srv.url}/v1/models/{MODEL_NAME}:predict", json={"instances": rows}, timeout=30)
        np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-6, atol=1e-7)
        response = grpc_infer(srv.grpc_target, v2_inputs(rows, feature_kinds, False))
        np.testing.assert_allclose(response.outputs[0].as_numpy(), expected, rtol=1e-6, atol=1e-7)
    finally:
        assert srv.stop() == 0
