"""``prodml submit``: what a real kfp.Client sends, observed on a local stub of the KFP REST API.

There is no Kubeflow Pipelines server here. The stub is a plain HTTP server on 127.0.0.1 that
records each request and answers with canned JSON in the shape of the KFP v2beta1 API, so the
client, its serialization and the HTTP traffic are real, and the server is not.
"""

import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from prodml.components.common.errors import ConfigError
from prodml.pipelines import cli, submit

TOKEN = "test-token-not-a-secret"
REQUIRED = ["data_uri=gs://bucket/taxi.csv", "label=big_tipper", "model_name=chicago-taxi",
            "registry_uri=gs://bucket/registry"]


class StubKfpApi:
    """Records requests and answers like the KFP v2beta1 REST API would, from canned JSON."""

    def __init__(self, multi_user=False, healthz_status=200, existing_experiment=False,
                 existing_pipeline=False):
        self.requests = []
        self.multi_user, self.healthz_status = multi_user, healthz_status
        self.existing_experiment, self.existing_pipeline = existing_experiment, existing_pipeline
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                stub._handle(self, "GET")

            def do_POST(self):
                stub._handle(self, "POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def find(self, method, path):
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def _handle(self, handler, method):
        url = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        record = {"method": method, "path": url.path, "query": urllib.parse.parse_qs(url.query),
                  "headers": {k.lower(): v for k, v in handler.headers.items()}, "raw": raw}
        if raw and "json" in handler.headers.get("Content-Type", ""):
            record["json"] = json.loads(raw)
        self.requests.append(record)
        status, body = self._answer(method, url.path, record)
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, method, path, record):
        api = "/apis/v2beta1"
        if path == f"{api}/healthz":
            return self.healthz_status, {"multi_user": self.multi_user}
        if (method, path) == ("GET", f"{api}/experiments"):
            found = [{"experiment_id": "exp-old", "display_name": "prodml"}] if self.existing_experiment else []
            return 200, {"experiments": found} if found else {}
        if (method, path) == ("POST", f"{api}/experiments"):
            return 200, {"experiment_id": "exp-1", "display_name": record["json"]["display_name"]}
        if (method, path) == ("POST", f"{api}/runs"):
            return 200, {"run_id": "run-1", "display_name": record["json"]["display_name"],
                         "experiment_id": record["json"]["experiment_id"]}
        if (method, path) == ("POST", f"{api}/recurringruns"):
            return 200, {"recurring_run_id": "rr-1", "display_name": record["json"]["display_name"]}
        if (method, path) == ("GET", f"{api}/pipelines"):
            found = [{"pipeline_id": "p-1", "display_name": "prodml-training"}] if self.existing_pipeline else []
            return 200, {"pipelines": found} if found else {}
        if (method, path) == ("POST", f"{api}/pipelines/upload"):
            return 200, {"pipeline_id": "p-new", "display_name": record["query"]["name"][0]}
        if (method, path) == ("GET", f"{api}/pipelines/p-new/versions"):
            return 200, {"pipeline_versions": [{"pipeline_id": "p-new", "pipeline_version_id": "v-first",
                                                "display_name": "prodml-training"}]}
        if (method, path) == ("POST", f"{api}/pipelines/upload_version"):
            return 200, {"pipeline_id": record["query"]["pipelineid"][0], "pipeline_version_id": "v-2",
                         "display_name": record["query"]["name"][0]}
        return 404, {"error": f"no route {method} {path}", "code": 5}


