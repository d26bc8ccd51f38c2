"""The serving image, started exactly as each prodml ServingRuntime starts it, answers.

Runs in the serving environment (``make test-images``), once per runtime in manifests/kserve/
(servingruntime-prodml*.yaml: REST, gRPC for Serverless, both for RawDeployment). The container's args,
env, ports, resource limits and security context are read from the ServingRuntime and translated to
``podman run``; a field this test cannot translate fails it, so the manifest cannot grow a setting the
test silently skips. Only the declared ports are published, as Knative and KServe publish them, so a
protocol answers from the host exactly when its runtime declares its port.
A model trained by the runtime environment and published to a registry is mounted read-only at the
path the args name (KServe's /mnt/models). Requests go from the host over V1 REST, V2 REST and V2 gRPC,
rows with missing values included, and must return the SavedModel's own predictions.
"""

import csv
import json
import math
import pathlib
import subprocess
import time
import uuid
from typing import Dict, List

import numpy as np
import pytest
import yaml
from image_support import REPO, free_port, image, logs, podman, remove, require_image

pytestmark = pytest.mark.images
# The serving environment's clients (make test-images runs this file with .venv/serving).
pytest.importorskip("kserve", reason="runs in the serving environment (.venv/serving)")
import httpx  # noqa: E402 - after the importorskip above

SERVING_RUNTIMES = sorted((REPO / "manifests" / "kserve").glob("servingruntime-prodml*.yaml"))
BUILD_MODEL = REPO / "tests" / "serving" / "build_model.py"
TAXI_SMALL = REPO / "tests" / "testdata" / "taxi_small.csv"
# The InferenceService name KServe puts in place of {{.Name}}: push names it after the model.
MODEL_NAME = "chicago-taxi"
KSERVE_MODEL_MOUNT = "/mnt/models"
EPOCHS = 2
READY_TIMEOUT_SECONDS = 300
V2_DATATYPES = {"INT": "FP64", "FLOAT": "FP32", "BYTES": "BYTES"}
TOLERANCE = {"rtol": 1e-6, "atol": 1e-7}


def flag(args: List[str], name: str) -> str:
    return args[args.index(name) + 1]


def kubernetes_memory(quantity: str) -> str:
    """A Kubernetes binary memory quantity (4Gi, 512Mi) as podman's --memory value."""
    units = {"Gi": "g", "Mi": "m", "Ki": "k"}
    for suffix, unit in units.items():
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + unit
    pytest.fail(f"memory limit {quantity!r} in a ServingRuntime: this test knows {', '.join(units)} only")


def podman_run_options(container: dict, model_dir: pathlib.Path, host_ports: Dict[int, int]) -> List[str]:
    """``podman run`` options for the ServingRuntime's container (everything but the image and args)."""
    known = {"name", "image", "args", "env", "ports", "resources", "securityContext"}
    unknown = set(container) - known
    assert not unknown, (f"The ServingRuntime sets {sorted(unknown)} on its container, which this test does "
                         "not translate to podman yet: add it here so the image is run as the manifest says.")
    options = []
    for env in container.get("env", []):
        assert set(env) == {"name", "value"}, f"env {env} is not a plain name/value pair"
        options += ["--env", f"{env['name']}={env['value']}"]
    for port in container["ports"]:
        options += ["--publish", f"127.0.0.1:{host_ports[port['containerPort']]}:{port['containerPort']}"
                                 f"/{port.get('protocol', 'TCP').lower()}"]
    limits = container.get("resources", {}).get("limits", {})
    if "cpu" in limits:
        options += ["--cpus", str(limits["cpu"])]
    if "memory" in limits:
        options += ["--memory", kubernetes_memory(limits["memory"])]
    security = dict(container.get("securityContext", {}))
    # runAsNonRoot is the kubelet's check of the image's user: test_image_user_passes_run_as_non_root.
    security.pop("runAsNonRoot", None)
    if security.pop("allowPrivilegeEscalation", True) is False:
        options += ["--security-opt", "no-new-privileges"]
    for capability in security.get("capabilities", {}).pop("drop", []):
        options += ["--cap-drop", capability]
    leftover = {k: v for k, v in security.items() if v}
    assert not leftover, f"securityContext fields {leftover} are not translated to podman by this test"
    return options + ["--volume", f"{model_dir}:{KSERVE_MODEL_MOUNT}:ro"]


