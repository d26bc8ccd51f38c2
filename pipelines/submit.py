"""Submitting a compiled pipeline to a Kubeflow Pipelines server with the KFP SDK client (``kfp.Client``).

A submission creates a run (or a recurring run on a cron schedule) in an experiment. With
``upload``, the pipeline is first registered in KFP, as a new pipeline or as a new version of
an existing one, and the run refers to that version; otherwise the run carries its pipeline spec.

Authentication is the SDK's: a bearer token passed through (``existing_token``), or, without a
host, the in-cluster service account or the kubeconfig. Nothing is stored by prodml, and the CLI's
output never shows the token (:func:`redacted`). A token sent to a non-loopback host over plain
``http://`` draws a one-line warning on stderr (:func:`plain_http_warning`).

The run's pods use the Kubernetes service account given as ``service_account`` (default: the
server's, usually ``pipeline-runner``). Give ``prodml-deployer`` from ``manifests/kserve/rbac.yaml``
so that the deploy step may apply InferenceServices.
"""

import contextlib
import dataclasses
import datetime
import io
import ipaddress
import json
import os
import re
import socket
import sys
import urllib.parse
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional

import yaml

from prodml.components.common.errors import ConfigError, ProdmlError
from prodml.components.common.logs import get_logger

HOST_ENV = "KF_PIPELINES_ENDPOINT"        # read by kfp.Client itself, too
UI_HOST_ENV = "KF_PIPELINES_UI_ENDPOINT"  # read by kfp.Client itself, too
TOKEN_ENV = "KF_PIPELINES_TOKEN"
DEFAULT_EXPERIMENT = "prodml"
CONNECT_TIMEOUT = 5.0   # seconds to open a connection to the API
REQUEST_TIMEOUT = 30.0  # seconds any single socket operation may take
HEALTHZ_PATH = "/apis/v2beta1/healthz"
_IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"

# A Kubernetes object name (DNS-1123 subdomain), which a service account's name is.
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_MAX_SUBDOMAIN_LENGTH = 253

_TYPE_NAMES = {"STRING": "str", "NUMBER_INTEGER": "int", "NUMBER_DOUBLE": "float", "BOOLEAN": "bool",
               "LIST": "list", "STRUCT": "dict"}

log = get_logger(__name__)


