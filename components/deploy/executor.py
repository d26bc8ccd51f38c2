"""Deploy: roll a pushed version out as a KServe InferenceService, then wait until it is Ready.

``run_deploy`` creates the InferenceService when absent, does nothing when it already serves
this version with the same traffic split, and otherwise merge-patches it. Below 100%,
``canary_traffic_percent`` sends that share to the new version and the rest to the previous
rolled-out revision (KServe's canary rollout); ``promote`` then gives the new version all
traffic, and ``rollback`` gives it none (all traffic back to the previous revision).

Example::

    run_deploy("chicago-taxi", "gs://bucket/registry/chicago-taxi", 3, namespace="models",
               canary_traffic_percent=10)
    promote("chicago-taxi", namespace="models")
"""

from typing import Optional

from prodml.components.common.errors import ConfigError
from prodml.components.common.logs import get_logger
from prodml.components.deploy import kube, readiness
from prodml.components.deploy.kube import is_cluster_configured
from prodml.components.push import inferenceservice as isvc_manifest

__all__ = ["run_deploy", "promote", "rollback", "is_cluster_configured"]

log = get_logger(__name__)

# The predictor fields that select what is served; a field the new spec lacks is deleted.
_SERVING_FIELDS = ("model", "containers")


def run_deploy(model_name: str, storage_uri: str, version: int, namespace: str, isvc_name: str = "",
               canary_traffic_percent: int = 100, runtime: str = "prodml", timeout_seconds: int = 600,
               kube_context: str = "", api_client=None, image: str = "", poll_seconds: float = 5.0) -> dict:
    """Creates or updates the InferenceService serving ``version`` and waits for Ready.

    Args:
        model_name: The model's name in the registry.
        storage_uri: ``<registry>/<model_name>`` (or the version's folder beneath it).
        version: The pushed version to serve.
        namespace: Kubernetes namespace of the InferenceService.
        isvc_name: InferenceService name; defaults to ``model_name``.
        canary_traffic_percent: Share of traffic for this version, 1-100; below 100 keeps the
            previous revision serving the rest until ``promote`` or ``rollback``.
        runtime: ``prodml`` (our ServingRuntime) or ``tensorflow`` (KServe's TF Serving runtime).
        timeout_seconds: How long to wait for Ready before raising DeploymentError.
        kube_context: kubeconfig context; empty uses in-cluster credentials or the current context.
        api_client: A ``kubernetes.client.ApiClient`` to use instead of loading credentials.
        image: With ``runtime="prodml"``, run this predictor image as a custom container.
        poll_seconds: Seconds between status checks while waiting.

    Returns:
        ``{"namespace", "name", "url", "version", "traffic_percent", "action"}`` with action
        ``created``, ``patched`` or ``unchanged``.
    """
    if not namespace:
        raise ConfigError("namespace is empty: give the Kubernetes namespace to deploy the InferenceService in.")
    if not 1 <= canary_traffic_percent <= 100:
        raise ConfigError(f"canary_traffic_percent {canary_traffic_percent} is not between 1 and 100: "
                          "use 100 to send all traffic to the new version.")
    name = isvc_name or model_name
    desired = isvc_manifest.render_inferenceservice(
        name, storage_uri, version, namespace=namespace, runtime=runtime, image=image,
        canary_traffic_percent=canary_traffic_percent)
    desired["metadata"]["labels"][isvc_manifest.MODEL_LABEL] = model_name
    services = kube.InferenceServices(api_client or kube.api_client(kube_context), namespace)

    current = services.get(name)
    if current is None:
        log.info("creating InferenceService %s/%s for %s v%d", namespace, name, model_name, version)
        # A new service has no previous revision to split traffic with.
        desired["spec"]["predictor"].pop("canaryTrafficPercent", None)
        services.create(desired)
        action, traffic = "created", 100
    elif _same_deployment(current, desired):
        log.info("InferenceService %s/%s already serves v%d: unchanged", namespace, name, version)
        action, traffic = "unchanged", canary_traffic_percent
    else:
        log.info("patching InferenceService %s/%s to v%d at %d%% traffic", namespace, name, version,
                 canary_traffic_percent)
        services.patch(name, _patch(current, desired, canary_traffic_percent))
        action, traffic = "patched", canary_traffic_percent

    ready = readiness.wait_ready(lambda: services.get(name), namespace, name, timeout_seconds, poll_seconds)
    return _result(ready, namespace, name, version, traffic, action)


