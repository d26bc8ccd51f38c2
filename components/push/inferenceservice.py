"""The KServe InferenceService that serves one pushed version (``serving.kserve.io/v1beta1``).

Three ways to serve the registry layout ``<registry>/<model_name>/<version>/``:

- ``runtime="prodml"`` (default): our predictor through the ``prodml-predictor`` ServingRuntime
  (``manifests/kserve/servingruntime-prodml.yaml``, REST), model format ``prodml-tf``. KServe mounts
  ``<registry>/<model_name>`` at ``/mnt/models`` and the ``--version`` argument pins the version.
- ``runtime="prodml"`` with ``image``: the same predictor as a custom container, for clusters
  without our ServingRuntime. KServe's storage initializer still fills ``/mnt/models`` from
  the ``STORAGE_URI`` environment variable.
- ``runtime="tensorflow"``: KServe's TF Serving runtime (model format ``tensorflow``) on the same
  folder. TF Serving serves the highest version present, so the pin is the annotation only.

The version is also recorded in the ``prodml.io/model-version`` annotation, which the deploy
step compares to decide whether anything changed, and to refuse moving a service to an older
version. Push writes the manifest beside each version (``inferenceservice.yaml``); deploy
applies that file, so this is the only place that renders one. It serves REST with one container
port, valid in both KServe deployment modes; deploy switches it to gRPC or RawDeployment with
``serving_runtimes.for_deployment`` (which runtime and ports serve which protocol in which mode).
"""

from typing import Optional

import yaml

from prodml.components.common import keys, serving_runtimes
from prodml.components.common.errors import ConfigError

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
RUNTIMES = ("prodml", "tensorflow")
SERVING_RUNTIME = serving_runtimes.REST_RUNTIME.name   # manifests/kserve/servingruntime-prodml.yaml
MODEL_FORMAT = "prodml-tf"
MOUNT_PATH = "/mnt/models"               # where KServe's storage initializer puts storageUri
HTTP_PORT = serving_runtimes.HTTP_PORT
GRPC_PORT = serving_runtimes.GRPC_PORT
VERSION_ANNOTATION = keys.ISVC_VERSION_ANNOTATION
MODEL_LABEL = keys.ISVC_MODEL_LABEL
MANAGED_BY = {"app.kubernetes.io/managed-by": "prodml"}


def model_root_uri(storage_uri: str, version: int) -> str:
    """``<registry>/<model_name>`` from either that URI or the version's URI ``.../<version>``."""
    uri = storage_uri.rstrip("/")
    suffix = f"/{version}"
    return uri[: -len(suffix)] if uri.endswith(suffix) else uri


def render_inferenceservice(model_name: str, storage_uri: str, version: int, namespace: str = "default",
                            runtime: str = "prodml", image: str = "",
                            canary_traffic_percent: Optional[int] = None) -> dict:
    """Returns the InferenceService manifest serving ``version`` of ``model_name``.

    Args:
        model_name: The model's name in the registry; also the InferenceService's name.
        storage_uri: ``<registry>/<model_name>`` or ``<registry>/<model_name>/<version>`` (gs://,
            s3://, pvc:// or any URI KServe's storage initializer reads).
        version: The pushed integer version to serve.
        namespace: Kubernetes namespace; empty leaves it to ``kubectl -n``.
        runtime: ``prodml`` (our predictor) or ``tensorflow`` (KServe's TF Serving runtime).
        image: With ``runtime="prodml"``, run this predictor image as a custom container
            instead of through the ServingRuntime.
        canary_traffic_percent: Percent of traffic for this version while the previous one keeps
            the rest; ``None`` or 100 sends it all traffic.
    """
    check_runtime(runtime, image)
    if not isinstance(version, int) or version < 1:
        raise ConfigError(f"version {version!r} is not a pushed version number (an integer >= 1).")
    if canary_traffic_percent is not None and not 0 <= canary_traffic_percent <= 100:
        raise ConfigError(f"canary_traffic_percent {canary_traffic_percent} is not between 0 and 100.")
    root = model_root_uri(storage_uri, version)

    if runtime == "tensorflow":
        predictor = {"model": {"modelFormat": {"name": "tensorflow"}, "storageUri": root,
                               "protocolVersion": "v1"}}
    elif image:
        predictor = {"containers": [_predictor_container(model_name, version, root, image)]}
    else:
        predictor = {"model": {"modelFormat": {"name": MODEL_FORMAT}, "runtime": SERVING_RUNTIME,
                               "storageUri": root, "protocolVersion": "v2",
                               "args": ["--version", str(version)]}}
    if canary_traffic_percent is not None and canary_traffic_percent < 100:
        predictor["canaryTrafficPercent"] = canary_traffic_percent

    metadata = {"name": model_name, "namespace": namespace,
                "labels": {**MANAGED_BY, MODEL_LABEL: model_name},
                "annotations": {VERSION_ANNOTATION: str(version)}}
    if not namespace:
        del metadata["namespace"]
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {"predictor": predictor}}


def check_runtime(runtime: str, image: str = "") -> None:
    """Raises ConfigError unless ``runtime`` (and ``image``) can be rendered."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime '{runtime}' is not one of {', '.join(RUNTIMES)}: use prodml for the "
                          "prodml predictor or tensorflow for KServe's TF Serving runtime.")
    if image and runtime != "prodml":
        raise ConfigError(f"image '{image}' is only used with runtime 'prodml' (the prodml predictor), "
                          f"not '{runtime}': drop the image or use runtime 'prodml'.")


def _predictor_container(model_name: str, version: int, root: str, image: str) -> dict:
    return {
        "name": "kserve-container",
        "image": image,
        "args": ["--model_name", model_name, "--model_dir", MOUNT_PATH, "--version", str(version),
                 "--http_port", str(HTTP_PORT), "--grpc_port", str(GRPC_PORT)],
        "env": [{"name": "STORAGE_URI", "value": root}],
        "ports": [dict(port) for port in serving_runtimes.REST_RUNTIME.ports],
        "readinessProbe": {"httpGet": {"path": f"/v2/models/{model_name}/ready", "port": HTTP_PORT}},
    }


def to_yaml(manifest: dict) -> str:
    """The manifest as block-style YAML, keys in the order written (as ``kubectl apply -f`` reads it)."""
    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)
