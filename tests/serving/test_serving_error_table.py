"""One error table: every path answers each error class with the status and code of its row.

The paths are the REST fast path (V1 predict, V2 JSON infer), KServe's FastAPI routes (metadata,
health, binary V2, unknown models) and gRPC. For each row of ``errors.ERROR_TABLE`` the test
makes the error happen on every path where a client can cause it and checks the answer; a row
added to the table without a way to trigger it fails the test.
"""

import json

import grpc
import httpx
import pytest
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

from prodml.serving import errors

from .serving_support import MODEL_NAME, start_server

pytestmark = pytest.mark.serving

V2_DATATYPES = {"INT": "FP64", "FLOAT": "FP32", "BYTES": "BYTES"}
CONTENTS = {"FP64": "fp64_contents", "FP32": "fp32_contents", "BYTES": "bytes_contents"}
# Rows no client can trigger on purpose, and why.
NOT_CLIENT_TRIGGERABLE = {Exception: "a bug in the server (500 / INTERNAL)"}


@pytest.fixture(scope="module")
def waiting_server(tmp_path_factory):
    """A server on an empty registry, polling: not ready, and staying so for this module."""
    registry = tmp_path_factory.mktemp("empty-registry")
    srv = start_server(registry, tmp_path_factory.mktemp("waiting"), "--poll", "60")
    try:
        srv.wait_live()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def paths(server, waiting_server, rows, feature_kinds):
    """{error class: {path: a call that triggers it and returns the HTTP status or gRPC code}}."""
    ready, waiting = server, waiting_server
    row = rows[0]
    v2_inputs = [{"name": n, "datatype": V2_DATATYPES[k], "shape": [1], "data": [row[n]]}
                 for n, k in feature_kinds.items()]
    v1_body = {"instances": [row]}
    big = {"instances": [row] * 4000}  # over the shared server's 1 MB limit

    def rest(srv, method, path, **kwargs):
        def call():
            with httpx.Client(base_url=srv.url, timeout=30.0) as client:
                reply = client.request(method, path, **kwargs)
            if reply.status_code != 200:
                assert reply.json()["error"], reply.text  # every error body names the problem
            return reply.status_code
        return call

    def binary(srv, path, header_length=None, size=None):
        head = json.dumps({"inputs": v2_inputs}).encode()
        body = head + b"\0" * ((size or 0) - len(head))
        headers = {"inference-header-content-length": header_length or str(len(head)),
                   "content-type": "application/octet-stream"}
        return rest(srv, "POST", path, content=body, headers=headers)

    def grpc_infer(srv, model=MODEL_NAME, version="", inputs=True, repeat=1):
        tensors = []
        if inputs:
            for name, kind in feature_kinds.items():
                datatype = V2_DATATYPES[kind]
                value = row[name] if row[name] is not None else ("" if kind == "BYTES" else float("nan"))
                value = value.encode() if kind == "BYTES" else value
                contents = pb.InferTensorContents(**{CONTENTS[datatype]: [value] * repeat})
                tensors.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype,
                                                                     shape=[repeat], contents=contents))
        request = pb.ModelInferRequest(model_name=model, model_version=version, inputs=tensors)
        return grpc_call(srv, "ModelInfer", request)

    def grpc_call(srv, method, request):
        def call():
            with grpc.insecure_channel(srv.grpc_target) as channel:
                stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
                try:
                    getattr(stub, method)(request, timeout=30)
                except grpc.RpcError as e:
                    return e.code()
            return grpc.StatusCode.OK
        return call

    predict, infer = f"/v1/models/{MODEL_NAME}:predict", f"/v2/models/{MODEL_NAME}/infer"
    return {
        InvalidInput: {
            "fast v1": rest(ready, "POST", predict, json={"instances": [{}]}),
            "fast v2": rest(ready, "POST", infer, json={"inputs": []}),
            "kserve routes": binary(ready, infer, header_length="abc"),
            "grpc": grpc_infer(ready, inputs=False),
        },
        ModelNotFound: {
            "kserve routes": rest(ready, "POST", "/v1/models/nope:predict", json=v1_body),
            "kserve routes (metadata)": rest(ready, "GET", "/v2/models/nope"),
            "grpc": grpc_infer(ready, model="nope"),
            "grpc (metadata)": grpc_call(ready, "ModelMetadata", pb.ModelMetadataRequest(name="nope")),
        },
        errors.VersionNotServed: {
            "fast v2": rest(ready, "POST", f"/v2/models/{MODEL_NAME}/versions/2/infer", json={"inputs": v2_inputs}),
            "kserve routes": binary(ready, f"/v2/models/{MODEL_NAME}/versions/2/infer"),
            "kserve routes (metadata)": rest(ready, "GET", f"/v2/models/{MODEL_NAME}/versions/2"),
            "grpc": grpc_infer(ready, version="2"),
            "grpc (metadata)": grpc_call(ready, "ModelMetadata", pb.ModelMetadataRequest(name=MODEL_NAME,
                                                                                        version="2")),
        },
        errors.RequestTooLarge: {
            "fast v1": rest(ready, "POST", predict, json=big),
            "fast v2": rest(ready, "POST", infer, json={"inputs": v2_inputs, "pad": "x" * 1_100_000}),
            "kserve routes": binary(ready, infer, size=1_100_000),
            "grpc": grpc_infer(ready, repeat=30_000),
        },
        ModelNotReady: {
            "fast v1": rest(waiting, "POST", predict, json=v1_body),
            "fast v2": rest(waiting, "POST", infer, json={"inputs": v2_inputs}),
            "kserve routes": rest(waiting, "GET", f"/v2/models/{MODEL_NAME}/ready"),
            "grpc": grpc_infer(waiting),
        },
        ServerNotReady: {
            "kserve routes": rest(waiting, "GET", "/v2/health/ready"),
        },
        NotImplementedError: {
            "kserve routes": rest(ready, "POST", f"/v1/models/{MODEL_NAME}:explain", json=v1_body),
        },
    }


def test_every_row_of_the_table_can_be_checked(paths):
    assert set(paths) | set(NOT_CLIENT_TRIGGERABLE) == set(errors.ERROR_TABLE)


def test_every_path_answers_the_tabled_status(paths):
    wrong = []
    for error_class, calls in paths.items():
        row = errors.ERROR_TABLE[error_class]
        for path, call in calls.items():
            expected = row.grpc if path.startswith("grpc") else int(row.http)
            got = call()
            if got != expected:
                wrong.append(f"{error_class.__name__} on {path}: {got}, table says {expected}")
    assert not wrong, "\n".join(wrong)


def test_client_errors_leave_no_traceback(server, waiting_server):
    for srv in (server, waiting_server):
        assert "Traceback" not in srv.stderr_file.read_text(errors="replace")