@pytest.fixture(scope="module", params=SERVING_RUNTIMES, ids=lambda path: path.stem)
def runtime_container(request) -> dict:
    [runtime] = [d for d in yaml.safe_load_all(request.param.read_text()) if d]
    [container] = runtime["spec"]["containers"]
    return container


def declares(container: dict, flag_name: str) -> bool:
    """True when the port the args give to ``flag_name`` is a declared (published) container port."""
    port = int(flag(container["args"], flag_name))
    return port in {p["containerPort"] for p in container["ports"]}


@pytest.fixture(scope="module")
def serving_image(runtime_container) -> str:
    tag = image("serving")
    # The tag under test is the manifest's image (plus the stand-in suffix), so the manifest names this build.
    assert tag.startswith(runtime_container["image"]), (tag, runtime_container["image"])
    require_image(tag)
    return tag


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> pathlib.Path:
    """One model's folder of versions (registry/<model>/), as KServe's storage initializer fills /mnt/models."""
    work = tmp_path_factory.mktemp("model")
    registry = work / "registry"
    runtime_python = REPO / ".venv" / "runtime" / "bin" / "python"
    done = subprocess.run([str(runtime_python), str(BUILD_MODEL), str(TAXI_SMALL), str(work), str(registry),
                           MODEL_NAME, str(EPOCHS)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"training the test model failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    folder = registry / MODEL_NAME
    assert (folder / "1" / "saved_model.pb").is_file()
    # The registry stages versions in private (0700) temporary folders; the predictor runs as the image's
    # non-root user, so the mounted copy is made world-readable as KServe's storage initializer leaves it.
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o055 if path.is_dir() else 0o044))
    return folder


@pytest.fixture(scope="module")
def served(serving_image, runtime_container, model_dir):
    """The running container: (REST base URL, gRPC target, container name)."""
    args = [arg.replace("{{.Name}}", MODEL_NAME) for arg in runtime_container["args"]]
    assert flag(args, "--model_dir") == KSERVE_MODEL_MOUNT
    host_ports = {port["containerPort"]: free_port() for port in runtime_container["ports"]}
    name = f"prodml-serving-test-{uuid.uuid4().hex[:8]}"
    podman("run", "--detach", "--name", name, *podman_run_options(runtime_container, model_dir, host_ports),
           serving_image, *args)
    try:
        http_port, grpc_port = int(flag(args, "--http_port")), int(flag(args, "--grpc_port"))
        url = f"http://127.0.0.1:{host_ports[http_port]}" if http_port in host_ports else None
        grpc_target = f"127.0.0.1:{host_ports[grpc_port]}" if grpc_port in host_ports else None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            state = json.loads(podman("inspect", "--format", "{{json .State}}", name).stdout)
            assert state["Running"], f"the serving container exited ({state['ExitCode']}):\n{logs(name)}"
            if ready(name, url, grpc_target):
                break
            assert time.monotonic() < deadline, f"not ready after {READY_TIMEOUT_SECONDS} s:\n{logs(name)}"
            time.sleep(1.0)
        yield url, grpc_target, name
    finally:
        remove([name])


