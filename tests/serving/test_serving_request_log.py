"""Request logging to a JSON-lines file, one record per served row (Contract 1 of issue 10): request
ids (V2 ``id``, else ``x-request-id``, else generated) returned and logged over V1 REST, V2 REST and
V2 gRPC; ``--log_passthrough`` keys logged and never fed to the model; mode 0600.

The shared server (conftest) logs the pass-through keys ``PASSTHROUGH``. Rotation by size is
tested on ``RequestLogger`` directly (``test_serving_units.py``)."""

import json
import re
import stat
import subprocess
import time
import uuid

import grpc
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.infer_type import InferInput, InferRequest

from .serving_support import MODEL_NAME, PASSTHROUGH, columns_of, free_port, runtime_cli

pytestmark = pytest.mark.serving

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
INFER = f"/v2/models/{MODEL_NAME}/infer"
RECORD_KEYS = ["timestamp", "model_name", "model_version", "request_id", "row", "passthrough", "features",
               "prediction"]
V2_DATATYPES = {"INT": "FP64", "FLOAT": "FP32", "BYTES": "BYTES"}
CONTENTS = {"FP64": "fp64_contents", "FP32": "fp32_contents", "BYTES": "bytes_contents"}
GENERATED = re.compile(r"^[0-9a-f]{32}$")


def test_file_log_has_one_record_per_served_row(server, http, rows, feature_kinds):
    marked = [{**row, "fare": 9000.0 + i / 4, "trip_id": f"trip-{i}"} for i, row in enumerate(rows[:5])]
    marked[0]["company"] = None
    del marked[3]["trip_id"]  # a named key a row does not carry is logged as null
    request_id = f"file-log-{uuid.uuid4().hex}"
    reply = http.post(PREDICT, json={"instances": marked}, headers={"x-request-id": request_id})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == request_id
    predictions = reply.json()["predictions"]

    records = _records(server.log_file, request_id, len(marked))
    assert [r["row"] for r in records] == list(range(len(marked)))
    for i, (sent, record, prediction) in enumerate(zip(marked, records, predictions)):
        assert list(record) == RECORD_KEYS  # Contract 1, in this order
        assert record["features"].keys() == feature_kinds.keys()  # pass-through keys are not features
        for name in feature_kinds:  # FLOAT features went through float32
            value = sent[name]
            expected = pytest.approx(value, rel=1e-6) if isinstance(value, float) else value
            assert record["features"][name] == expected
        assert list(record["passthrough"]) == list(PASSTHROUGH)  # every named key, null when not sent
        assert record["passthrough"] == {"trip_id": None if i == 3 else f"trip-{i}", "order_ref": None}
        assert record["prediction"] == pytest.approx(prediction, rel=1e-6)
        assert record["model_name"] == MODEL_NAME and record["model_version"] == 1
        assert record["timestamp"].endswith("+00:00") and len(record["timestamp"]) == 32  # microseconds, UTC
    assert records[0]["features"]["company"] is None
    assert stat.S_IMODE(server.log_file.stat().st_mode) == 0o600  # request data: owner only


