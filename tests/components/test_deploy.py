"""The deploy executor against the official kubernetes client, with the HTTP layer replaced.

There is no cluster here. Each test builds a real ``kubernetes.client.ApiClient`` whose
Configuration points at a closed loopback port, and swaps its urllib3 pool manager for
``FakeApiServer``: every request still goes through the client's own path building, header
selection (Content-Type) and JSON encoding, and non-2xx answers still become ``ApiException``.
The fake stores InferenceServices, applies JSON merge patches (RFC 7386) and reports a status
chosen by the test. Not exercised: a real API server, KServe's controller and its Ready
semantics, credentials, TLS.
"""

import copy
import itertools
import json
from urllib.parse import urlparse

import pytest
import urllib3
from kubernetes import client

from prodml.components.common.errors import ConfigError, DeploymentError
from prodml.components.deploy import executor, kube, readiness
from prodml.components.push.inferenceservice import render_inferenceservice

NS = "models"
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"
ROOT = "gs://bucket/registry/chicago-taxi"


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch, as the API server applies application/merge-patch+json."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeApiServer:
    """Stands in for urllib3's PoolManager behind the kubernetes client's RESTClientObject."""

    def __init__(self):
        self.objects = {}
        self.calls = []
        self.status = "ready"      # ready | pending | failed
        self.refuse = {}           # method -> HTTP status to answer writes with
        self.defaults = False      # act like KServe's defaulting webhook on writes

    def request(self, method, url, body=None, headers=None, **_):
        path = urlparse(url).path
        sent = json.loads(body) if body else None
        self.calls.append({"method": method, "path": path, "content_type": (headers or {}).get("Content-Type"),
                           "body": sent})
        name = path[len(PATH) + 1:] if path.startswith(PATH + "/") else None
        if method in self.refuse:
            return self._answer(self.refuse[method], {"kind": "Status", "message": "forbidden by RBAC"})
        if method == "GET":
            if name not in self.objects:
                return self._answer(404, {"kind": "Status", "reason": "NotFound",
                                          "message": f'inferenceservices "{name}" not found'})
            return self._answer(200, self._with_status(self.objects[name]))
        if method == "POST" and path == PATH:
            obj = self._default(merge_patch(sent, {"metadata": {"generation": 1}}))
            self.objects[obj["metadata"]["name"]] = obj
            return self._answer(201, obj)
        if method == "PATCH" and name in self.objects:
            obj = self._default(merge_patch(self.objects[name], sent))
            obj["metadata"]["generation"] += 1
            self.objects[name] = obj
            return self._answer(200, obj)
        return self._answer(405, {"kind": "Status", "message": f"{method} {path} not handled"})

    def _default(self, obj):
        model = obj["spec"]["predictor"].get("model")
        if self.defaults and model:
            model.setdefault("resources", {"requests": {"cpu": "1", "memory": "2Gi"}})
        return obj

    def _with_status(self, obj):
        name, generation = obj["metadata"]["name"], obj["metadata"]["generation"]
        status = {"observedGeneration": generation, "url": f"http://{name}.{NS}.example.com"}
        if self.status == "ready":
            status["conditions"] = [{"type": "Ready", "status": "True"}]
        elif self.status == "pending":
            status["conditions"] = [{"type": "Ready", "status": "False", "reason": "RevisionMissing",
                                     "message": "Configuration is waiting for a Revision to become ready."}]
        else:
            status["conditions"] = [{"type": "Ready", "status": "False"}]
            status["modelStatus"] = {"transitionStatus": "BlockedByFailedLoad",
                                     "lastFailureInfo": {"reason": "ModelLoadFailed",
                                                         "message": "saved_model.pb not found in /mnt/models/3"}}
        return {**obj, "status": status}

    @staticmethod
    def _answer(status, payload):
        return urllib3.HTTPResponse(body=json.dumps(payload).encode(), status=status, reason="",
                                    headers={"Content-Type": "application/json"}, preload_content=True)

    def writes(self):
        return [c for c in self.calls if c["method"] in ("POST", "PATCH", "PUT", "DELETE")]


@pytest.fixture
def server(monkeypatch):
    # Waiting is instantaneous: every poll advances a fake clock by one second.
    ticks = itertools.count()
    monkeypatch.setattr(readiness, "clock", lambda: float(next(ticks)))
    monkeypatch.setattr(readiness, "sleep", lambda seconds: None)
    return FakeApiServer()


@pytest.fixture
def api(server):
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:1"   # closed port: nothing may reach the network
    api_client = client.ApiClient(configuration)
    api_client.rest_client.pool_manager = server
    return api_client