class SubmitError(ProdmlError):
    """The Kubeflow Pipelines API could not be reached, or refused or failed the request."""


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One input parameter of a compiled pipeline, as its spec declares it."""

    name: str
    type: str  # the KFP parameter type: STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, LIST, STRUCT
    required: bool
    default: Any = None
    description: str = ""

    def describe(self) -> str:
        kind = _TYPE_NAMES.get(self.type, self.type)
        if self.required:
            return f"{self.name} ({kind}, required)"
        return f"{self.name} ({kind}, default {json.dumps(_typed_default(self))})"


@dataclasses.dataclass(frozen=True)
class Submission:
    """What a submission created. ``kind`` is "run" or "recurring_run"; ``url`` opens it in the KFP UI."""

    kind: str
    id: str
    url: str
    name: str
    experiment_id: str
    pipeline_id: Optional[str] = None
    pipeline_version_id: Optional[str] = None
    pipeline_url: Optional[str] = None
    cron: Optional[str] = None
    service_account: Optional[str] = None


def pipeline_parameters(package_path: str) -> Dict[str, Parameter]:
    """The input parameters of a compiled pipeline YAML, by name."""
    spec = _read_spec(package_path)
    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: Parameter(name=name, type=p["parameterType"], required=not p.get("isOptional", False),
                            default=p.get("defaultValue"), description=p.get("description", ""))
            for name, p in sorted(parameters.items())}


def parse_arguments(items: List[str], parameters: Dict[str, Parameter]) -> Dict[str, Any]:
    """Turns ``key=value`` strings into pipeline arguments typed by the pipeline's parameters.

    Strings are taken as they are; int, float, bool, list and dict values are parsed as JSON.
    An unknown name, a wrongly typed value or a missing required parameter raises ConfigError
    listing the valid parameters and their types.
    """
    arguments: Dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--param {item!r} is not NAME=VALUE, e.g. --param epochs=5.")
        if name not in parameters:
            raise ConfigError(f"--param {name}: the pipeline has no parameter '{name}'. "
                              f"{_valid_parameters(parameters)}")
        arguments[name] = _typed_value(parameters[name], raw)
    missing = [p for name, p in parameters.items() if p.required and name not in arguments]
    if missing:
        raise ConfigError(f"Missing required pipeline parameters: {', '.join(p.describe() for p in missing)}. "
                          "Give each as --param NAME=VALUE.")
    return arguments


def _typed_value(parameter: Parameter, raw: str) -> Any:
    if parameter.type == "STRING":
        return raw
    expected = {"NUMBER_INTEGER": (int,), "NUMBER_DOUBLE": (int, float), "BOOLEAN": (bool,),
                "LIST": (list,), "STRUCT": (dict,)}[parameter.type]
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
        ok = False
    else:
        ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)
    if not ok:
        kind = _TYPE_NAMES[parameter.type]
        example = {"int": "5", "float": "0.5", "bool": "true", "list": '["a", "b"]',
                   "dict": '{"auc": 0.9}'}[kind]
        raise ConfigError(f"--param {parameter.name}={raw}: {parameter.name} takes {kind} values written as "
                          f"JSON, e.g. --param {parameter.name}={example}.")
    return float(value) if parameter.type == "NUMBER_DOUBLE" else value


def _typed_default(parameter: Parameter) -> Any:
    if parameter.type == "NUMBER_INTEGER" and isinstance(parameter.default, float):
        return int(parameter.default)
    return parameter.default


def _valid_parameters(parameters: Dict[str, Parameter]) -> str:
    return "Valid parameters: " + ", ".join(p.describe() for p in parameters.values()) + "."


def _read_spec(package_path: str) -> Dict[str, Any]:
    try:
        with open(package_path, encoding="utf-8") as f:
            spec = next(yaml.safe_load_all(f), None)
    except OSError as e:
        raise ConfigError(f"Cannot read the pipeline package {package_path}: {e.strerror or e}.") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"The pipeline package {package_path} is not YAML: {e}.") from e
    if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
        raise ConfigError(f"{package_path} is not a compiled KFP v2 pipeline (no pipelineInfo/root). "
                          "Compile one with 'prodml compile'.")
    return spec


def cron_schedule(cron: str) -> str:
    """KFP's six-field cron (seconds first) for a five- or six-field expression."""
    fields = cron.split()
    if len(fields) == 5:
        return "0 " + " ".join(fields)
    if len(fields) == 6:
        return " ".join(fields)
    raise ConfigError(f"--recurring {cron!r} is not a cron expression: give 5 fields (minute hour day month "
                      "weekday, e.g. '0 2 * * *' for 02:00 daily) or KFP's 6 fields with seconds first.")


def check_service_account(name: Optional[str]) -> Optional[str]:
    """None (the server's default) or a Kubernetes service account name (a DNS-1123 subdomain)."""
    if name is None:
        return None
    if not (isinstance(name, str) and len(name) <= _MAX_SUBDOMAIN_LENGTH and _DNS1123_SUBDOMAIN.fullmatch(name)):
        raise ConfigError(f"--service-account {name!r} is not a Kubernetes service account name: use lowercase "
                          "letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. "
                          "prodml-deployer, from manifests/kserve/rbac.yaml).")
    return name


