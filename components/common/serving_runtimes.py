"""Which prodml ServingRuntime serves a protocol in a KServe deployment mode, and with which ports.

The predictor always listens on REST (V1 and V2, port 8080) and V2 gRPC (port 8081). What a
cluster can route to depends on KServe's deployment mode:

- **Serverless** (Knative): a Knative revision accepts exactly one container port (Knative's
  validation; kserve/kserve#2601, knative/serving#7140), and gRPC needs that port to be named
  ``h2c`` (HTTP/2 cleartext; KServe's gRPC examples). So REST and gRPC are two runtimes, each with
  one port: ``prodml-predictor`` (``http1`` 8080) and ``prodml-predictor-grpc`` (``h2c`` 8081).
- **RawDeployment** (a Deployment and a Service, no Knative): every declared port is published,
  the first as the Service's port 80 and the others on their own numbers (KServe's raw
  ``service_reconciler.go``). ``prodml-predictor-raw`` declares REST first and gRPC as
  ``grpc-port`` (the name KServe's raw-mode gRPC examples use, so Istio routes it as gRPC), so
  one InferenceService answers both. KServe's canary rollout needs Knative revisions, so it is
  Serverless only.

KServe 0.16 renamed the modes: ``Serverless`` is ``Knative`` and ``RawDeployment`` is ``Standard``;
both spellings are accepted here. The mode is written to the service's
``serving.kserve.io/deploymentMode`` annotation exactly as given, so give the spelling your KServe
uses: from 0.16 its webhook compares a legacy annotation with the renamed mode in the status and
refuses every later update (kserve/kserve#5885). The default, an empty mode, writes no annotation
(the cluster's default mode) and uses the one-port runtimes, which are valid in either mode.

``manifests/kserve/servingruntime-prodml*.yaml`` are the three runtimes;
``tests/test_manifests.py`` checks they match :data:`RUNTIMES`. Push renders the REST
InferenceService (valid in both modes); deploy adapts it with :func:`for_deployment`.
"""

import copy
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

from prodml.components.common.errors import ConfigError

REST = "rest"
GRPC = "grpc"
PROTOCOLS = (REST, GRPC)
SERVERLESS = "Serverless"
RAW_DEPLOYMENT = "RawDeployment"
CLUSTER_DEFAULT = ""
# Each mode's names: before KServe 0.16, and from 0.16 on.
KNATIVE_MODES = (SERVERLESS, "Knative")
STANDARD_MODES = (RAW_DEPLOYMENT, "Standard")
DEPLOYMENT_MODES = (CLUSTER_DEFAULT, *KNATIVE_MODES, *STANDARD_MODES)
# KServe reads the mode of one InferenceService from this annotation (else the cluster's default).
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"

HTTP_PORT = 8080
GRPC_PORT = 8081
REST_PORT = {"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"}
KNATIVE_GRPC_PORT = {"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"}
RAW_GRPC_PORT = {"name": "grpc-port", "containerPort": GRPC_PORT, "protocol": "TCP"}


@dataclass(frozen=True)
class ServingRuntime:
    """One prodml ServingRuntime: its name, manifest file, declared ports and the modes it is valid in."""

    name: str
    manifest: str
    ports: Tuple[Dict[str, Any], ...]
    protocol_versions: Tuple[str, ...]
    modes: Tuple[str, ...]


REST_RUNTIME = ServingRuntime("prodml-predictor", "servingruntime-prodml.yaml", (REST_PORT,), ("v1", "v2"),
                              KNATIVE_MODES + STANDARD_MODES)
GRPC_RUNTIME = ServingRuntime("prodml-predictor-grpc", "servingruntime-prodml-grpc.yaml", (KNATIVE_GRPC_PORT,),
                              ("grpc-v2",), KNATIVE_MODES + STANDARD_MODES)
RAW_RUNTIME = ServingRuntime("prodml-predictor-raw", "servingruntime-prodml-raw.yaml", (REST_PORT, RAW_GRPC_PORT),
                             ("v1", "v2", "grpc-v2"), STANDARD_MODES)
RUNTIMES = {runtime.name: runtime for runtime in (REST_RUNTIME, GRPC_RUNTIME, RAW_RUNTIME)}


def check(protocol: str, deployment_mode: str) -> None:
    """Raises ConfigError unless ``protocol`` and ``deployment_mode`` are ones this module knows."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol '{protocol}' is not one of {', '.join(PROTOCOLS)}: use rest for V1/V2 REST "
                          "or grpc for V2 gRPC.")
    if deployment_mode not in DEPLOYMENT_MODES:
        raise ConfigError(f"deployment_mode '{deployment_mode}' is not one of {', '.join(DEPLOYMENT_MODES[1:])} "
                          "(KServe's serving.kserve.io/deploymentMode; Knative and Standard are their names from "
                          "KServe 0.16), nor empty (the cluster's default mode): use the mode your KServe runs.")


def is_standard(deployment_mode: str) -> bool:
    """True for KServe's RawDeployment mode (Standard from 0.16): no Knative, every port published."""
    return deployment_mode in STANDARD_MODES


def same_mode(a: str, b: str) -> bool:
    """True when two mode names (either spelling) name the same KServe mode."""
    return is_standard(a) == is_standard(b) and CLUSTER_DEFAULT not in (a, b)


def select(protocol: str, deployment_mode: str) -> ServingRuntime:
    """The runtime serving ``protocol`` in ``deployment_mode``.

    RawDeployment takes ``prodml-predictor-raw`` for either protocol (it publishes both: REST on
    the Service's port 80, gRPC on 8081); Serverless and the cluster's default mode take the
    one-port runtime of the protocol.
    """
    check(protocol, deployment_mode)
    if is_standard(deployment_mode):
        return RAW_RUNTIME
    return GRPC_RUNTIME if protocol == GRPC else REST_RUNTIME


def for_deployment(manifest: Mapping[str, Any], protocol: str = REST,
                   deployment_mode: str = CLUSTER_DEFAULT) -> Dict[str, Any]:
    """A copy of the InferenceService ``manifest`` (as push rendered it) serving ``protocol`` in ``deployment_mode``.

    Through a ServingRuntime the predictor's ``runtime`` becomes the selected one; as a custom
    container, its ports become the selected runtime's (and its readiness probe checks the port
    clients use). A mode is written to KServe's deploymentMode annotation as given, so the service
    and the runtime agree whatever the cluster's default mode is; the empty mode writes none.
    KServe's TF Serving runtime is REST only here.
    """
    runtime = select(protocol, deployment_mode)
    isvc = copy.deepcopy(dict(manifest))
    predictor = isvc["spec"]["predictor"]
    model = predictor.get("model")
    if model is not None and model.get("runtime") in RUNTIMES:
        model["runtime"] = runtime.name
    elif model is not None:
        if protocol != REST:
            raise ConfigError(f"The InferenceService {isvc['metadata'].get('name')} serves model format "
                              f"'{(model.get('modelFormat') or {}).get('name')}' with KServe's own runtime, which "
                              "prodml deploys for REST only: push with the prodml runtime to serve gRPC.")
    else:
        for container in predictor.get("containers") or []:
            container["ports"] = [dict(port) for port in runtime.ports]
            if protocol == GRPC and not is_standard(deployment_mode):
                # Knative probes the single declared port; the REST port is not reachable through it.
                container["readinessProbe"] = {"tcpSocket": {"port": GRPC_PORT}}
    if deployment_mode:
        isvc["metadata"].setdefault("annotations", {})[DEPLOYMENT_MODE_ANNOTATION] = deployment_mode
    return isvc
