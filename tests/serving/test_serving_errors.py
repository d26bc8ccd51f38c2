"""Protocol errors: the right status, a message naming the problem, and a server that lives on."""

import json

import grpc
import numpy as np
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest

from .serving_support import MODEL_NAME, columns_of, run

pytestmark = pytest.mark.serving

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
INFER = f"/v2/models/{MODEL_NAME}/infer"
V2_DATATYPES = {"INT": "FP64", "FLOAT": "FP32", "BYTES": "BYTES"}


def _v2_json(rows, kinds):
    return [{"name": name, "datatype": V2_DATATYPES[kind], "shape": [len(rows)],
             "data": [r[name] for r in rows]} for name, kind in kinds.items()]


def _error(reply, status):
    assert reply.status_code == status, reply.text
    return reply.json()["error"]


def test_missing_feature_is_400_naming_it(http, rows):
    row = {k: v for k, v in rows[0].items() if k != "fare"}
    assert "'fare'" in _error(http.post(PREDICT, json={"instances": [rows[1], row]}), 400)
    columns = {k: [v] for k, v in row.items()}
    assert "'fare'" in _error(http.post(PREDICT, json={"inputs": columns}), 400)


def test_missing_v2_input_is_400_naming_it(http, rows, feature_kinds):
    inputs = [i for i in _v2_json(rows[:2], feature_kinds) if i["name"] != "company"]
    assert "'company'" in _error(http.post(INFER, json={"inputs": inputs}), 400)


@pytest.mark.parametrize("feature,value", [("fare", "twelve"), ("trip_seconds", 1.5), ("company", 42),
                                           ("trip_miles", [1.0, 2.0]), ("fare", True)])
def test_wrong_dtype_is_400_naming_the_feature(http, rows, feature, value):
    message = _error(http.post(PREDICT, json={"instances": [rows[0], {**rows[1], feature: value}]}), 400)
    assert f"'{feature}'" in message and "row 1" in message


def test_wrong_v2_datatype_is_400(http, rows, feature_kinds):
    inputs = _v2_json(rows[:2], feature_kinds)
    for i in inputs:
        if i["name"] == "company":
            i["datatype"] = "FP32"
    assert "'company'" in _error(http.post(INFER, json={"inputs": inputs}), 400)
    inputs = _v2_json(rows[:2], feature_kinds)
    for i in inputs:
        if i["name"] == "fare":
            i["data"] = ["a", "b"]
    assert "'fare'" in _error(http.post(INFER, json={"inputs": inputs}), 400)


def test_ragged_columns_are_400_naming_the_feature(http, rows, feature_kinds):
    columns = {k: [r[k] for r in rows[:3]] for k in feature_kinds}
    columns["trip_miles"] = columns["trip_miles"][:2]
    assert "trip_miles" in _error(http.post(PREDICT, json={"inputs": columns}), 400)
    inputs = _v2_json(rows[:3], feature_kinds)
    for i in inputs:
        if i["name"] == "trip_miles":
            i["data"], i["shape"] = i["data"][:2], [2]
    assert "'trip_miles'" in _error(http.post(INFER, json={"inputs": inputs}), 400)


def test_v2_values_must_match_the_shape(http, rows, feature_kinds):
    inputs = _v2_json(rows[:3], feature_kinds)
    inputs[1]["shape"] = [4]
    message = _error(http.post(INFER, json={"inputs": inputs}), 400)
    assert f"'{inputs[1]['name']}'" in message and "[4]" in message
    inputs = _v2_json(rows[:3], feature_kinds)
    inputs[0]["shape"] = [1, 3]
    assert f"'{inputs[0]['name']}'" in _error(http.post(INFER, json={"inputs": inputs}), 400)


@pytest.mark.parametrize("path", [PREDICT, INFER])
def test_malformed_json_is_400(http, path):
    reply = http.post(path, content=b'{"instances": [', headers={"content-type": "application/json"})
    assert _error(reply, 400)


def test_malformed_v2_body_names_the_field(http, rows, feature_kinds):
    inputs = _v2_json(rows[:1], feature_kinds)
    del inputs[2]["datatype"]
    assert "inputs[2].datatype" in _error(http.post(INFER, json={"inputs": inputs}), 400)
    inputs = _v2_json(rows[:1], feature_kinds)
    inputs[0]["shape"] = ["one"]
    assert "inputs[0].shape" in _error(http.post(INFER, json={"inputs": inputs}), 400)
    inputs = _v2_json(rows[:1], feature_kinds)
    reply = http.post(INFER, json={"inputs": inputs, "outputs": [{"name": "probabilities"}]})
    assert "probabilities" in _error(reply, 400)


