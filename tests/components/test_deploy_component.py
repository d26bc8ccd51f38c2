"""The deploy KFP component's function against a stub Kubernetes API server on loopback.

``deploy.python_func`` runs in-process with kfp.dsl artifacts in a temporary folder. The cluster
is an ``http.server`` on 127.0.0.1 reached through a temporary kubeconfig ($KUBECONFIG, bearer
token), so credentials loading, the official client's requests and the JSON bodies are real.
The stub answers like KServe for one InferenceService: GET is 404 until a POST creates it, then
GET reports it Ready with a URL. Lineage goes to a real SQLite ML Metadata store. Not exercised:
PATCH rollouts (tests/components/test_deploy.py), TLS, KServe's controller.

The registry version holds the ``inferenceservice.yaml`` that push renders; deploy applies it.
"""

import http.server
import json
import threading

import pytest
from kfp.dsl import Artifact, Markdown, Model
from ml_metadata.proto import metadata_store_pb2 as mlmd

from prodml.components.common import artifacts, lineage
from prodml.components.deploy.component import deploy
from prodml.components.push.inferenceservice import render_inferenceservice, to_yaml

NS = "models"
MODEL_NAME = "chicago-taxi"
VERSION = 3
TOKEN = "test-token"
PIPELINE, RUN_ID = "prodml-training", "run-7"
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"
URL = f"http://{MODEL_NAME}.{NS}.example.com"


class StubApiServer(http.server.ThreadingHTTPServer):
    """Keeps InferenceServices created by POST and every request it received."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects = {}
        self.requests = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self._record()
        name = self.path[len(PATH) + 1:] if self.path.startswith(PATH + "/") else None
        obj = self.server.objects.get(name)
        if obj is None:
            return self._answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404,
                                      "message": f'inferenceservices.serving.kserve.io "{name}" not found'})
        status = {"observedGeneration": obj["metadata"]["generation"], "url": URL,
                  "conditions": [{"type": "Ready", "status": "True"}]}
        self._answer(200, {**obj, "status": status})

    def do_PATCH(self):
        self._record()
        self._answer(405, {"kind": "Status", "message": "PATCH not handled by the stub"})

    def do_POST(self):
        body = self._record()
        if self.path != PATH:
            return self._answer(405, {"kind": "Status", "message": f"POST {self.path} not handled"})
        obj = {**body, "metadata": {**body["metadata"], "generation": 1}}
        self.server.objects[obj["metadata"]["name"]] = obj
        self._answer(201, obj)

    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append({"method": self.command, "path": self.path, "body": body,
                                     "authorization": self.headers.get("Authorization"),
                                     "content_type": self.headers.get("Content-Type")})
        return body

    def _answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api_server():
    server = StubApiServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def no_in_cluster(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def kubeconfig(tmp_path, api_server, monkeypatch, no_in_cluster):
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({   # JSON is YAML: the kubeconfig loader reads it as is
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": api_server.url}}],
        "users": [{"name": "stub", "user": {"token": TOKEN}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def pushed(tmp_path):
    """The push step's output as deploy receives it, and the registry version folder it names."""
    version_dir = tmp_path / "registry" / MODEL_NAME / str(VERSION)
    version_dir.mkdir(parents=True)
    artifacts.write_inferenceservice(str(version_dir), to_yaml(render_inferenceservice(
        MODEL_NAME, str(version_dir), VERSION, namespace="default")))
    model = Model(name="pushed_model", uri=str(tmp_path / "push" / "pushed_model"))
    model.metadata.update({"pushed": True, "version": VERSION, "pushed_destination": str(version_dir),
                           "model_name": MODEL_NAME})
    return model


def _run(tmp_path, pushed_model, connection, **parameters):
    (tmp_path / "deploy").mkdir()
    deployment = Artifact(name="deployment", uri=str(tmp_path / "deploy" / "deployment"))
    card = Markdown(name="deployment_card", uri=str(tmp_path / "deploy" / "deployment_card"))
    deploy.python_func(pushed_model=pushed_model, deployment=deployment, deployment_card=card,
                       namespace=NS, timeout_seconds=5, metadata_connection=connection,
                       pipeline_name=PIPELINE, run_id=RUN_ID, **parameters)
    with open(card.path, encoding="utf-8") as f:
        return deployment, f.read()