def plain_http_warning(host: Optional[str], token: Optional[str]) -> Optional[str]:
    """The one-line warning due when ``token`` would go to ``host`` over plain HTTP, else None.

    A loopback host (localhost, 127.0.0.0/8, ::1) draws none: that traffic stays on this machine,
    and ``kubectl port-forward`` carries it on through the API server's TLS connection.
    """
    host = _normalize_host(host or "")
    if not token or not host.startswith("http://"):
        return None
    parts = urllib.parse.urlsplit(host)
    if _is_loopback(parts.hostname or ""):
        return None
    shown = f"http://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return (f"prodml: warning: the bearer token goes to {shown} over plain http://, readable by anyone on the "
            "network path; use https://, or 'kubectl port-forward' and --host http://localhost:PORT.")


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def redacted(*secrets: Optional[str]) -> Iterator[Callable[[str], str]]:
    """Yields ``redact(text)``, which masks each secret; a ProdmlError raised inside has them masked too.

    The CLI prints everything through it, so that a token echoed back by a server or a proxy in
    an error message never reaches the terminal or a CI log.
    """
    masked = [s for s in secrets if s]

    def redact(text: str) -> str:
        for secret in masked:
            text = text.replace(secret, "***")
        return text

    try:
        yield redact
    except ProdmlError as e:
        clean = redact(str(e))
        if clean == str(e):
            raise
        error = type(e).__new__(type(e))
        Exception.__init__(error, clean)
        error.__dict__.update(e.__dict__)  # exit_code and the like, when set per instance
        raise error from None  # the original, with the secret, is not chained


# prodml's own pipelines, by the name ``prodml submit --pipeline`` takes.
PIPELINES = ("training", "batch-prediction", "monitoring")


def default_package(folder: str, pipeline: str = "training") -> str:
    """Compiles one of prodml's pipelines (``PIPELINES``) from the code into ``folder``; returns the YAML's path."""
    if pipeline == "batch-prediction":
        from kfp import compiler

        from prodml.pipelines.batch_prediction import batch_prediction_pipeline

        path = os.path.join(folder, "batch_prediction_pipeline.yaml")
        compiler.Compiler().compile(batch_prediction_pipeline, path)
        return path
    if pipeline == "monitoring":
        from prodml.pipelines.compile import compile_monitoring_pipeline

        return compile_monitoring_pipeline(folder)  # writes <folder>/pipelines/monitoring_pipeline.yaml
    if pipeline != "training":
        raise ConfigError(f"There is no prodml pipeline '{pipeline}': use {' or '.join(PIPELINES)}.")
    from prodml.pipelines.compile import compile_pipeline

    return compile_pipeline(os.path.join(folder, "training_pipeline.yaml"))