def promote(name: str, namespace: str, timeout_seconds: int = 600, kube_context: str = "",
            api_client=None, poll_seconds: float = 5.0) -> dict:
    """Sends all traffic to the latest revision (removes ``canaryTrafficPercent``) and waits for Ready."""
    return _set_traffic(name, namespace, None, "promoted", timeout_seconds, kube_context, api_client,
                        poll_seconds)


def rollback(name: str, namespace: str, timeout_seconds: int = 600, kube_context: str = "",
             api_client=None, poll_seconds: float = 5.0) -> dict:
    """Sends all traffic back to the previous rolled-out revision (``canaryTrafficPercent: 0``).

    The latest revision stays deployed without traffic; deploy another version, or ``promote``
    to undo the rollback.
    """
    return _set_traffic(name, namespace, 0, "rolled_back", timeout_seconds, kube_context, api_client,
                        poll_seconds)


def _set_traffic(name, namespace, percent, action, timeout_seconds, kube_context, api_client, poll_seconds):
    services = kube.InferenceServices(api_client or kube.api_client(kube_context), namespace)
    current = services.get(name)
    if current is None:
        raise ConfigError(f"InferenceService {namespace}/{name} does not exist: deploy a version first.")
    log.info("%s InferenceService %s/%s", action.replace("_", " "), namespace, name)
    services.patch(name, {"spec": {"predictor": {"canaryTrafficPercent": percent}}})
    ready = readiness.wait_ready(lambda: services.get(name), namespace, name, timeout_seconds, poll_seconds)
    version = _version(ready)
    return _result(ready, namespace, name, version, 100 if percent is None else percent, action)


def _version(isvc: dict) -> Optional[int]:
    value = ((isvc.get("metadata") or {}).get("annotations") or {}).get(isvc_manifest.VERSION_ANNOTATION)
    return int(value) if value and value.isdigit() else None


def _traffic(predictor: dict) -> int:
    percent = predictor.get("canaryTrafficPercent")
    return 100 if percent is None else int(percent)


def _same_deployment(current: dict, desired: dict) -> bool:
    """True when ``current`` already serves what ``desired`` asks, with the same traffic split.

    Fields that KServe's admission webhook adds (default resources, ports, ...) are ignored:
    only what we set has to be there, with the same value.
    """
    have = (current.get("spec") or {}).get("predictor") or {}
    want = desired["spec"]["predictor"]
    return (_version(current) == _version(desired)
            and all((field in have) == (field in want) and _contains(have.get(field), want.get(field))
                    for field in _SERVING_FIELDS)
            and _traffic(have) == _traffic(want))


def _contains(have, want) -> bool:
    """True when ``have`` holds every value of ``want`` (dicts may have more keys, lists match item by item)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _contains(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(map(_contains, have, want))
    return have == want


def _patch(current: dict, desired: dict, canary_traffic_percent: int) -> dict:
    """The merge patch turning ``current`` into ``desired``: metadata merged, predictor fields replaced."""
    have = (current.get("spec") or {}).get("predictor") or {}
    predictor = dict(desired["spec"]["predictor"])
    for field in _SERVING_FIELDS:
        if field in have and field not in predictor:
            predictor[field] = None
    if isinstance(have.get("model"), dict) and predictor.get("model"):
        # Merge patches merge nested objects: delete model keys the new spec no longer sets.
        stale = {key: None for key in have["model"] if key not in predictor["model"]}
        predictor["model"] = {**stale, **predictor["model"]}
    predictor["canaryTrafficPercent"] = canary_traffic_percent if canary_traffic_percent < 100 else None
    meta = desired["metadata"]
    return {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
            "spec": {"predictor": predictor}}


def _result(isvc: dict, namespace: str, name: str, version, traffic: int, action: str) -> dict:
    return {"namespace": namespace, "name": name, "url": (isvc.get("status") or {}).get("url", ""),
            "version": version, "traffic_percent": traffic, "action": action}