def ready(name: str, url, grpc_target) -> bool:
    """Ready through a published port: REST's /v2/health/ready, else gRPC's ServerReady."""
    if url:
        try:
            return httpx.get(f"{url}/v2/health/ready", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False
    import asyncio

    from kserve import InferenceGRPCClient

    async def call():
        client = InferenceGRPCClient(grpc_target, timeout=2)
        try:
            return await client.is_server_ready()
        finally:
            await client.close()

    try:
        return bool(asyncio.run(call()))
    except Exception:  # noqa: BLE001 - any failure to answer yet means not ready
        return False


@pytest.fixture(scope="module")
def feature_kinds(model_dir) -> Dict[str, str]:
    return json.loads((model_dir / "1" / "prodml_model.json").read_text())["raw_features"]


@pytest.fixture(scope="module")
def rows(feature_kinds) -> List[dict]:
    """30 raw taxi rows as JSON objects, null where the CSV has no value; some rows have nulls."""
    def parse(text: str, kind: str):
        if text == "":
            return None
        return text if kind == "BYTES" else (int(float(text)) if kind == "INT" else float(text))

    with open(TAXI_SMALL, newline="", encoding="utf-8") as f:
        records = [r for _, r in zip(range(30), csv.DictReader(f))]
    out = [{name: parse(r[name], kind) for name, kind in feature_kinds.items()} for r in records]
    assert any(None in row.values() for row in out), "the rows should include missing values"
    return out


def columns(rows: List[dict], kinds: Dict[str, str]) -> Dict[str, np.ndarray]:
    """Rows as the signature's inputs: NaN / "" for null."""
    dtypes = {"INT": np.float64, "FLOAT": np.float32}
    out = {}
    for name, kind in kinds.items():
        values = [row[name] for row in rows]
        if kind == "BYTES":
            out[name] = np.array(["" if v is None else v for v in values], dtype=object)
        else:
            out[name] = np.array([math.nan if v is None else v for v in values], dtype=dtypes[kind])
    return out


@pytest.fixture(scope="module")
def expected(model_dir, rows, feature_kinds) -> np.ndarray:
    """The SavedModel's own serving_default on the rows, in this (the serving) environment."""
    import tensorflow as tf

    model = tf.saved_model.load(str(model_dir / "1"))
    tensors = {name: tf.constant(col) for name, col in columns(rows, feature_kinds).items()}
    return model.signatures["serving_default"](**tensors)["predictions"].numpy()


def test_image_user_passes_run_as_non_root(serving_image, runtime_container, served):
    """The kubelet starts a runAsNonRoot container only if the image's user is numeric and not 0."""
    assert runtime_container["securityContext"]["runAsNonRoot"] is True
    user = require_image(serving_image)["Config"]["User"]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, user
    _, _, name = served
    assert podman("exec", name, "id", "-u").stdout.strip() == user.split(":")[0]


def test_only_the_declared_ports_are_published(runtime_container, served):
    """What the host can reach is what the manifest declares (podman publishes nothing else)."""
    _, _, name = served
    published = podman("port", name).stdout
    container_ports = {int(line.split("/")[0]) for line in published.splitlines() if line.strip()}
    assert container_ports == {p["containerPort"] for p in runtime_container["ports"]}, published


def test_v1_rest_answers_with_the_models_predictions(runtime_container, served, rows, expected):
    if not declares(runtime_container, "--http_port"):
        pytest.skip("this runtime publishes gRPC only (Knative: one port)")
    url, _, _ = served
    reply = httpx.post(f"{url}/v1/models/{MODEL_NAME}:predict", json={"instances": rows}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model_version"] == "1"
    np.testing.assert_allclose(reply.json()["predictions"], expected, **TOLERANCE)


def test_v2_rest_answers_with_the_models_predictions(runtime_container, served, rows, expected, feature_kinds):
    if not declares(runtime_container, "--http_port"):
        pytest.skip("this runtime publishes gRPC only (Knative: one port)")
    url, _, _ = served
    inputs = [{"name": name, "datatype": V2_DATATYPES[kind], "shape": [len(rows)],
               "data": [row[name] for row in rows]} for name, kind in feature_kinds.items()]
    reply = httpx.post(f"{url}/v2/models/{MODEL_NAME}/infer", json={"id": "images-1", "inputs": inputs},
                       timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == "images-1" and body["model_version"] == "1"
    np.testing.assert_allclose(body["outputs"][0]["data"], expected, **TOLERANCE)


def test_grpc_port_is_named_for_the_mode(runtime_container):
    """A declared gRPC port is h2c when it is the only one (Knative), grpc-port beside REST (RawDeployment)."""
    declared = {port["containerPort"]: port.get("name") for port in runtime_container["ports"]}
    grpc_port = int(flag(runtime_container["args"], "--grpc_port"))
    if grpc_port in declared:
        assert declared[grpc_port] == ("h2c" if len(declared) == 1 else "grpc-port"), declared


def test_v2_grpc_answers_with_the_models_predictions(runtime_container, served, rows, expected, feature_kinds):
    if not declares(runtime_container, "--grpc_port"):
        pytest.skip("this runtime publishes REST only (Knative: one port)")
    import asyncio

    from kserve import InferenceGRPCClient
    from kserve.protocol.infer_type import InferInput, InferRequest

    _, grpc_target, _ = served
    infer_inputs = []
    for name, column in columns(rows, feature_kinds).items():
        infer_input = InferInput(name, [len(rows)], V2_DATATYPES[feature_kinds[name]])
        infer_input.set_data_from_numpy(column, binary_data=False)
        infer_inputs.append(infer_input)

    async def call():
        client = InferenceGRPCClient(grpc_target)
        try:
            return await client.infer(InferRequest(model_name=MODEL_NAME, infer_inputs=infer_inputs))
        finally:
            await client.close()

    response = asyncio.run(call())
    assert response.model_version == "1"
    np.testing.assert_allclose(response.outputs[0].as_numpy(), expected, **TOLERANCE)