@pytest.fixture
def kfp_env(monkeypatch, tmp_path):
    """No host, token, cluster or kubeconfig from the machine leaks into a test."""
    for name in (submit.HOST_ENV, submit.UI_HOST_ENV, submit.TOKEN_ENV, "KUBERNETES_SERVICE_HOST",
                 "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME", "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))


@pytest.fixture
def stub(kfp_env):
    api = StubKfpApi()
    yield api
    api.close()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The training pipeline compiled from the code, as `prodml submit` does by default."""
    return submit.default_package(str(tmp_path_factory.mktemp("package")))


@pytest.fixture(scope="module")
def parameters(package):
    return submit.pipeline_parameters(package)


# --- parameters typed by the pipeline spec ------------------------------------------------------

def test_parameters_are_read_from_the_compiled_spec(parameters):
    assert parameters["epochs"].type == "NUMBER_INTEGER" and not parameters["epochs"].required
    assert parameters["data_uri"].required and parameters["data_uri"].type == "STRING"
    assert parameters["thresholds"].type == "STRUCT"
    assert parameters["epochs"].describe() == "epochs (int, default 10)"


def test_values_are_typed_from_json(parameters):
    args = submit.parse_arguments(REQUIRED + [
        "epochs=5", "tolerance=1", "fail_on_drift=true", "drop_columns=[\"tips\"]",
        "thresholds={\"auc\": 0.7}", "slice_feature=trip_start_hour", "problem_type=binary"], parameters)
    assert args["epochs"] == 5 and isinstance(args["epochs"], int)
    assert args["tolerance"] == 1.0 and isinstance(args["tolerance"], float)
    assert args["fail_on_drift"] is True
    assert args["drop_columns"] == ["tips"]
    assert args["thresholds"] == {"auc": 0.7}
    assert args["slice_feature"] == "trip_start_hour"  # strings are taken as they are, not as JSON
    assert args["data_uri"] == "gs://bucket/taxi.csv"


@pytest.mark.parametrize("item, words", [
    ("epochs=five", ["epochs takes int", "epochs=5"]),
    ("epochs=2.5", ["epochs takes int"]),
    ("epochs=true", ["epochs takes int"]),
    ("fail_on_drift=1", ["fail_on_drift takes bool", "true"]),
    ("thresholds=[0.9]", ["thresholds takes dict"]),
    ("drop_columns=tips", ["drop_columns takes list", '["a", "b"]']),
])
def test_a_wrongly_typed_value_says_the_type(parameters, item, words):
    with pytest.raises(ConfigError) as error:
        submit.parse_arguments(REQUIRED + [item], parameters)
    for word in words:
        assert word in str(error.value)


def test_an_unknown_parameter_lists_the_valid_ones_with_types(parameters):
    with pytest.raises(ConfigError) as error:
        submit.parse_arguments(REQUIRED + ["epoch=5"], parameters)
    message = str(error.value)
    assert "no parameter 'epoch'" in message
    assert "epochs (int, default 10)" in message and "data_uri (str, required)" in message
    assert "thresholds (dict, default {})" in message


def test_missing_required_parameters_are_named(parameters):
    with pytest.raises(ConfigError) as error:
        submit.parse_arguments(["label=big_tipper"], parameters)
    message = str(error.value)
    assert "data_uri (str, required)" in message and "registry_uri (str, required)" in message
    assert "label (str" not in message


def test_a_malformed_param_and_a_bad_cron_are_explained(parameters):
    with pytest.raises(ConfigError, match="not NAME=VALUE"):
        submit.parse_arguments(["epochs"], parameters)
    with pytest.raises(ConfigError, match="5 fields"):
        submit.cron_schedule("every day")
    assert submit.cron_schedule("0 2 * * *") == "0 0 2 * * *"
    assert submit.cron_schedule("0 0 2 * * *") == "0 0 2 * * *"


# --- what the client sends ----------------------------------------------------------------------

def test_a_run_carries_the_pipeline_spec_typed_parameters_and_experiment(stub, package, parameters, capsys):
    args = submit.parse_arguments(REQUIRED + ["epochs=3", "thresholds={\"auc\": 0.7}"], parameters)
    client = submit.connect(host=stub.host, existing_token=TOKEN)
    result = submit.submit(client, package, args, experiment="taxi", run_name="nightly", host=stub.host)

    assert result.kind == "run" and result.id == "run-1" and result.experiment_id == "exp-1"
    assert result.url == f"{stub.host}/#/runs/details/run-1"
    [experiment] = stub.find("POST", "/apis/v2beta1/experiments")
    assert experiment["json"]["display_name"] == "taxi"
    [run] = stub.find("POST", "/apis/v2beta1/runs")
    body = run["json"]
    assert body["display_name"] == "nightly" and body["experiment_id"] == "exp-1"
    with open(package, encoding="utf-8") as f:
        assert body["pipeline_spec"] == yaml.safe_load(f)
    assert body["runtime_config"]["parameters"] == {
        "data_uri": "gs://bucket/taxi.csv", "label": "big_tipper", "model_name": "chicago-taxi",
        "registry_uri": "gs://bucket/registry", "epochs": 3, "thresholds": {"auc": 0.7}}
    assert all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in stub.requests)
    assert "pipeline_version_reference" not in body
    assert TOKEN not in capsys.readouterr().out


def test_an_existing_experiment_is_reused(kfp_env, package, parameters):
    api = StubKfpApi(existing_experiment=True)
    try:
        client = submit.connect(host=api.host)
        result = submit.submit(client, package, submit.parse_arguments(REQUIRED, parameters), host=api.host)
    finally:
        api.close()
    assert result.experiment_id == "exp-old"
    assert not api.find("POST", "/apis/v2beta1/experiments")
    [listing] = api.find("GET", "/apis/v2beta1/experiments")
    assert json.loads(listing["query"]["filter"][0])["predicates"][0]["stringValue"] == "prodml"
    assert all("authorization" not in r["headers"] for r in api.requests)


def test_a_recurring_run_carries_the_cron_schedule(stub, package, parameters):
    client = submit.connect(host=stub.host)
    result = submit.submit(client, package, submit.parse_arguments(REQUIRED, parameters), cron="0 2 * * *",
                           run_name="nightly", host=stub.host)
    assert result.kind == "recurring_run" and result.id == "rr-1" and result.cron == "0 0 2 * * *"
    assert result.url == f"{stub.host}/#/recurringrun/details/rr-1"
    [job] = stub.find("POST", "/apis/v2beta1/recurringruns")
    body = job["json"]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert body["mode"] == "ENABLE" and body["no_catchup"] is True
    assert body["experiment_id"] == "exp-1" and body["display_name"] == "nightly"
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "prodml-training"
    assert body["runtime_config"]["parameters"]["label"] == "big_tipper"
    assert not stub.find("POST", "/apis/v2beta1/runs")


def test_upload_creates_the_pipeline_and_runs_its_version(stub, package, parameters):
    client = submit.connect(host=stub.host)
    result = submit.submit(client, package, submit.parse_arguments(REQUIRED, parameters), upload=True,
                           host=stub.host)
    [upload] = stub.find("POST", "/apis/v2beta1/pipelines/upload")
    assert upload["query"]["name"] == ["prodml-training"]
    assert b'name="uploadfile"' in upload["raw"] and b"pipelineInfo:" in upload["raw"]
    [run] = stub.find("POST", "/apis/v2beta1/runs")
    assert run["json"]["pipeline_version_reference"] == {"pipeline_id": "p-new", "pipeline_version_id": "v-first"}
    assert "pipeline_spec" not in run["json"]
    assert result.pipeline_url == f"{stub.host}/#/pipelines/details/p-new/version/v-first"


def test_upload_to_an_existing_pipeline_adds_a_named_version(kfp_env, package, parameters):
    api = StubKfpApi(existing_pipeline=True)
    try:
        client = submit.connect(host=api.host)
        result = submit.submit(client, package, submit.parse_arguments(REQUIRED, parameters), upload=True,
                               pipeline_name="prodml-training", version_name="v1-2-0", cron="0 2 * * *",
                               host=api.host)
    finally:
        api.close()
    assert not api.find("POST", "/apis/v2beta1/pipelines/upload")
    [upload] = api.find("POST", "/apis/v2beta1/pipelines/upload_version")
    assert upload["query"]["name"] == ["v1-2-0"] and upload["query"]["pipelineid"] == ["p-1"]
    assert b"pipelineInfo:" in upload["raw"]
    [job] = api.find("POST", "/apis/v2beta1/recurringruns")
    assert job["json"]["pipeline_version_reference"] == {"pipeline_id": "p-1", "pipeline_version_id": "v-2"}
    assert result.pipeline_version_id == "v-2"


def test_cli_submit_compiles_the_pipeline_and_prints_the_run_url(stub, capsys, monkeypatch):
    monkeypatch.setenv(submit.TOKEN_ENV, TOKEN)
    code = cli.main(["submit", "--host", stub.host, "--experiment", "taxi",
                     "--run-name", "from-cli", "--json"] + [f"--param={p}" for p in REQUIRED + ["epochs=2"]])
    out = capsys.readouterr().out
    assert code == 0
    assert f"Run 'from-cli': {stub.host}/#/runs/details/run-1" in out
    assert json.loads(out.strip().splitlines()[-1])["id"] == "run-1"
    [run] = stub.find("POST", "/apis/v2beta1/runs")
    assert run["json"]["runtime_config"]["parameters"]["epochs"] == 2
    assert run["json"]["pipeline_spec"]["pipelineInfo"]["name"] == "prodml-training"
    assert run["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in out


def test_cli_submit_reports_a_bad_parameter_before_connecting(stub, package, capsys):
    code = cli.main(["submit", "--host", stub.host, "--version-name", "v2"])
    assert code == 2 and "add --upload" in capsys.readouterr().err
    code = cli.main(["submit", "--host", stub.host, "--package", package, "--param", "epochs=x"]
                    + [f"--param={p}" for p in REQUIRED])
    assert code == 2
    assert "epochs takes int" in capsys.readouterr().err
    assert stub.requests == []


# --- connection problems ------------------------------------------------------------------------

def test_no_host_is_a_clear_error(kfp_env):
    with pytest.raises(ConfigError, match="No Kubeflow Pipelines host: pass --host .* KF_PIPELINES_ENDPOINT"):
        submit.connect()


def test_the_host_comes_from_the_sdk_environment_variable(stub, monkeypatch):
    monkeypatch.setenv(submit.HOST_ENV, stub.host)
    submit.connect()
    assert stub.find("GET", "/apis/v2beta1/healthz")


def test_an_unreachable_host_is_named_quickly(kfp_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(submit.SubmitError) as error:
        submit.connect(host=f"http://127.0.0.1:{port}")
    assert f"http://127.0.0.1:{port}" in str(error.value) and "Cannot reach" in str(error.value)
    assert time.monotonic() - start < 5


def test_a_host_that_never_answers_times_out(kfp_env, monkeypatch):
    monkeypatch.setattr(submit, "REQUEST_TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(submit.SubmitError, match="Cannot reach .*127.0.0.1"):
            submit.connect(host=host)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("status, words", [(401, "--existing-token"), (404, "does not look like")])
def test_a_refusing_or_wrong_endpoint_is_explained(kfp_env, status, words):
    api = StubKfpApi(healthz_status=status)
    try:
        with pytest.raises(submit.SubmitError) as error:
            submit.connect(host=api.host)
    finally:
        api.close()
    assert words in str(error.value) and api.host in str(error.value)


def test_multi_user_kfp_needs_a_namespace(kfp_env, package, parameters):
    api = StubKfpApi(multi_user=True)
    try:
        with pytest.raises(ConfigError, match="multi-user: pass --namespace"):
            submit.connect(host=api.host)
        client = submit.connect(host=api.host, namespace="team-a")
        submit.submit(client, package, submit.parse_arguments(REQUIRED, parameters), namespace="team-a",
                      host=api.host)
    finally:
        api.close()
    [listing] = api.find("GET", "/apis/v2beta1/experiments")
    assert listing["query"]["namespace"] == ["team-a"]
    [experiment] = api.find("POST", "/apis/v2beta1/experiments")
    assert experiment["json"]["namespace"] == "team-a"


def test_a_server_error_is_reported_with_its_message(stub, package, parameters, monkeypatch):
    original = stub._answer

    def failing(method, path, record):
        if path == "/apis/v2beta1/runs":
            return 400, {"error": "Invalid input error: pipeline spec is invalid", "code": 3}
        return original(method, path, record)

    monkeypatch.setattr(stub, "_answer", failing)
    client = submit.connect(host=stub.host)
    with pytest.raises(submit.SubmitError) as error:
        submit.submit(client, package, submit.parse_arguments(REQUIRED, parameters), host=stub.host)
    assert "HTTP 400" in str(error.value) and "pipeline spec is invalid" in str(error.value)
    assert stub.host in str(error.value)


# --- security: the service account, plain HTTP, no token in the output --------------------------

def test_the_service_account_goes_with_every_kind_of_run(stub, package, parameters):
    client = submit.connect(host=stub.host)
    arguments = submit.parse_arguments(REQUIRED, parameters)
    submit.submit(client, package, arguments, host=stub.host)
    results = [submit.submit(client, package, arguments, host=stub.host, service_account="prodml-deployer", **kind)
               for kind in ({}, {"cron": "0 2 * * *"}, {"upload": True})]
    plain, *with_account = stub.find("POST", "/apis/v2beta1/runs")
    [recurring] = stub.find("POST", "/apis/v2beta1/recurringruns")
    assert "service_account" not in plain["json"]  # the server's default account
    for request in with_account + [recurring]:
        assert request["json"]["service_account"] == "prodml-deployer"
    assert [r.service_account for r in results] == ["prodml-deployer"] * 3


def test_cli_submit_passes_the_service_account_and_reports_it(stub, capsys):
    code = cli.main(["submit", "--host", stub.host, "--service-account", "prodml-deployer", "--json"]
                    + [f"--param={p}" for p in REQUIRED])
    assert code == 0
    [run] = stub.find("POST", "/apis/v2beta1/runs")
    assert run["json"]["service_account"] == "prodml-deployer"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["service_account"] == "prodml-deployer"


@pytest.mark.parametrize("name", ["Prodml", "prodml_deployer", "-x", "a" * 254, ""])
def test_a_bad_service_account_name_is_refused_before_connecting(stub, package, name):
    with pytest.raises(ConfigError, match="is not a Kubernetes service account name"):
        submit.submit(None, package, {}, service_account=name)
    assert stub.requests == []


@pytest.mark.parametrize("host, token, warned", [
    ("http://kfp.example.com", TOKEN, True),
    ("http://10.0.0.5:8080", TOKEN, True),
    ("kfp.example.com", TOKEN, False),            # no scheme: https, as kfp.Client does
    ("https://kfp.example.com", TOKEN, False),
    ("http://kfp.example.com", None, False),      # nothing secret to send
    ("http://localhost:8080", TOKEN, False),      # loopback: kubectl port-forward
    ("http://127.0.0.1:8080", TOKEN, False),
    ("http://[::1]:8080", TOKEN, False),
])
def test_a_token_over_plain_http_to_another_host_draws_a_warning(host, token, warned):
    warning = submit.plain_http_warning(host, token)
    assert bool(warning) == warned
    if warning:
        assert "\n" not in warning and warning.startswith("prodml: warning: the bearer token goes to http://")
        assert TOKEN not in warning


def test_connect_warns_once_on_stderr_without_the_token(kfp_env, capsys):
    with pytest.raises(submit.SubmitError):  # the .invalid domain never resolves
        submit.connect(host="http://user:pw@kfp.invalid:8080", existing_token=TOKEN)
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if "warning" in line]
    assert line.startswith("prodml: warning: the bearer token goes to http://kfp.invalid:8080 over plain http://")
    assert TOKEN not in err and "pw" not in line


def test_a_token_echoed_by_the_server_never_reaches_the_output(stub, capsys, monkeypatch):
    original = stub._answer

    def echoing(method, path, record):
        if path == "/apis/v2beta1/runs":
            return 401, {"error": f"token {record['headers']['authorization']} is expired", "code": 16}
        return original(method, path, record)

    monkeypatch.setattr(stub, "_answer", echoing)
    code = cli.main(["submit", "--host", stub.host, "--existing-token", TOKEN, "--json"]
                    + [f"--param={p}" for p in REQUIRED])
    captured = capsys.readouterr()
    assert code == 3
    assert "HTTP 401" in captured.err and "Bearer *** is expired" in captured.err
    assert TOKEN not in captured.out + captured.err


def test_redaction_masks_output_and_errors_and_keeps_the_error_class():
    with submit.redacted(TOKEN, None) as redact:
        assert redact(f"url?token={TOKEN}") == "url?token=***"
    with pytest.raises(ConfigError) as error, submit.redacted(TOKEN):
        raise ConfigError(f"bad {TOKEN}")
    assert str(error.value) == "bad ***" and error.value.__cause__ is None and error.value.exit_code == 2


@pytest.mark.parametrize("param, words", [
    ("epochs=0", "epochs (--epochs) must be a whole number ≥ 1"),
    ("model_name=Chicago_Taxi", "Model name (model_name) 'Chicago_Taxi' is not a valid DNS-1123 label"),
    ('thresholds={"auc": 90}', "auc=90 is outside the values auc can take"),
    ('thresholds={"acc": 0.9}', "Unknown metric 'acc'"),
])
def test_cli_submit_checks_the_training_parameters_before_connecting(stub, capsys, param, words):
    code = cli.main(["submit", "--host", stub.host] + [f"--param={p}" for p in REQUIRED + [param]])
    assert code == 2 and words in capsys.readouterr().err
    assert stub.requests == []