def _record_push(connection, pushed_model, tmp_path) -> int:
    """Records a push execution as the push component does; returns the pushed model's artifact id."""
    meta = pushed_model.metadata
    lineage.record_execution(
        connection, "push", PIPELINE, RUN_ID,
        inputs={"model": lineage.ArtifactRecord(str(tmp_path / "train" / "model"), lineage.MODEL)},
        outputs={"pushed_model": lineage.ArtifactRecord(
            meta["pushed_destination"], lineage.MODEL,
            {"model_name": MODEL_NAME, "version": VERSION, "run_id": RUN_ID})},
        parameters={"model_name": MODEL_NAME, "pushed": True})
    [artifact] = lineage.find_artifacts(connection, meta["pushed_destination"], lineage.MODEL)
    return artifact.id


def test_deploys_to_the_cluster_and_records_lineage(tmp_path, api_server, kubeconfig, pushed):
    connection = f"sqlite://{tmp_path / 'm.db'}"
    pushed_id = _record_push(connection, pushed, tmp_path)

    deployment, card = _run(tmp_path, pushed, connection)

    # What the API server saw: look up, create with the rendered manifest, poll until Ready.
    root = str(tmp_path / "registry" / MODEL_NAME)
    calls = [(r["method"], r["path"]) for r in api_server.requests]
    assert calls == [("GET", f"{PATH}/{MODEL_NAME}"), ("POST", PATH), ("GET", f"{PATH}/{MODEL_NAME}")]
    post = api_server.requests[1]
    assert post["body"] == render_inferenceservice(MODEL_NAME, root, VERSION, namespace=NS)
    assert post["body"]["spec"]["predictor"]["model"]["storageUri"] == root
    assert post["body"]["spec"]["predictor"]["model"]["args"] == ["--version", str(VERSION)]
    assert post["content_type"] == "application/json"
    assert {r["authorization"] for r in api_server.requests} == {f"Bearer {TOKEN}"}

    expected = {"namespace": NS, "name": MODEL_NAME, "url": URL, "version": VERSION,
                "traffic_percent": 100, "action": "created", "protocol": "rest",
                "deployment_mode": "cluster default", "serving_runtime": "prodml-predictor"}
    assert deployment.metadata == expected
    assert card == ("# Deployment: created\n\n- **deployment_mode**: cluster default\n"
                    f"- **name**: {MODEL_NAME}\n- **namespace**: {NS}\n- **protocol**: rest\n"
                    "- **serving_runtime**: prodml-predictor\n- **traffic_percent**: 100\n"
                    f"- **url**: {URL}\n- **version**: {VERSION}\n")

    store = lineage.connect(connection)
    executions = store.get_executions()
    assert [lineage.properties_of(e)["component"] for e in executions] == ["push", "deploy"]
    deploy_execution = executions[1]
    params = lineage.properties_of(deploy_execution)
    assert (params["run_id"], params["pipeline_name"], params["namespace"], params["canary_traffic_percent"]) \
        == (RUN_ID, PIPELINE, NS, 100)

    events = {(e.type, e.path.steps[0].key): e.artifact_id
              for e in store.get_events_by_execution_ids([deploy_execution.id])}
    assert set(events) == {(mlmd.Event.INPUT, "pushed_model"), (mlmd.Event.OUTPUT, "deployment")}
    # Deploy read the very artifact push wrote, so the graph runs on from push to the deployment.
    assert events[(mlmd.Event.INPUT, "pushed_model")] == pushed_id
    assert len(lineage.find_artifacts(connection, str(tmp_path / "registry" / MODEL_NAME / str(VERSION)),
                                      lineage.MODEL)) == 1

    [output] = store.get_artifacts_by_id([events[(mlmd.Event.OUTPUT, "deployment")]])
    [output_type] = store.get_artifact_types_by_id([output.type_id])
    assert output_type.name == lineage.DEPLOYMENT == "prodml.Deployment"
    assert output.uri == URL
    properties = lineage.properties_of(output)
    assert {k: properties[k] for k in expected} == expected

    steps = lineage.upstream(connection, output.id)
    assert [s["component"] for s in steps] == ["deploy", "push"]
    run = store.get_context_by_type_and_name(lineage.RUN_CONTEXT, RUN_ID)
    assert {e.id for e in store.get_executions_by_context(run.id)} == {e.id for e in executions}


def test_protocol_and_mode_inputs_choose_the_runtime_and_are_recorded(tmp_path, api_server, kubeconfig, pushed):
    connection = f"sqlite://{tmp_path / 'm.db'}"
    deployment, card = _run(tmp_path, pushed, connection, protocol="grpc", deployment_mode="Knative")

    [post] = [r for r in api_server.requests if r["method"] == "POST"]
    assert post["body"]["spec"]["predictor"]["model"]["runtime"] == "prodml-predictor-grpc"
    assert post["body"]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert deployment.metadata["serving_runtime"] == "prodml-predictor-grpc"
    assert "- **protocol**: grpc\n" in card
    [execution] = lineage.connect(connection).get_executions()
    params = lineage.properties_of(execution)
    assert (params["protocol"], params["deployment_mode"]) == ("grpc", "Knative")