def manifest(version=1, runtime="prodml", image=""):
    """The InferenceService push writes beside a version (for another namespace: deploy sets its own)."""
    return render_inferenceservice("chicago-taxi", ROOT, version, namespace="default", runtime=runtime, image=image)


def deploy(api, version=1, runtime="prodml", image="", **kwargs):
    return executor.run_deploy(manifest(version, runtime, image), NS, api_client=api, **kwargs)


def test_creates_the_inferenceservice_when_absent(server, api):
    result = deploy(api)
    get, post = server.calls[0], server.calls[1]
    assert (get["method"], get["path"]) == ("GET", f"{PATH}/chicago-taxi")
    assert (post["method"], post["path"], post["content_type"]) == ("POST", PATH, "application/json")
    assert post["body"] == render_inferenceservice("chicago-taxi", ROOT, 1, namespace=NS)
    assert result == {"namespace": NS, "name": "chicago-taxi", "url": f"http://chicago-taxi.{NS}.example.com",
                      "version": 1, "traffic_percent": 100, "action": "created", "protocol": "rest",
                      "deployment_mode": "cluster default", "serving_runtime": "prodml-predictor"}


def test_deploying_the_same_version_again_sends_no_write(server, api):
    deploy(api)
    before = len(server.writes())
    assert deploy(api)["action"] == "unchanged"
    assert len(server.writes()) == before
    assert all(c["method"] == "GET" for c in server.calls[-2:])


def test_fields_added_by_kserve_do_not_count_as_a_change(server, api):
    server.defaults = True
    deploy(api, version=1)
    assert "resources" in server.objects["chicago-taxi"]["spec"]["predictor"]["model"]
    assert deploy(api, version=1)["action"] == "unchanged"
    assert deploy(api, version=1, runtime="tensorflow")["action"] == "patched"