def connect(host: Optional[str] = None, existing_token: Optional[str] = None,
            namespace: Optional[str] = None, kube_context: Optional[str] = None):
    """A ``kfp.Client`` for ``host`` (default $KF_PIPELINES_ENDPOINT), checked to answer as a KFP API.

    Without a host, the SDK's own discovery applies: the in-cluster service with the pod's
    service account, or the kubeconfig's API server. Raises ConfigError when there is no host and
    neither applies, and SubmitError naming the host when it cannot be reached or refuses.
    """
    import kfp

    host = _normalize_host(host or os.environ.get(HOST_ENV, ""))
    token = existing_token or os.environ.get(TOKEN_ENV) or None
    warning = plain_http_warning(host, token)
    if warning:
        print(warning, file=sys.stderr)
    if host:
        multi_user = _check_healthz(host, token)
        if multi_user and not namespace:
            raise ConfigError(f"The Kubeflow Pipelines at {host} is multi-user: pass --namespace with your "
                              "profile namespace.")
    elif not _in_cluster() and not _has_kubeconfig():
        raise ConfigError(f"No Kubeflow Pipelines host: pass --host (e.g. --host http://localhost:8080 after "
                          f"'kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80') or set {HOST_ENV}. "
                          "Without a host the KFP SDK needs to run in the cluster or to find a kubeconfig, "
                          "and neither is available here.")
    kwargs: Dict[str, Any] = {"host": host or None, "existing_token": token, "kube_context": kube_context}
    if host and namespace:
        # With a host, Client's namespace is the user namespace; it also spares a second healthz call.
        kwargs["namespace"] = namespace
    with _api_errors(host or "the KFP API found through the in-cluster service or kubeconfig"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(**kwargs)


def submit(client, package_path: str, arguments: Dict[str, Any], *, namespace: Optional[str] = None,
           experiment: str = DEFAULT_EXPERIMENT, run_name: Optional[str] = None, cron: Optional[str] = None,
           upload: bool = False, pipeline_name: Optional[str] = None,
           version_name: Optional[str] = None, host: Optional[str] = None,
           service_account: Optional[str] = None) -> Submission:
    """Creates a run (or, with ``cron``, a recurring run) of a compiled pipeline in ``experiment``.

    With ``upload``, the package becomes a new version ``version_name`` of pipeline
    ``pipeline_name`` (created if needed; default: the name in the spec) and the run refers to
    it. ``arguments`` should come from :func:`parse_arguments`. ``host`` is only used in messages
    and URLs (default: the client's). ``service_account`` is the Kubernetes service account the
    run's pods use (default: the server's). Returns what was created, with its KFP UI URL.
    """
    service_account = check_service_account(service_account)
    spec = _read_spec(package_path)
    spec_name = spec["pipelineInfo"]["name"]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_name = run_name or f"{spec_name} {stamp}"
    host = _normalize_host(host or os.environ.get(HOST_ENV, ""))
    ui = _ui_prefix(host)
    schedule = cron_schedule(cron) if cron else None
    with _api_errors(host or "the KFP API"), contextlib.redirect_stdout(io.StringIO()):
        exp = client.create_experiment(name=experiment, namespace=namespace)
        pipeline_id = version_id = pipeline_url = None
        if upload:
            pipeline_id, version_id = _upload(client, package_path, pipeline_name or spec_name,
                                              version_name or f"{spec_name}-{stamp}", namespace,
                                              spec["pipelineInfo"].get("description"))
            pipeline_url = f"{ui}/#/pipelines/details/{pipeline_id}/version/{version_id}"
            source = {"pipeline_id": pipeline_id, "version_id": version_id}
        else:
            source = {"pipeline_package_path": package_path}
        if schedule:
            created = client.create_recurring_run(experiment_id=exp.experiment_id, job_name=run_name,
                                                  cron_expression=schedule, params=arguments,
                                                  no_catchup=True, service_account=service_account, **source)
            return Submission(kind="recurring_run", id=created.recurring_run_id, name=run_name,
                              url=f"{ui}/#/recurringrun/details/{created.recurring_run_id}",
                              experiment_id=exp.experiment_id, pipeline_id=pipeline_id,
                              pipeline_version_id=version_id, pipeline_url=pipeline_url, cron=schedule,
                              service_account=service_account)
        if upload:
            run = client.run_pipeline(experiment_id=exp.experiment_id, job_name=run_name, params=arguments,
                                      service_account=service_account, **source)
            run_id = run.run_id
        else:
            run_id = client.create_run_from_pipeline_package(
                package_path, arguments=arguments, run_name=run_name, experiment_id=exp.experiment_id,
                service_account=service_account).run_id
    return Submission(kind="run", id=run_id, name=run_name, url=f"{ui}/#/runs/details/{run_id}",
                      experiment_id=exp.experiment_id, pipeline_id=pipeline_id,
                      pipeline_version_id=version_id, pipeline_url=pipeline_url, service_account=service_account)


def _upload(client, package_path: str, name: str, version_name: str, namespace: Optional[str],
            description: Optional[str]):
    """(pipeline id, version id) of the package uploaded as a new pipeline or a new version of ``name``."""
    found = client.list_pipelines(filter=_name_filter(name), namespace=namespace).pipelines or []
    if found:
        version = client.upload_pipeline_version(package_path, pipeline_version_name=version_name,
                                                 pipeline_id=found[0].pipeline_id, description=description)
        log.info("uploaded version %s of pipeline %s", version_name, name)
        return found[0].pipeline_id, version.pipeline_version_id
    # A new pipeline's first version is created by the upload itself, named by the server.
    pipeline = client.upload_pipeline(package_path, pipeline_name=name, description=description,
                                      namespace=namespace)
    versions = client.list_pipeline_versions(pipeline.pipeline_id, page_size=1,
                                             sort_by="created_at desc").pipeline_versions or []
    if not versions:
        raise SubmitError(f"Pipeline '{name}' was uploaded (id {pipeline.pipeline_id}) but the server lists "
                          "no version of it; open it in the KFP UI to check.")
    log.info("uploaded new pipeline %s", name)
    return pipeline.pipeline_id, versions[0].pipeline_version_id


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _normalize_host(host: str) -> str:
    host = host.strip().rstrip("/")
    if host and not host.startswith(("http://", "https://")):
        host = "https://" + host  # as kfp.Client does
    return host


def _ui_prefix(host: str) -> str:
    ui = os.environ.get(UI_HOST_ENV) or host
    if not ui:
        return "/pipeline"  # in-cluster: the UI is served under the same origin, as kfp.Client assumes
    return ui.rstrip("/") if ui.startswith(("http://", "https://")) else "http://" + ui.rstrip("/")


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(_IN_CLUSTER_TOKEN)


def _has_kubeconfig() -> bool:
    paths = os.environ.get("KUBECONFIG") or os.path.join(os.path.expanduser("~"), ".kube", "config")
    return any(os.path.exists(p) for p in paths.split(os.pathsep) if p)


def _check_healthz(host: str, token: Optional[str]) -> bool:
    """Asks the API's healthz with short timeouts; returns whether KFP is multi-user."""
    import certifi
    import urllib3

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    url = host + HEALTHZ_PATH
    try:
        response = pool.request("GET", url, headers=headers, retries=False,
                                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=REQUEST_TIMEOUT))
    except urllib3.exceptions.HTTPError as e:
        raise SubmitError(f"Cannot reach the Kubeflow Pipelines API at {host} ({_reason(e)}). Check --host or "
                          f"{HOST_ENV}, and that it is reachable from here (without an ingress: 'kubectl "
                          "port-forward -n kubeflow svc/ml-pipeline-ui 8080:80', then --host "
                          "http://localhost:8080).") from e
    if response.status in (401, 403):
        raise SubmitError(f"{host} refused the request (HTTP {response.status}): pass a bearer token with "
                          f"--existing-token or {TOKEN_ENV}.")
    if 300 <= response.status < 400:
        raise SubmitError(f"{host} redirects to {response.headers.get('Location', 'another page')} (HTTP "
                          f"{response.status}), probably a login page: pass a bearer token with "
                          f"--existing-token or {TOKEN_ENV}.")
    try:
        body = json.loads(response.data or b"{}")
    except ValueError:
        body = None
    if response.status != 200 or not isinstance(body, dict):
        raise SubmitError(f"{host} answered HTTP {response.status} on {HEALTHZ_PATH}: it does not look like a "
                          "Kubeflow Pipelines v2 API endpoint. Check --host.")
    return bool(body.get("multi_user"))