def test_deploy_without_an_earlier_push_record_records_the_model_itself(tmp_path, api_server, kubeconfig,
                                                                        pushed):
    connection = f"sqlite://{tmp_path / 'm.db'}"
    _run(tmp_path, pushed, connection)
    store = lineage.connect(connection)
    [execution] = store.get_executions()
    inputs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
              if e.type == mlmd.Event.INPUT]
    [model] = store.get_artifacts_by_id(inputs)
    assert model.uri == pushed.metadata["pushed_destination"]
    assert store.get_artifact_types_by_id([model.type_id])[0].name == lineage.MODEL


def test_skips_and_records_nothing_without_a_cluster(tmp_path, monkeypatch, no_in_cluster, pushed):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    db = tmp_path / "m.db"

    deployment, card = _run(tmp_path, pushed, f"sqlite://{db}")

    assert deployment.metadata["action"] == "skipped"
    assert deployment.metadata["reason"] == "no Kubernetes cluster is configured"
    assert deployment.metadata["version"] == VERSION
    assert card.startswith("# Deployment: skipped\n")
    assert "- **reason**: no Kubernetes cluster is configured\n" in card
    assert f"- **version**: {VERSION}\n" in card
    assert not db.exists()


def _calls(api_server):
    return [(r["method"], r["path"]) for r in api_server.requests]


def test_applies_the_manifest_push_wrote(tmp_path, api_server, kubeconfig, pushed):
    version_dir = pushed.metadata["pushed_destination"]
    written = render_inferenceservice(MODEL_NAME, version_dir, VERSION, namespace="default", runtime="tensorflow")
    artifacts.write_inferenceservice(version_dir, to_yaml(written))

    deployment, _ = _run(tmp_path, pushed, "")

    [post] = [r for r in api_server.requests if r["method"] == "POST"]
    assert post["body"] == {**written, "metadata": {**written["metadata"], "namespace": NS}}
    assert post["body"]["spec"]["predictor"]["model"]["modelFormat"] == {"name": "tensorflow"}
    assert deployment.metadata["action"] == "created"


def test_never_moves_the_service_to_an_older_version(tmp_path, api_server, kubeconfig, pushed):
    newer = render_inferenceservice(MODEL_NAME, str(tmp_path / "registry" / MODEL_NAME), VERSION + 2,
                                    namespace=NS)
    api_server.objects[MODEL_NAME] = {**newer, "metadata": {**newer["metadata"], "generation": 1}}
    db = tmp_path / "m.db"

    deployment, card = _run(tmp_path, pushed, f"sqlite://{db}")

    reason = (f"InferenceService {NS}/{MODEL_NAME} serves v{VERSION + 2} of {MODEL_NAME}, newer than v{VERSION}: "
              "deploy never moves a service to an older version.")
    assert deployment.metadata["action"] == "skipped" and deployment.metadata["reason"].startswith(reason)
    assert (deployment.metadata["version"], deployment.metadata["served_version"]) == (VERSION, VERSION + 2)
    assert _calls(api_server) == [("GET", f"{PATH}/{MODEL_NAME}")]   # looked, wrote nothing
    assert card.startswith("# Deployment: skipped\n") and f"- **reason**: {reason}" in card
    assert not db.exists()


def test_a_version_without_its_manifest_is_one_clear_error(tmp_path, api_server, kubeconfig, pushed, monkeypatch):
    version_dir = pushed.metadata["pushed_destination"]
    (tmp_path / "registry" / MODEL_NAME / str(VERSION) / "inferenceservice.yaml").unlink()
    error_file = tmp_path / "error.txt"
    monkeypatch.setenv("PRODML_ERROR_FILE", str(error_file))
    monkeypatch.delenv("PRODML_VERBOSE", raising=False)
    with pytest.raises(SystemExit) as exit_:
        _run(tmp_path, pushed, "")
    assert exit_.value.code == 3   # a pipeline error, not a usage error
    [record] = [json.loads(line) for line in error_file.read_text().splitlines()]
    assert record["message"].startswith(f"deploy failed: {version_dir}/inferenceservice.yaml is missing: "
                                        f"{version_dir} is not a registry version written by push")
    assert api_server.requests == []