def test_new_version_as_canary_is_a_merge_patch(server, api):
    deploy(api, version=1)
    result = deploy(api, version=2, canary_traffic_percent=10)
    [patch] = [c for c in server.writes() if c["method"] == "PATCH"]
    assert patch["path"] == f"{PATH}/chicago-taxi"
    assert patch["content_type"] == "application/merge-patch+json"
    predictor = patch["body"]["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["args"] == ["--version", "2"]
    assert patch["body"]["metadata"]["annotations"] == {"prodml.io/model-version": "2"}
    assert result["action"] == "patched" and result["traffic_percent"] == 10 and result["version"] == 2
    stored = server.objects["chicago-taxi"]
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 10
    # The same version at the same split is now a no-op; a different split is not.
    assert deploy(api, version=2, canary_traffic_percent=10)["action"] == "unchanged"
    assert deploy(api, version=2, canary_traffic_percent=50)["action"] == "patched"


def test_full_rollout_removes_the_canary_field(server, api):
    deploy(api, version=1)
    deploy(api, version=2, canary_traffic_percent=10)
    deploy(api, version=3)
    assert server.writes()[-1]["body"]["spec"]["predictor"]["canaryTrafficPercent"] is None
    assert "canaryTrafficPercent" not in server.objects["chicago-taxi"]["spec"]["predictor"]


def test_never_moves_the_service_to_an_older_version(server, api):
    deploy(api, version=3)
    writes = len(server.writes())
    result = deploy(api, version=2)
    assert result["action"] == "skipped" and (result["version"], result["served_version"]) == (2, 3)
    assert result["reason"].startswith(f"InferenceService {NS}/chicago-taxi serves v3 of chicago-taxi, newer "
                                       "than v2: deploy never moves a service to an older version.")
    assert len(server.writes()) == writes
    assert server.objects["chicago-taxi"]["metadata"]["annotations"]["prodml.io/model-version"] == "3"
    # During a canary of v4, v3 is still older than what the service rolls out.
    deploy(api, version=4, canary_traffic_percent=10)
    assert deploy(api, version=3)["action"] == "skipped"
    assert deploy(api, version=4)["action"] == "patched"   # the same version: promote to 100%


def test_served_version_falls_back_to_the_predictor_spec():
    plain = manifest(7)
    del plain["metadata"]["annotations"]
    assert executor.served_version(plain) == 7                        # --version argument
    tensorflow = manifest(7, runtime="tensorflow")
    del tensorflow["metadata"]["annotations"]
    assert executor.served_version(tensorflow) is None                # TF Serving: the root, no pin
    tensorflow["spec"]["predictor"]["model"]["storageUri"] = ROOT + "/5"
    assert executor.served_version(tensorflow) == 5                   # a version folder
    assert executor.served_version({"metadata": {}, "spec": {}}) is None


def test_a_service_that_does_not_say_its_version_is_updated(server, api):
    foreign = manifest(9, runtime="tensorflow")
    del foreign["metadata"]["annotations"]
    server.objects["chicago-taxi"] = {**foreign, "metadata": {**foreign["metadata"], "namespace": NS,
                                                              "generation": 1}}
    assert deploy(api, version=2)["action"] == "patched"
    assert executor.served_version(server.objects["chicago-taxi"]) == 2


def test_promote_gives_the_latest_revision_all_traffic(server, api):
    deploy(api, version=1)
    deploy(api, version=2, canary_traffic_percent=20)
    result = executor.promote("chicago-taxi", NS, api_client=api)
    last = server.writes()[-1]
    assert last["content_type"] == "application/merge-patch+json"
    assert last["body"] == {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    assert "canaryTrafficPercent" not in server.objects["chicago-taxi"]["spec"]["predictor"]
    assert result["action"] == "promoted" and result["traffic_percent"] == 100 and result["version"] == 2


def test_rollback_sends_all_traffic_to_the_previous_revision(server, api):
    deploy(api, version=1)
    deploy(api, version=2, canary_traffic_percent=20)
    result = executor.rollback("chicago-taxi", NS, api_client=api)
    assert server.writes()[-1]["body"] == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert server.objects["chicago-taxi"]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert result["action"] == "rolled_back" and result["traffic_percent"] == 0


def test_promote_of_a_missing_service_says_deploy_first(server, api):
    with pytest.raises(ConfigError, match=f"{NS}/chicago-taxi does not exist"):
        executor.promote("chicago-taxi", NS, api_client=api)


def test_switching_runtime_leaves_no_stale_model_fields(server, api):
    deploy(api, version=1)
    deploy(api, version=2, runtime="tensorflow")
    expected = render_inferenceservice("chicago-taxi", ROOT, 2, namespace=NS, runtime="tensorflow")
    assert server.objects["chicago-taxi"]["spec"]["predictor"] == expected["spec"]["predictor"]
    deploy(api, version=3, image="ghcr.io/prodml/prodml-serving-python3.11:0.1.0")
    predictor = server.objects["chicago-taxi"]["spec"]["predictor"]
    assert "model" not in predictor and predictor["containers"][0]["args"][5] == "3"


def test_isvc_name_differs_from_model_name(server, api):
    result = deploy(api, isvc_name="taxi-prod")
    body = server.writes()[0]["body"]
    assert body["metadata"]["name"] == "taxi-prod"
    assert body["metadata"]["labels"]["prodml.io/model-name"] == "chicago-taxi"
    assert result["name"] == "taxi-prod" and result["url"] == f"http://taxi-prod.{NS}.example.com"


def test_timeout_names_the_service_and_the_last_condition(server, api):
    server.status = "pending"
    with pytest.raises(DeploymentError) as e:
        deploy(api, timeout_seconds=5)
    message = str(e.value)
    assert f"{NS}/chicago-taxi" in message and "not Ready after 5s" in message
    assert "Configuration is waiting for a Revision to become ready." in message


def test_failed_model_load_stops_waiting_at_once(server, api):
    server.status = "failed"
    with pytest.raises(DeploymentError) as e:
        deploy(api, timeout_seconds=600)
    assert "BlockedByFailedLoad" in str(e.value) and "saved_model.pb not found" in str(e.value)
    assert len([c for c in server.calls if c["method"] == "GET"]) == 2   # the lookup and one status check


def test_api_errors_name_the_service_and_the_cause(server, api):
    server.refuse["POST"] = 403
    with pytest.raises(DeploymentError) as e:
        deploy(api)
    assert f"create InferenceService {NS}/chicago-taxi" in str(e.value) and "RBAC" in str(e.value)


@pytest.mark.parametrize("kwargs, words", [({"namespace": ""}, ["namespace"]),
                                           ({"canary_traffic_percent": 0}, ["canary_traffic_percent", "0"])])
def test_bad_arguments_fail_before_any_request(server, api, kwargs, words):
    args = {"manifest": manifest(), "namespace": NS, **kwargs}
    with pytest.raises(ConfigError) as e:
        executor.run_deploy(api_client=api, **args)
    assert all(w in str(e.value) for w in words)
    assert server.calls == []


# --- protocol and deployment mode ---------------------------------------------------------------


@pytest.mark.parametrize("protocol, mode, runtime", [
    ("rest", "", "prodml-predictor"),
    ("grpc", "", "prodml-predictor-grpc"),
    ("rest", "Serverless", "prodml-predictor"),
    ("grpc", "Serverless", "prodml-predictor-grpc"),
    ("grpc", "Knative", "prodml-predictor-grpc"),
    ("grpc", "RawDeployment", "prodml-predictor-raw"),
    ("rest", "Standard", "prodml-predictor-raw"),
])
def test_protocol_and_mode_choose_the_serving_runtime(server, api, protocol, mode, runtime):
    result = deploy(api, protocol=protocol, deployment_mode=mode)
    [post] = server.writes()
    assert post["body"]["spec"]["predictor"]["model"]["runtime"] == runtime
    annotations = post["body"]["metadata"]["annotations"]
    assert annotations.get("serving.kserve.io/deploymentMode") == (mode or None)
    assert (result["serving_runtime"], result["protocol"], result["deployment_mode"]) == \
        (runtime, protocol, mode or "cluster default")


def test_grpc_in_serverless_gives_the_custom_container_one_h2c_port(server, api):
    deploy(api, image="ghcr.io/prodml/prodml-serving-python3.11:0.1.0", protocol="grpc", deployment_mode="Serverless")
    [post] = server.writes()
    [container] = post["body"]["spec"]["predictor"]["containers"]
    assert container["ports"] == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]
    assert container["readinessProbe"] == {"tcpSocket": {"port": 8081}}


def test_switching_protocol_patches_the_runtime(server, api):
    deploy(api, protocol="rest", deployment_mode="Serverless")
    result = deploy(api, protocol="grpc", deployment_mode="Serverless")
    assert result["action"] == "patched"
    patch = server.writes()[-1]
    assert patch["method"] == "PATCH"
    assert server.objects["chicago-taxi"]["spec"]["predictor"]["model"]["runtime"] == "prodml-predictor-grpc"
    assert deploy(api, protocol="grpc", deployment_mode="Serverless")["action"] == "unchanged"


@pytest.mark.parametrize("created, wanted", [("Serverless", "RawDeployment"), ("Standard", "Knative")])
def test_a_service_is_not_moved_to_another_mode(server, api, created, wanted):
    deploy(api, deployment_mode=created)
    before = len(server.writes())
    with pytest.raises(ConfigError) as e:
        deploy(api, version=2, deployment_mode=wanted)
    assert f"runs in {created} mode, not {wanted}" in str(e.value)
    assert len(server.writes()) == before
    # The same mode under its other name (KServe 0.16 renamed them) is not a move.
    other_name = {"Serverless": "Knative", "Standard": "RawDeployment"}[created]
    assert deploy(api, version=2, deployment_mode=other_name)["action"] == "patched"


@pytest.mark.parametrize("kwargs, words", [
    ({"protocol": "http"}, ["protocol 'http'", "rest", "grpc"]),
    ({"deployment_mode": "raw"}, ["deployment_mode 'raw'", "RawDeployment", "Standard"]),
    ({"deployment_mode": "RawDeployment", "canary_traffic_percent": 10},
     ["canary_traffic_percent 10", "Serverless", "RawDeployment"]),
    ({"protocol": "grpc", "runtime": "tensorflow"}, ["tensorflow", "REST only"]),
])
def test_a_protocol_or_mode_that_cannot_be_served_fails_before_any_request(server, api, kwargs, words):
    with pytest.raises(ConfigError) as e:
        deploy(api, **kwargs)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert server.calls == []


def test_deploy_pushed_refuses_a_bad_mode_even_with_nothing_to_deploy(tmp_path):
    with pytest.raises(ConfigError, match="deployment_mode 'serverles'"):
        executor.deploy_pushed({"pushed": False}, "", deployment_mode="serverles")


# --- credentials ---------------------------------------------------------------------------------

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: me
  user: {token: not-a-real-token}
contexts:
- name: kind-prodml
  context: {cluster: local, user: me, namespace: models}
current-context: kind-prodml
"""


@pytest.fixture
def no_cluster(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    return tmp_path


def test_no_kubeconfig_and_not_in_a_pod_is_not_configured(no_cluster):
    assert executor.is_cluster_configured() is False
    assert executor.is_cluster_configured("kind-prodml") is False


def test_kubeconfig_context_is_looked_up(no_cluster, monkeypatch):
    path = no_cluster / "config"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert executor.is_cluster_configured() is True
    assert executor.is_cluster_configured("kind-prodml") is True
    assert executor.is_cluster_configured("gke-prod") is False
    api_client = kube.api_client("kind-prodml")
    assert api_client.configuration.host == "https://127.0.0.1:1"


def test_unknown_context_is_a_config_error(no_cluster, monkeypatch):
    path = no_cluster / "config"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(ConfigError, match="context 'gke-prod'"):
        kube.api_client("gke-prod")