@contextlib.contextmanager
def _api_errors(where: str) -> Iterator[None]:
    """Turns SDK and network errors into SubmitError naming ``where``; bounds every socket operation."""
    import kfp_server_api
    import urllib3

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(REQUEST_TIMEOUT)
    try:
        yield
    except kfp_server_api.ApiException as e:
        detail = _api_message(e)
        hint = f" Pass a bearer token with --existing-token or {TOKEN_ENV}." if e.status in (401, 403) else ""
        raise SubmitError(f"Kubeflow Pipelines at {where} answered HTTP {e.status} {e.reason}: {detail}.{hint}") \
            from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise SubmitError(f"Cannot reach the Kubeflow Pipelines API at {where} ({_reason(e)}).") from e
    except ValueError as e:  # the SDK's own checks, e.g. several experiments with one name
        raise SubmitError(f"Kubeflow Pipelines at {where}: {e}") from e
    finally:
        socket.setdefaulttimeout(previous)


def _api_message(error) -> str:
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        return str(error.body or "").strip()[:300] or "no details"
    return str(body.get("message") or body.get("error") or body)[:300] if isinstance(body, dict) else str(body)


def _reason(error: Exception) -> str:
    """The useful part of a urllib3/socket error, without urllib3's '<object at 0x...>: ' prefix."""
    reason = getattr(error, "reason", None) or error
    return re.sub(r"^<[^>]*>: ", "", str(reason)) or type(reason).__name__