def test_v1_ids_come_from_the_header_or_are_generated_and_unique(server, http, rows):
    replies = [http.post(PREDICT, json={"instances": rows[:2]}) for _ in range(3)]
    ids = [reply.headers["x-request-id"] for reply in replies]
    assert all(GENERATED.match(i) for i in ids) and len(set(ids)) == 3
    for request_id in ids:  # every generated id is the one logged with the request's rows
        assert [r["row"] for r in _records(server.log_file, request_id, 2)] == [0, 1]

    solo = f"v1-solo-{uuid.uuid4().hex}"  # a one-row request (the request log's common case)
    assert http.post(PREDICT, json={"instances": [{**rows[0], "trip_id": 7}]},
                     headers={"x-request-id": solo}).headers["x-request-id"] == solo
    assert _records(server.log_file, solo, 1)[0]["passthrough"] == {"trip_id": 7, "order_ref": None}

    columnar = {name: [row[name] for row in rows[:2]] for name in rows[0]}
    reply = http.post(PREDICT, json={"inputs": {**columnar, "order_ref": ["o-1", "o-2"], "tips": [1, 2]}},
                      headers={"x-request-id": "columnar-1"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == "columnar-1"
    logged = _records(server.log_file, "columnar-1", 2)
    assert [r["passthrough"] for r in logged] == [{"trip_id": None, "order_ref": "o-1"},
                                                  {"trip_id": None, "order_ref": "o-2"}]
    assert "tips" not in logged[0]["features"]  # unnamed extra fields are ignored, as before


def test_v2_rest_body_id_wins_over_the_header(server, http, rows, feature_kinds):
    inputs = _v2_json_inputs(rows[:3], feature_kinds)
    trip = {"name": "trip_id", "datatype": "BYTES", "shape": [3], "data": ["t-a", "t-b", None]}
    body_id = f"v2-body-{uuid.uuid4().hex}"
    reply = http.post(INFER, json={"id": body_id, "inputs": [*inputs, trip]}, headers={"x-request-id": "v2-hdr"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["id"] == body_id and reply.headers["x-request-id"] == body_id
    logged = _records(server.log_file, body_id, 3)
    assert [r["passthrough"]["trip_id"] for r in logged] == ["t-a", "t-b", None]
    assert all("trip_id" not in r["features"] for r in logged)

    header_id = f"v2-hdr-{uuid.uuid4().hex}"
    reply = http.post(INFER, json={"inputs": inputs}, headers={"x-request-id": header_id})
    assert reply.json()["id"] == header_id and reply.headers["x-request-id"] == header_id
    assert len(_records(server.log_file, header_id, 3)) == 3

    generated = {http.post(INFER, json={"inputs": inputs}).json()["id"] for _ in range(3)}
    assert len(generated) == 3 and all(GENERATED.match(i) for i in generated)


def test_v2_binary_request_id_and_passthrough(server, http, rows, feature_kinds):
    """A binary V2 body goes through KServe's ``InferRequest``: same id rules, same pass-through."""
    infer_inputs = _infer_inputs(rows[:2], feature_kinds, binary=True)
    trip = InferInput("trip_id", [2], "BYTES")
    trip.set_data_from_numpy(np.array([b"bin-1", b"bin-2"], dtype=object), binary_data=True)
    request = InferRequest(model_name=MODEL_NAME, infer_inputs=[*infer_inputs, trip], request_id="binary-1")
    body, json_length = request.to_rest()
    reply = http.post(INFER, content=body, headers={"inference-header-content-length": str(json_length),
                                                    "content-type": "application/octet-stream",
                                                    "x-request-id": "ignored-header"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == "binary-1"
    logged = _records(server.log_file, "binary-1", 2)
    assert [r["passthrough"]["trip_id"] for r in logged] == ["bin-1", "bin-2"]


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
def test_grpc_ids_and_passthrough(server, rows, feature_kinds, raw):
    tensors, raw_contents = _grpc_tensors(rows[:2], feature_kinds, raw)
    trip = pb.ModelInferRequest.InferInputTensor(name="trip_id", datatype="BYTES", shape=[2])
    if raw:
        raw_contents.append(_bytes_tensor([b"g-1", b"g-2"]))
    else:
        trip.contents.bytes_contents.extend([b"g-1", b"g-2"])
    tensors.append(trip)

    def infer(request_id="", metadata=()):
        request = pb.ModelInferRequest(model_name=MODEL_NAME, id=request_id, inputs=tensors,
                                       raw_input_contents=raw_contents)
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
            return stub.ModelInfer(request, metadata=metadata, timeout=30)

    kind = "raw" if raw else "contents"
    assert infer(f"grpc-body-{kind}", metadata=[("x-request-id", "grpc-hdr")]).id == f"grpc-body-{kind}"
    assert infer(metadata=[("x-request-id", f"grpc-hdr-{kind}")]).id == f"grpc-hdr-{kind}"
    generated = {infer().id for _ in range(2)}
    assert len(generated) == 2 and all(GENERATED.match(i) for i in generated)
    for request_id in (f"grpc-body-{kind}", f"grpc-hdr-{kind}", *generated):
        logged = _records(server.log_file, request_id, 2)
        assert [(r["row"], r["passthrough"]["trip_id"]) for r in logged] == [(0, "g-1"), (1, "g-2")]


def test_passthrough_with_the_wrong_number_of_values_is_400(http, rows, feature_kinds):
    inputs = _v2_json_inputs(rows[:3], feature_kinds)
    trip = {"name": "trip_id", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}
    reply = http.post(INFER, json={"inputs": [*inputs, trip]})
    assert reply.status_code == 400
    assert "'trip_id'" in reply.json()["error"] and "3 rows" in reply.json()["error"]


@pytest.mark.parametrize("flag, value, expected", [
    ("--log_passthrough", "trip_id,fare", "'fare', which is also a feature"),
    ("--log-passthrough", "trip_id,,order_ref", "has an empty name"),
    ("--log_passthrough", "trip_id,trip_id", "more than once"),
])
def test_malformed_passthrough_config_is_one_paragraph(registry, tmp_path, capsys, flag, value, expected):
    """Checked before anything loads (the version's prodml_model.json); exit 2, no traceback."""
    from prodml.serving.__main__ import main

    code = main(["--model_name", MODEL_NAME, "--registry", str(registry), "--log_requests",
                 str(tmp_path / "requests.jsonl"), flag, value])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow  # two interpreters start (the runtime CLI, the server)
def test_prodml_serve_forwards_the_log_flags(tmp_path):
    """``prodml serve --log-requests F --log-passthrough K`` reaches the server (which names the bad key)."""
    done = subprocess.run([runtime_cli(), "serve", "--model-name", MODEL_NAME, "--root", str(tmp_path),
                           "--http-port", str(free_port()), "--grpc-port", str(free_port()),
                           "--log-requests", str(tmp_path / "requests.jsonl"), "--log-passthrough", "trip_id,"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--log_passthrough 'trip_id,' has an empty name" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow  # loads the SavedModel in this process
def test_a_version_with_a_passthrough_feature_is_not_served(registry, tmp_path):
    """The loaded signature is checked too (a version pushed later, or one without prodml_model.json)."""
    from prodml.components.common.errors import ConfigError
    from prodml.serving.model_source import ModelSource
    from prodml.serving.predictor import ProdmlModel

    model = ProdmlModel(MODEL_NAME, ModelSource.from_flags(MODEL_NAME, str(registry), None, None),
                        passthrough=["fare"])
    with pytest.raises(ConfigError, match="'fare', which is also a feature of the model at .*version 1"):
        model.versions_manager.load_now()
    assert model.current is None


def _records(path, request_id, count, timeout=10.0):
    """The log records of ``request_id`` (at least ``count``), in row order, once written."""
    deadline = time.monotonic() + timeout
    found = []
    while time.monotonic() < deadline:
        if path.exists():
            found = [r for r in map(json.loads, path.read_text().splitlines()) if r["request_id"] == request_id]
            if len(found) >= count:
                return sorted(found, key=lambda r: r["row"])
        time.sleep(0.1)
    raise AssertionError(f"{len(found)} of {count} records of request {request_id} in {path} after {timeout}s")


def _v2_json_inputs(rows, kinds):
    return [{"name": name, "datatype": V2_DATATYPES[kind], "shape": [len(rows)], "data": [row[name] for row in rows]}
            for name, kind in kinds.items()]


def _infer_inputs(rows, kinds, binary):
    inputs = []
    for name, column in columns_of(rows, kinds).items():
        infer_input = InferInput(name, [len(rows)], V2_DATATYPES[kinds[name]])
        infer_input.set_data_from_numpy(column, binary_data=binary)
        inputs.append(infer_input)
    return inputs


def _grpc_tensors(rows, kinds, raw):
    """gRPC input tensors with typed contents, or (raw) their values in raw_input_contents."""
    tensors, raw_contents = [], []
    for name, column in columns_of(rows, kinds).items():
        datatype = V2_DATATYPES[kinds[name]]
        tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=[len(rows)])
        values = [v.encode() for v in column.tolist()] if datatype == "BYTES" else column.tolist()
        if raw:
            raw_contents.append(_bytes_tensor(values) if datatype == "BYTES" else column.tobytes())
        else:
            getattr(tensor.contents, CONTENTS[datatype]).extend(values)
        tensors.append(tensor)
    return tensors, raw_contents


def _bytes_tensor(values):
    """V2 raw BYTES: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(len(v).to_bytes(4, "little") + v for v in values)