def test_wrong_body_shape_is_400(http):
    assert '"instances"' in _error(http.post(PREDICT, json={"rows": []}), 400)
    assert _error(http.post(PREDICT, json={"instances": {}}), 400)
    assert _error(http.post(PREDICT, json={"instances": []}), 400)
    assert _error(http.post(INFER, json={"inputs": "nope"}), 400)


def test_unknown_model_is_404(http, rows):
    assert "nope" in _error(http.post("/v1/models/nope:predict", json={"instances": rows[:1]}), 404)
    assert _error(http.post("/v2/models/nope/infer", json={"inputs": []}), 404)
    assert http.get("/v2/models/nope").status_code == 404


def test_oversized_payload_is_413(http, rows):
    big = {"instances": [rows[0]] * 4000}  # well over the fixture's 1 MB limit
    assert "limit" in _error(http.post(PREDICT, json=big), 413)

    def chunks():  # no content-length: the limit is enforced while reading
        yield b'{"instances": ['
        for _ in range(1200):
            yield b'{"fare": 1.0, "company": "' + b"x" * 1000 + b'"},'
        yield b"{}]}"

    reply = http.post(PREDICT, content=chunks(), headers={"content-type": "application/json"})
    assert reply.status_code == 413, reply.text


def test_grpc_errors(server, rows, feature_kinds):
    def inputs(drop=None, ragged=None):
        out = []
        for name, column in columns_of(rows[:3], feature_kinds).items():
            if name == drop:
                continue
            if name == ragged:
                column = column[:2]
            infer_input = InferInput(name, [len(column)], V2_DATATYPES[feature_kinds[name]])
            infer_input.set_data_from_numpy(column, binary_data=False)
            out.append(infer_input)
        return out

    huge = [InferInput("company", [2000], "BYTES")]
    huge[0].set_data_from_numpy(np.array(["x" * 1000] * 2000, dtype=object), binary_data=False)

    async def call(model, infer_inputs):
        client = InferenceGRPCClient(server.grpc_target)
        try:
            await client.infer(InferRequest(model_name=model, infer_inputs=infer_inputs))
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details()
        finally:
            await client.close()
        return grpc.StatusCode.OK, ""

    code, details = run(call(MODEL_NAME, inputs(drop="fare")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'fare'" in details
    code, details = run(call(MODEL_NAME, inputs(ragged="fare")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'fare'" in details
    short = inputs()
    short[0] = InferInput(short[0].name, [3], short[0].datatype, short[0].data[:2])
    code, details = run(call(MODEL_NAME, short))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"'{short[0].name}'" in details and "shape" in details
    int_feature = next(n for n, k in feature_kinds.items() if k == "INT")
    fractional = [i if i.name != int_feature else InferInput(int_feature, [3], "FP64", [1.0, 2.5, 3.0])
                  for i in inputs()]
    code, details = run(call(MODEL_NAME, fractional))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"'{int_feature}'" in details and "2.5" in details
    assert run(call("nope", inputs()))[0] == grpc.StatusCode.NOT_FOUND
    assert run(call(MODEL_NAME, huge))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert run(call(MODEL_NAME, inputs()))[0] == grpc.StatusCode.OK


def test_server_survives_errors(http, rows):
    for _ in range(3):
        http.post(PREDICT, content=b"\xff\xfe", headers={"content-type": "application/json"})
        http.post(PREDICT, json={"instances": [{"fare": "x"}]})
    reply = http.post(PREDICT, json={"instances": rows[:2]})
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 2


def test_v1_json_sent_with_a_form_content_type_is_still_json(http, rows):
    """curl -d @request.json sends application/x-www-form-urlencoded, as KServe's docs show it."""
    import json

    body = json.dumps({"instances": rows[:2]}).encode()
    reply = http.post(PREDICT, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == http.post(PREDICT, json={"instances": rows[:2]}).json()["predictions"]
    reply = http.post(PREDICT, content=b"instances=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 400 and "is not JSON" in reply.json()["error"]


def _binary_request(rows, kinds, break_input=None, extra=b""):
    """A binary V2 body (KServe's client encoding); ``break_input`` gets one byte fewer than declared."""
    inputs, blobs = [], b""
    for name, column in columns_of(rows, kinds).items():
        infer_input = InferInput(name, [len(column)], V2_DATATYPES[kinds[name]])
        infer_input.set_data_from_numpy(column, binary_data=True)
        raw = infer_input._raw_data
        if name == break_input:
            raw = raw[:-1]
        inputs.append({"name": name, "shape": [len(column)], "datatype": infer_input.datatype,
                       "parameters": {"binary_data_size": len(infer_input._raw_data)}})
        blobs += raw
    head = json.dumps({"inputs": inputs}).encode()
    return head + blobs + extra, {"inference-header-content-length": str(len(head)),
                                  "content-type": "application/octet-stream"}


def test_client_mistakes_that_answered_500_are_400_naming_the_field(http, rows, feature_kinds):
    body, headers = _binary_request(rows[:2], feature_kinds)
    assert http.post(INFER, content=body, headers=headers).status_code == 200

    message = _error(http.post(INFER, content=body, headers={**headers, "inference-header-content-length": "x1"}),
                     400)
    assert "inference-header-content-length header is 'x1'" in message
    reply = http.post(INFER, json={"inputs": _v2_json(rows[:1], feature_kinds), "parameters": ["binary_data_output"]})
    assert '"parameters" is list' in _error(reply, 400)
    inputs = _v2_json(rows[:1], feature_kinds)
    inputs[1]["parameters"] = "yes"
    assert "inputs[1].parameters" in _error(http.post(INFER, json={"inputs": inputs}), 400)

    fare = "fare"
    body, headers = _binary_request(rows[:2], feature_kinds, break_input=fare)
    assert "binary_data_size" in _error(http.post(INFER, content=body, headers=headers), 400)
    body, headers = _binary_request(rows[:2], feature_kinds, extra=b"\0\0")
    assert "add up to" in _error(http.post(INFER, content=body, headers=headers), 400)


@pytest.mark.parametrize("value", [1e39, -1e39, 10 ** 40])
def test_numbers_outside_float32_are_400_naming_feature_and_row(http, server, rows, feature_kinds, value):
    instances = [dict(row) for row in rows[:3]]
    instances[2]["fare"] = value
    message = _error(http.post(PREDICT, json={"instances": instances}), 400)
    assert "Feature 'fare'" in message and "row 2 of instances" in message and "float32" in message
    inputs = _v2_json(instances, feature_kinds)
    message = _error(http.post(INFER, json={"inputs": inputs}), 400)
    assert "Feature 'fare'" in message and "row 2" in message

    def infer_inputs():
        out = []
        for name, column in columns_of(rows[:3], feature_kinds).items():
            if name == "trip_seconds":  # an INT feature (float64 on the wire) can carry 1e39 itself
                column = column.copy()
                column[1] = float(value)
            infer_input = InferInput(name, [len(column)], V2_DATATYPES[feature_kinds[name]])
            infer_input.set_data_from_numpy(column, binary_data=False)
            out.append(infer_input)
        return out

    async def call():
        client = InferenceGRPCClient(server.grpc_target)
        try:
            await client.infer(InferRequest(model_name=MODEL_NAME, infer_inputs=infer_inputs()))
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details()
        finally:
            await client.close()
        return grpc.StatusCode.OK, ""

    code, details = run(call())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'trip_seconds'" in details and "row 1" in details


def test_versions_are_served_or_404_naming_the_served_ones(http, server, rows, feature_kinds):
    served = http.get(f"/v2/models/{MODEL_NAME}").json()["versions"]
    assert served == ["1"]
    assert http.get(f"/v2/models/{MODEL_NAME}/versions/1").json()["versions"] == served
    assert http.get(f"/v2/models/{MODEL_NAME}/versions/1/ready").json()["ready"] is True
    inputs = _v2_json(rows[:2], feature_kinds)
    reply = http.post(f"/v2/models/{MODEL_NAME}/versions/1/infer", json={"inputs": inputs})
    assert reply.status_code == 200 and reply.json()["model_version"] == "1"
    body, headers = _binary_request(rows[:2], feature_kinds)
    reply = http.post(f"/v2/models/{MODEL_NAME}/versions/1/infer", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    for path in ("/versions/7/infer", "/versions/7", "/versions/7/ready"):
        method = http.post if path.endswith("infer") else http.get
        reply = method(f"/v2/models/{MODEL_NAME}{path}", **({"json": {"inputs": inputs}} if method == http.post
                                                             else {}))
        assert "no version '7'" in _error(reply, 404) and "versions served: 1" in reply.json()["error"]

    async def call(version):
        client = InferenceGRPCClient(server.grpc_target)
        infer_inputs = []
        for name, column in columns_of(rows[:2], feature_kinds).items():
            infer_input = InferInput(name, [len(column)], V2_DATATYPES[feature_kinds[name]])
            infer_input.set_data_from_numpy(column, binary_data=False)
            infer_inputs.append(infer_input)
        try:
            response = await client.infer(InferRequest(model_name=MODEL_NAME, infer_inputs=infer_inputs,
                                                       model_version=version))
            return grpc.StatusCode.OK, response.model_version
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details()
        finally:
            await client.close()

    assert run(call("1")) == (grpc.StatusCode.OK, "1")
    code, details = run(call("7"))
    assert code == grpc.StatusCode.NOT_FOUND and "versions served: 1" in details
